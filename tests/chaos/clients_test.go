package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// ackWait bounds one publish: longer than any fault's restart, so that a
// publish held across a reconnect (the client library resends it from its
// session) can still be acknowledged.
const ackWait = 20 * time.Second

// sessionExpiry of the MQTT 5 clients, in seconds: longer than any fault.
const sessionExpiry = 300

// events records the clients' connection changes (time, client, what),
// logged with each fault: the evidence for when a client moved.
var events eventLog

type eventLog struct {
	mu    sync.Mutex
	lines []string
}

func (e *eventLog) add(client, format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines = append(e.lines, time.Now().Format("15:04:05.000")+" "+client+": "+fmt.Sprintf(format, args...))
}

// onStalledConnect, when set, runs (once per fault) when a client's CONNECT
// went unanswered for its whole connect timeout: the edge may still be
// stuck in it, so that is the moment to look (docs/reliability.md, Faults,
// finding 4).
var onStalledConnect func()

func (e *eventLog) stalled() {
	e.mu.Lock()
	f := onStalledConnect
	onStalledConnect = nil
	e.mu.Unlock()
	if f != nil {
		f()
	}
}

func (e *eventLog) drain() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.lines
	e.lines = nil
	return l
}

// publishFn sends one message and returns nil only when it was
// acknowledged.
type publishFn func(ctx context.Context, topic, payload string, qos byte) error

// runPublisher publishes name/0, name/1, ... to topic every interval until
// stop closes, resending a message until it is acknowledged (a client that
// gets no acknowledgement sends again, as real clients do).
func runPublisher(stop <-chan struct{}, l *ledger, name, topic string, qos byte, every time.Duration, pub publishFn) {
	for n := 0; ; n++ {
		payload := fmt.Sprintf("%s/%d", name, n)
		for {
			select {
			case <-stop:
				return
			default:
			}
			l.attempt(payload, topic, qos)
			ctx, cancel := context.WithTimeout(context.Background(), ackWait)
			err := pub(ctx, topic, payload, qos)
			cancel()
			if err == nil {
				l.ack(payload)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		select {
		case <-stop:
			return
		case <-time.After(every):
		}
	}
}

func mqttURLs(addrs ...string) []*url.URL {
	var us []*url.URL
	for _, a := range addrs {
		us = append(us, &url.URL{Scheme: "mqtt", Host: a})
	}
	return us
}

// v5Client is an MQTT 5 client (Eclipse Paho autopaho) with a persistent
// session, trying its servers in order: a publisher, or a QoS 2 subscriber
// of filter when s is set.
func v5Client(ctx context.Context, id string, addrs []string, filter string, s *sink) (*autopaho.ConnectionManager, error) {
	subscribed := make(chan struct{})
	var once sync.Once
	cfg := autopaho.ClientConfig{
		ServerUrls:                    mqttURLs(addrs...),
		KeepAlive:                     5,
		CleanStartOnInitialConnection: true,
		SessionExpiryInterval:         sessionExpiry,
		ReconnectBackoff:              autopaho.NewConstantBackoff(250 * time.Millisecond),
		ConnectTimeout:                5 * time.Second,
		OnConnectionDown:              func() bool { events.add(id, "connection down"); return true },
		OnConnectError: func(err error) {
			events.add(id, "connect failed: %v", err)
			if errors.Is(err, context.DeadlineExceeded) {
				events.stalled()
			}
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			events.add(id, "connected (session present %v)", ca.SessionPresent)
			if s == nil {
				return
			}
			if ca.SessionPresent {
				return // Herald kept the session and its subscription
			}
			select {
			case <-subscribed:
				// Only the first connection may lack the session: a lost
				// session is counted as a gap, and the client subscribes
				// again as an application would.
				s.gap()
			default:
			}
			go func() {
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if _, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 2}}}); err == nil {
					once.Do(func() { close(subscribed) })
				}
			}()
		},
		ClientConfig: paho.ClientConfig{ClientID: id, PacketTimeout: ackWait},
	}
	if s != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			s.add(string(pr.Packet.Payload))
			return true, nil
		}}
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return cm, cm.AwaitConnection(ctx)
	}
	select {
	case <-subscribed:
		return cm, nil
	case <-time.After(15 * time.Second):
		return nil, fmt.Errorf("%s: not subscribed within 15s", id)
	}
}

func v5Publish(cm *autopaho.ConnectionManager) publishFn {
	return func(ctx context.Context, topic, payload string, qos byte) error {
		if err := cm.AwaitConnection(ctx); err != nil {
			return err
		}
		pr, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
		if err == nil && pr != nil && pr.ReasonCode >= 0x80 {
			// Paho returns no error for a QoS 2 publish refused with a
			// PUBREC (or PUBCOMP) reason code: the message was not stored.
			err = fmt.Errorf("publish refused: reason 0x%02x", pr.ReasonCode)
		}
		return err
	}
}

