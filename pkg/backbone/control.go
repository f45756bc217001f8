package backbone

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/control"
	"github.com/nats-io/nats.go"
)

// ClientControlSubject returns the core NATS subject on which the edges
// coordinate about one client of a tenant ("<prefix>.ctl.<tenant>.client.<id>"),
// for example to take a session over from whichever edge holds it. The
// client identifier is hashed (SHA-256, 128 bits, hex) rather than escaped:
// MQTT allows identifiers of up to 65,535 bytes of any UTF-8, and the hash
// keeps every control subject one short, valid token whatever the client
// sent. Control subjects are outside the tenant streams: nothing on them is
// stored.
func (c Config) ClientControlSubject(tenant, clientID string) string {
	sum := sha256.Sum256([]byte(clientID))
	return c.SubjectPrefix + ".ctl." + tenant + ".client." + hex.EncodeToString(sum[:16])
}

// SharedQueue returns the NATS queue group that balances the live messages
// of a shared subscription (MQTT 5 "$share/<group>/<filter>") of tenant over
// all the edges that have members of it: the same tenant, group and filter
// give the same queue on every edge, so each message goes to one edge. It
// is hashed for the same reason as ClientControlSubject.
func SharedQueue(tenant, group, filter string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + group + "\x00" + filter))
	return "herald-share-" + hex.EncodeToString(sum[:16])
}

// Control is request/reply over core NATS on Herald's control subjects
// (ClientControlSubject, AdminControlSubject): edges coordinate takeovers
// and answer the admin API through it. Errors of NATS are classified as
// ErrUnavailable, a request nobody listens to as control.ErrNoResponders.
type Control struct {
	nc *nats.Conn
}

// Control returns the backbone's control channel.
func (b *Backbone) Control() *Control { return &Control{nc: b.nc} }

func toNATS(subject string, header map[string]string, data []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	for k, v := range header {
		m.Header.Set(k, v)
	}
	m.Data = data
	return m
}

func fromNATS(m *nats.Msg) *control.Msg {
	var header map[string]string
	if len(m.Header) > 0 {
		header = make(map[string]string, len(m.Header))
		for k := range m.Header {
			header[k] = m.Header.Get(k)
		}
	}
	var respond func(map[string]string, []byte) error
	if m.Reply != "" {
		respond = func(header map[string]string, data []byte) error {
			return unavailable(m.RespondMsg(toNATS(m.Reply, header, data)))
		}
	}
	return control.NewMsg(m.Subject, header, m.Data, respond)
}

// Publish sends a message that expects no answer.
func (c *Control) Publish(subject string, header map[string]string, data []byte) error {
	return unavailable(c.nc.PublishMsg(toNATS(subject, header, data)))
}

// Request sends a request and returns the first answer;
// control.ErrNoResponders when nobody listens on the subject.
func (c *Control) Request(ctx context.Context, subject string, header map[string]string, data []byte) (*control.Msg, error) {
	m, err := c.nc.RequestMsgWithContext(ctx, toNATS(subject, header, data))
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("%w: %s", control.ErrNoResponders, subject)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return fromNATS(m), nil
}

// Gather sends a request and returns every answer that arrives within
// window: the answers of all the subscribers, whoever they are. It fails
// if ctx ends first.
func (c *Control) Gather(ctx context.Context, subject string, data []byte, window time.Duration) ([]*control.Msg, error) {
	inbox := c.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := c.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, unavailable(err)
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(subject, inbox, data); err != nil {
		return nil, unavailable(err)
	}
	timer := time.NewTimer(window)
	defer timer.Stop()
	var out []*control.Msg
	for {
		select {
		case m := <-ch:
			out = append(out, fromNATS(m))
		case <-timer.C:
			return out, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Subscribe calls handler for each message on subject (which may hold
// wildcards), from a goroutine of the subscription's own, one message at a
// time.
func (c *Control) Subscribe(subject string, handler func(*control.Msg)) (*control.Sub, error) {
	sub, err := c.nc.Subscribe(subject, func(m *nats.Msg) { handler(fromNATS(m)) })
	if err != nil {
		return nil, unavailable(err)
	}
	return control.NewSub(sub.Unsubscribe), nil
}

// NewInbox returns an inbox buffering up to size messages (beyond, NATS
// drops messages for its subscriptions: slow consumer). Its subscriptions
// are channel subscriptions of the NATS connection, so they cost no
// goroutine; one goroutine per inbox names each message's subscription.
// An unsubscription is a plain Unsubscribe, not the client library's
// Drain: a Drain that starts while the connection is reconnecting sends
// no UNSUB, and the reconnect subscribes again on the server what the
// client then forgets.
func (c *Control) NewInbox(size int) *control.Inbox {
	raw := make(chan *nats.Msg, size)
	out := make(chan *control.Msg, size)
	stop, done := make(chan struct{}), make(chan struct{})
	var mu sync.RWMutex
	subs := map[*nats.Subscription]*control.Sub{}
	go func() {
		defer close(done)
		for {
			select {
			case m := <-raw:
				cm := fromNATS(m)
				// Under the lock Subscribe holds while it registers: a
				// message that arrives as a subscription is made waits
				// for its name.
				mu.RLock()
				cm.Sub = subs[m.Sub]
				mu.RUnlock()
				select {
				case out <- cm:
				case <-stop:
					return
				}
			case <-stop:
				return
			}
		}
	}()
	subscribe := func(subject string) (*control.Sub, error) {
		mu.Lock()
		defer mu.Unlock()
		sub, err := c.nc.ChanSubscribe(subject, raw)
		if err != nil {
			return nil, unavailable(err)
		}
		// The inbox's channel bounds the buffer; the per-subscription
		// limits would only duplicate it.
		_ = sub.SetPendingLimits(-1, -1)
		cs := control.NewSub(func() error {
			mu.Lock()
			delete(subs, sub)
			mu.Unlock()
			return unavailable(sub.Unsubscribe())
		})
		subs[sub] = cs
		return cs, nil
	}
	var once sync.Once
	return control.NewInbox(out, subscribe, func() {
		once.Do(func() {
			close(stop)
			<-done
		})
	})
}
