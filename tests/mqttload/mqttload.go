// Package mqttload is the MQTT side of the end-to-end tests that judge a
// disruption (a rolling restart, a helm upgrade) by "nothing acknowledged is
// lost": a QoS 1 publisher that retries each message until it is
// acknowledged, and persistent QoS 1 subscribers (MQTT 5, Eclipse Paho's
// autopaho) that count what they receive and whether their session
// survived each reconnection.
package mqttload

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// ReconnectSoon retries at once, then every 100 ms: a draining server
// spreads its clients over time, the client need not.
func ReconnectSoon(attempt int) time.Duration {
	if attempt == 0 {
		return 0
	}
	return 100 * time.Millisecond
}

// Subscriber is a persistent QoS 1 subscriber of one filter.
type Subscriber struct {
	ID string

	mu       sync.Mutex
	got      map[string]int
	ups      int
	notFound int // reconnections without the session
	changed  chan struct{}
}

// NewSubscriber connects with cfg (its servers, client id, credentials and
// session expiry; OnConnectionUp and OnPublishReceived are the
// subscriber's), waits for the connection and subscribes to filter at QoS 1.
// t's cleanup disconnects it.
func NewSubscriber(ctx context.Context, t testing.TB, cfg autopaho.ClientConfig, filter string) *Subscriber {
	t.Helper()
	s := &Subscriber{ID: cfg.ClientID, got: map[string]int{}, changed: make(chan struct{}, 1)}
	cfg.OnConnectionUp = func(_ *autopaho.ConnectionManager, ack *paho.Connack) {
		s.mu.Lock()
		if s.ups > 0 && !ack.SessionPresent {
			s.notFound++
		}
		s.ups++
		s.mu.Unlock()
	}
	cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
		s.mu.Lock()
		s.got[string(pr.Packet.Payload)]++
		s.mu.Unlock()
		select {
		case s.changed <- struct{}{}:
		default:
		}
		return true, nil
	}}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatalf("%s: %v", s.ID, err)
	}
	if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = cm.Disconnect(dctx)
	})
	return s
}

// Count is how many distinct payloads it received.
func (s *Subscriber) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// LostSessions is how many reconnections found no session.
func (s *Subscriber) LostSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notFound
}

// Reconnects is how many times it connected again.
func (s *Subscriber) Reconnects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.ups-1, 0)
}

// WaitAll waits until the subscriber has every payload of sent, or nothing
// new came for quiet, or ctx ends, and returns the payloads missing.
func (s *Subscriber) WaitAll(ctx context.Context, sent []string, quiet time.Duration) []string {
	for {
		s.mu.Lock()
		var missing []string
		for _, p := range sent {
			if s.got[p] == 0 {
				missing = append(missing, p)
			}
		}
		s.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-s.changed:
		case <-time.After(quiet):
			return missing
		case <-ctx.Done():
			return missing
		}
	}
}

// Publisher publishes QoS 1 messages "0", "1", ... at a steady pace,
// retrying each until it is acknowledged.
type Publisher struct {
	cancel  context.CancelFunc
	done    chan struct{}
	sent    []string
	retries int
}

// NewPublisher connects with cfg and publishes message i to topic(i) every
// period until Stop.
func NewPublisher(ctx context.Context, t testing.TB, cfg autopaho.ClientConfig, topic func(i int) string, period time.Duration) *Publisher {
	t.Helper()
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Publisher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = cm.Disconnect(dctx)
		}()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
			payload := strconv.Itoa(i)
			for {
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := cm.Publish(pctx, &paho.Publish{Topic: topic(i), QoS: 1, Payload: []byte(payload)})
				pcancel()
				if err == nil {
					p.sent = append(p.sent, payload)
					break
				}
				if ctx.Err() != nil {
					return
				}
				p.retries++
				_ = cm.AwaitConnection(ctx)
			}
		}
	}()
	return p
}

// Stop ends the publishing and returns the messages acknowledged and how
// many publishes were retried.
func (p *Publisher) Stop() (sent []string, retries int) {
	p.cancel()
	<-p.done
	return p.sent, p.retries
}