// v3Client is an MQTT 3.1.1 client (Eclipse Paho) with a persistent session
// (clean session off), trying its brokers in order; the library resends
// unacknowledged messages after a reconnect. With s set it subscribes to
// filter at QoS 2.
func v3Client(id string, addrs []string, filter string, s *sink, st *ackStore) (mqtt3.Client, error) {
	o := mqtt3.NewClientOptions().SetClientID(id).SetProtocolVersion(4).SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(250 * time.Millisecond).
		SetMaxReconnectInterval(500 * time.Millisecond).SetKeepAlive(5 * time.Second).
		SetConnectTimeout(5 * time.Second).SetWriteTimeout(5 * time.Second).SetOrderMatters(false)
	for _, a := range addrs {
		o.AddBroker("tcp://" + a)
	}
	if st != nil {
		o.SetStore(st)
	}
	o.SetConnectionLostHandler(func(_ mqtt3.Client, err error) { events.add(id, "connection lost: %v", err) })
	o.SetReconnectingHandler(func(_ mqtt3.Client, _ *mqtt3.ClientOptions) { events.add(id, "reconnecting") })
	var attempts atomic.Int32
	var connected atomic.Bool
	o.SetConnectionAttemptHandler(func(broker *url.URL, cfg *tls.Config) *tls.Config {
		events.add(id, "connecting to %s", broker.Host)
		if attempts.Add(1) == 2 && !connected.Load() {
			// The first attempt of a fresh client ended without CONNACK.
			events.stalled()
		}
		return cfg
	})
	subscribed := make(chan error, 1)
	if s != nil {
		handler := func(_ mqtt3.Client, m mqtt3.Message) {
			if m.Duplicate() {
				s.dupFlag(string(m.Payload()))
			}
			s.add(string(m.Payload()))
		}
		// The session holds the subscription; the handler must be known
		// for messages that arrive before any SUBSCRIBE on a new connection.
		o.SetDefaultPublishHandler(handler)
		first := true
		var mu sync.Mutex
		o.SetOnConnectHandler(func(c mqtt3.Client) {
			mu.Lock()
			defer mu.Unlock()
			if !first {
				return
			}
			first = false
			go func() {
				tok := c.Subscribe(filter, 2, handler)
				tok.WaitTimeout(10 * time.Second)
				subscribed <- tok.Error()
			}()
		})
	}
	c := mqtt3.NewClient(o)
	start := time.Now()
	tok := c.Connect()
	// Generous: a CONNECT that took longer than the client's own 5 s
	// timeout has been seen (docs/reliability.md, Faults, finding 4); the
	// event log shows the attempts.
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("%s: not connected within 30s (error %v)", id, tok.Error())
	}
	connected.Store(true)
	if d := time.Since(start); d > 2*time.Second {
		events.add(id, "connected only after %s", d.Round(time.Millisecond))
	}
	if s != nil {
		select {
		case err := <-subscribed:
			if err != nil {
				return nil, fmt.Errorf("%s: subscribe: %w", id, err)
			}
		case <-time.After(15 * time.Second):
			return nil, fmt.Errorf("%s: not subscribed within 15s", id)
		}
	}
	return c, nil
}

// v3Publish publishes through c, whose session store is st, and returns
// nil once the broker acknowledged the message (PUBACK, or PUBCOMP at
// QoS 2). The library's token is not enough: when it resends a message
// after a reconnect, it completes the token of the first send without an
// error, acknowledged or not (documented library behaviour); the store
// sees the acknowledgement itself.
func v3Publish(c mqtt3.Client, st *ackStore) publishFn {
	return func(ctx context.Context, topic, payload string, qos byte) error {
		acked := st.expect(payload)
		tok := c.Publish(topic, qos, false, payload)
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				st.forget(payload)
				return err
			}
		case <-ctx.Done():
			st.forget(payload)
			return ctx.Err()
		}
		if qos == 0 {
			return nil
		}
		select {
		case <-acked:
			return nil
		case <-ctx.Done():
			// Still in the client's session: it resends the message on
			// its next connection, and a later acknowledgement is
			// counted when the ledger sees the payload arrive (a
			// duplicate at worst, never a loss).
			st.forget(payload)
			return ctx.Err()
		}
	}
}

// ackStore is an MQTT 3.1.1 client's session store (the library's memory
// store) that tells when an outgoing message was acknowledged: the library
// removes it from the store on its PUBACK or PUBCOMP, and only then.
type ackStore struct {
	*mqtt3.MemoryStore
	mu      sync.Mutex
	waiting map[string]chan struct{} // by payload: closed when acknowledged
	keys    map[string]string        // outgoing store key → payload
}

func newAckStore() *ackStore {
	return &ackStore{MemoryStore: mqtt3.NewMemoryStore(),
		waiting: map[string]chan struct{}{}, keys: map[string]string{}}
}

