package backbone

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/nats-io/nats.go"
)

// LiveConfig configures live interest.
type LiveConfig struct {
	// Buffer bounds the messages received from NATS and not yet dispatched;
	// default 65536. When it is full NATS drops messages for this
	// connection (a slow consumer) and OnDrop is called: live delivery is
	// best effort, and resumable subscribers recover from the stream.
	Buffer int
	// OnDrop is called when messages were dropped. The owner of the NATS
	// connection routes its asynchronous errors to AsyncError for this.
	OnDrop func()
}

// Live holds ref-counted core NATS interest in tenants' live subjects and
// hands every received message, in the order the server sent it, to one
// handler. One Live serves a whole edge: the handler fans out locally.
//
// Guarantees: messages of one tenant reach the handler in stream order;
// a message matching several watched filters reaches it once.
type Live struct {
	b       *Backbone
	handler func(*message.Message)
	onDrop  func()
	ch      chan *nats.Msg

	mu     sync.Mutex
	subs   map[string]*liveSub // subject -> subscription
	shared map[string]*liveSub // subject + "\x00" + queue -> queue subscription
	// sharedBy routes the messages of queue subscriptions to their handler.
	sharedBy map[*nats.Subscription]func(*message.Message)
	closed   bool

	done chan struct{}
	// last is touched only by the dispatch goroutine.
	last map[string]uint64
}

type liveSub struct {
	sub  *nats.Subscription
	refs int
}

// ErrClosed is returned when using a closed Live.
var ErrClosed = errors.New("backbone: live interest closed")

// NewLive starts a dispatcher calling handler for each live message. The
// handler must not block for long: it holds up every other delivery.
func (b *Backbone) NewLive(cfg LiveConfig, handler func(*message.Message)) *Live {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 65536
	}
	l := &Live{b: b, handler: handler, onDrop: cfg.OnDrop, ch: make(chan *nats.Msg, cfg.Buffer),
		subs: map[string]*liveSub{}, shared: map[string]*liveSub{},
		sharedBy: map[*nats.Subscription]func(*message.Message){}, done: make(chan struct{}), last: map[string]uint64{}}
	go l.dispatch()
	return l
}

// Watch takes interest in filter for tenant and returns the function that
// releases it. Interest is live once Flush returns.
func (l *Live) Watch(tenant, filter string) (release func(), err error) {
	if !ValidTenant(tenant) {
		return nil, ErrBadTenant
	}
	subjects := topic.FilterSubjects(l.b.cfg.LiveSubject(tenant), filter)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	var taken []string
	for _, s := range subjects {
		if e, ok := l.subs[s]; ok {
			e.refs++
			taken = append(taken, s)
			continue
		}
		sub, err := l.b.nc.ChanSubscribe(s, l.ch)
		if err != nil {
			l.releaseLocked(taken)
			return nil, err
		}
		// The channel bounds the buffer; the per-subscription limits would
		// only duplicate it.
		_ = sub.SetPendingLimits(-1, -1)
		l.subs[s] = &liveSub{sub: sub, refs: 1}
		taken = append(taken, s)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.releaseLocked(taken)
			l.mu.Unlock()
		})
	}, nil
}

func (l *Live) releaseLocked(subjects []string) {
	for _, s := range subjects {
		e, ok := l.subs[s]
		if !ok {
			continue
		}
		if e.refs--; e.refs == 0 {
			_ = e.sub.Unsubscribe()
			delete(l.subs, s)
		}
	}
}

// Flush returns once the server has registered all interest taken so far.
func (l *Live) Flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.b.cfg.PublishTimeout)
		defer cancel()
	}
	return l.b.nc.FlushWithContext(ctx)
}

// Subjects returns the number of NATS subscriptions held.
func (l *Live) Subjects() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.subs)
}

// Queued returns the number of live messages received and not yet
// dispatched (the queue depth metric).
func (l *Live) Queued() int { return len(l.ch) }

// Close releases all interest and stops the dispatcher.
func (l *Live) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	for s, e := range l.subs {
		_ = e.sub.Unsubscribe()
		delete(l.subs, s)
	}
	for s, e := range l.shared {
		_ = e.sub.Unsubscribe()
		delete(l.shared, s)
		delete(l.sharedBy, e.sub)
	}
	l.mu.Unlock()
	close(l.ch)
	<-l.done
}