// expect returns the channel closed when the message with payload is
// acknowledged; call it before publishing.
func (s *ackStore) expect(payload string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.waiting[payload] = ch
	return ch
}

func (s *ackStore) forget(payload string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.waiting, payload)
}

func (s *ackStore) Put(key string, m packets.ControlPacket) {
	if p, ok := m.(*packets.PublishPacket); ok && strings.HasPrefix(key, "o.") {
		s.mu.Lock()
		s.keys[key] = string(p.Payload)
		s.mu.Unlock()
	}
	s.MemoryStore.Put(key, m) // a PUBREL replaces the PUBLISH under the same key
}

func (s *ackStore) Del(key string) {
	s.MemoryStore.Del(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.keys[key]; ok {
		delete(s.keys, key)
		if ch := s.waiting[p]; ch != nil {
			close(ch)
			delete(s.waiting, p)
		}
	}
}

// httpPublish posts to the first edge and moves to the next after a
// failure, as a client behind a load balancer would be moved.
func httpPublish(bases []string) publishFn {
	var mu sync.Mutex
	i := 0
	client := &http.Client{Timeout: ackWait}
	return func(ctx context.Context, topic, payload string, qos byte) error {
		mu.Lock()
		base := bases[i%len(bases)]
		mu.Unlock()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
			fmt.Sprintf("%s/publish?topic=%s&qos=%d", base, url.QueryEscape(topic), qos), strings.NewReader(payload))
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			err = fmt.Errorf("publish: %s", resp.Status)
		}
		mu.Lock()
		i++
		mu.Unlock()
		return err
	}
}

// streamMsg is the part of an SSE data line or a WebSocket frame the
// subscribers read.
type streamMsg struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	Payload  string `json:"payload"`
	Position string `json:"position"`
}

// runSSE is an EventSource: it reads /sse?topic=filter, and after the
// stream ends or fails it reconnects — to the next edge, as a load
// balancer might send it — with Last-Event-ID set to the last id it got.
// ready closes once the first stream is live.
func runSSE(ctx context.Context, s *sink, bases []string, filter string, ready chan<- struct{}) {
	last := ""
	var once sync.Once
	for i := 0; ctx.Err() == nil; i++ {
		base := bases[i%len(bases)]
		err := sseOnce(ctx, s, base, filter, &last, func() { once.Do(func() { close(ready) }) })
		if ctx.Err() != nil {
			return
		}
		_ = err
		s.reconnect()
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func sseOnce(ctx context.Context, s *sink, base, filter string, last *string, live func()) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?topic="+url.QueryEscape(filter), nil)
	req.Header.Set("Accept", "text/event-stream")
	if *last != "" {
		req.Header.Set("Last-Event-ID", *last)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sse: %s", resp.Status)
	}
	r := bufio.NewReader(resp.Body)
	var id, event string
	var data []string
	first := true
	for {
		line, err := r.ReadString('\n')
		if first && err == nil {
			// The edge writes its first line once its live interest is in effect.
			live()
			first = false
		}
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if event == "gap" {
				s.gap()
			} else if len(data) > 0 {
				var m streamMsg
				if json.Unmarshal([]byte(strings.Join(data, "\n")), &m) == nil {
					s.add(m.Payload)
				}
			}
			if id != "" {
				*last = id
			}
			id, event, data = "", "", nil
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id = value
			case "event":
				event = value
			case "data":
				data = append(data, value)
			}
		}
	}
}

// runWS is a client of the native WebSocket protocol: it subscribes to
// filter and, after the connection fails, reconnects to the next edge and
// subscribes with from set to the last position it got.
func runWS(ctx context.Context, s *sink, bases []string, filter string, ready chan<- struct{}) {
	last := ""
	var once sync.Once
	for i := 0; ctx.Err() == nil; i++ {
		base := bases[i%len(bases)]
		_ = wsOnce(ctx, s, base, filter, &last, func() { once.Do(func() { close(ready) }) })
		if ctx.Err() != nil {
			return
		}
		s.reconnect()
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func wsOnce(ctx context.Context, s *sink, base, filter string, last *string, live func()) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	cancel()
	if err != nil {
		return err
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	sub := map[string]string{"op": "subscribe", "id": "sub", "topic": filter}
	if *last != "" {
		sub["from"] = *last
	}
	if err := wsjson.Write(ctx, c, sub); err != nil {
		return err
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		var m streamMsg
		if err := json.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil {
			return err
		}
		switch m.Type {
		case "ack":
			if m.ID == "sub" {
				live()
			}
		case "message":
			s.add(m.Payload)
			if m.Position != "" {
				*last = m.Position
			}
		case "gap":
			s.gap()
		case "error":
			return errors.New("ws: " + string(b))
		}
	}
}