// AsyncError is to be called from the NATS connection's error handler: a slow
// consumer error on one of Live's subscriptions means live messages were lost,
// and OnDrop is told so that resumable subscribers can recover from the stream.
func (l *Live) AsyncError(sub *nats.Subscription, err error) {
	if sub == nil || !errors.Is(err, nats.ErrSlowConsumer) || l.onDrop == nil {
		return
	}
	l.mu.Lock()
	e, ours := l.subs[sub.Subject]
	ours = ours && e.sub == sub
	if _, shared := l.sharedBy[sub]; shared {
		ours = true
	}
	l.mu.Unlock()
	if ours {
		l.onDrop()
	}
}

func (l *Live) dispatch() {
	defer close(l.done)
	prefix := l.b.cfg.SubjectPrefix + ".live"
	for nm := range l.ch {
		tenant, name, err := splitSubject(prefix, nm.Subject)
		if err != nil {
			continue
		}
		seq := parseSeq(nm.Header.Get(nats.JSSequence))
		if seq == 0 {
			continue // not a republished message
		}
		if nm.Sub != nil && nm.Sub.Queue != "" {
			// A queue subscription's message: this edge's share of a
			// shared subscription. It is neither a copy of nor copied by
			// the plain subscriptions' messages (those reach the handler
			// on their own), so it stays out of their dedupe.
			l.mu.Lock()
			deliver := l.sharedBy[nm.Sub]
			l.mu.Unlock()
			if deliver != nil {
				deliver(l.message(tenant, name, seq, nm))
			}
			continue
		}
		// A message matching several watched subjects arrives once per
		// subject, back to back: drop the copies.
		last := l.last[tenant]
		if seq == last {
			continue
		}
		if seq < last {
			// The stream was recreated: its epoch changed.
			l.b.Forget(tenant)
		}
		l.last[tenant] = seq
		l.handler(l.message(tenant, name, seq, nm))
	}
}

func (l *Live) message(tenant, name string, seq uint64, nm *nats.Msg) *message.Message {
	m := &message.Message{Tenant: tenant, Topic: name, Payload: nm.Data, Seq: seq}
	if ts, err := time.Parse(time.RFC3339Nano, nm.Header.Get(nats.JSTimeStamp)); err == nil {
		m.Time = ts
	}
	decodeHeaders(m, nm.Header)
	return m
}

// WatchShared takes interest in filter for tenant as a member of the NATS
// queue group queue (see SharedQueue) and returns the function that releases
// it. Each message of the filter goes to one member of the queue across all
// edges; on this edge it is handed to deliver, from the dispatcher goroutine
// (so in stream order with the messages of Watch), and not to the handler
// of NewLive. deliver must not block. Interest is live once Flush returns.
// Watching the same filter and queue again adds a reference; the first
// deliver stays in use.
func (l *Live) WatchShared(tenant, filter, queue string, deliver func(*message.Message)) (release func(), err error) {
	if !ValidTenant(tenant) {
		return nil, ErrBadTenant
	}
	subjects := topic.FilterSubjects(l.b.cfg.LiveSubject(tenant), filter)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	var taken []string
	for _, s := range subjects {
		key := s + "\x00" + queue
		if e, ok := l.shared[key]; ok {
			e.refs++
			taken = append(taken, key)
			continue
		}
		sub, err := l.b.nc.ChanQueueSubscribe(s, queue, l.ch)
		if err != nil {
			l.releaseSharedLocked(taken)
			return nil, err
		}
		_ = sub.SetPendingLimits(-1, -1)
		l.shared[key] = &liveSub{sub: sub, refs: 1}
		l.sharedBy[sub] = deliver
		taken = append(taken, key)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.releaseSharedLocked(taken)
			l.mu.Unlock()
		})
	}, nil
}

func (l *Live) releaseSharedLocked(keys []string) {
	for _, k := range keys {
		e, ok := l.shared[k]
		if !ok {
			continue
		}
		if e.refs--; e.refs == 0 {
			_ = e.sub.Unsubscribe()
			delete(l.shared, k)
			delete(l.sharedBy, e.sub)
		}
	}
}
