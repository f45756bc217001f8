// Package stream is what the edge's streaming transports (SSE, the native
// WebSocket protocol) share between the hub and a client connection: a
// bounded outbound queue per connection, and subscribers that buffer live
// deliveries while a resume replays history, then pass live messages on
// without duplicates.
//
// A resume is gap-free and duplicate-free when the transport follows the
// order of node.Replay: create a (paused) Subscriber, register it with
// hub.Subscribe, call Resume (which replays and then calls Live), and write
// what the Queue yields afterwards.
package stream

import (
	"sync"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/hub"
)

// Policy says what a Queue does when a delivery does not fit.
type Policy int

const (
	// PolicyClose marks the queue overflowed and discards its content: the
	// owner closes the connection and the client resumes from the last
	// position it received, so nothing is lost. This is the default.
	PolicyClose Policy = iota
	// PolicyDrop drops the deliveries that do not fit and queues one gap
	// marker per run of lost messages of a subscriber, so the loss is
	// signalled to the client, never silent. Deliveries resume once there
	// is room. Markers are few (one between two delivered messages at most)
	// and come on top of the bound.
	PolicyDrop
)

// Item is one entry taken from a Queue: a message for Sub, or a gap marker.
type Item struct {
	Sub *Subscriber
	// Msg is the message to deliver; nil for a gap marker.
	Msg *message.Message
	// Gap marks a loss (PolicyDrop only): messages of Sub after sequence
	// After may be missing.
	Gap   bool
	After uint64
	// Reset is set on a gap caused by the stream being recreated (its
	// sequence went backwards): After belongs to the previous epoch.
	Reset bool
}

// Queue is the bounded outbound queue of one connection. Subscribers fill it
// from the hub's dispatch goroutine without ever blocking; the connection's
// writer drains it. At most max messages are held, counting those buffered
// by paused subscribers; gap markers (at most one per subscriber) come on top.
type Queue struct {
	max    int
	policy Policy
	wake   func()

	mu       sync.Mutex
	items    []Item
	held     int
	overflow bool
	closed   bool
}

// NewQueue returns a queue holding at most max messages (max >= 1). wake is
// called, outside any lock and from whatever goroutine queued the item,
// when the queue goes from empty to non-empty or overflows; it must not
// block (a non-blocking channel send, or starting a drain goroutine).
func NewQueue(max int, policy Policy, wake func()) *Queue {
	if max < 1 {
		max = 1
	}
	return &Queue{max: max, policy: policy, wake: wake}
}

// Drain appends the queued items to buf[:0] and returns them, and whether
// the queue overflowed (PolicyClose): the owner must then close the
// connection. Items of stopped subscribers are skipped.
func (q *Queue) Drain(buf []Item) ([]Item, bool) {
	buf = buf[:0]
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.overflow {
		return buf, true
	}
	for _, it := range q.items {
		if it.Msg != nil {
			q.held--
		}
		if it.Sub.stopped {
			continue
		}
		buf = append(buf, it)
	}
	clear(q.items)
	if cap(q.items) > 64 {
		// Do not keep a burst's backing array while the connection idles.
		q.items = nil
	} else {
		q.items = q.items[:0]
	}
	return buf, false
}

// Len returns the number of queued items (not counting paused buffers).
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Overflowed reports whether the queue overflowed under PolicyClose.
func (q *Queue) Overflowed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.overflow
}

// Close stops accepting deliveries and releases what is queued.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.items = nil
	q.mu.Unlock()
}

// NewSubscriber returns a subscriber feeding q. It starts paused: live
// deliveries are buffered until Live is called. key is the owner's tag
// (the WebSocket subscription's filter, say); origin is the connection's
// origin for no-local filtering (hub.Subscriber.Origin).
func (q *Queue) NewSubscriber(key, origin string) *Subscriber {
	return &Subscriber{q: q, key: key, origin: origin, paused: true}
}

// Subscriber is a hub.Subscriber delivering into a Queue. Deliver never
// blocks. While paused (during a replay) it buffers deliveries; once Live,
// it drops every message with a sequence not above the last one delivered
// (replayed or live), so a resume yields each message exactly once.
type Subscriber struct {
	q      *Queue
	key    string
	origin string

	// Guarded by q.mu.
	paused  bool
	pending []*message.Message
	// last is the highest sequence delivered: the replay's Last, then
	// each live message queued.
	last uint64
	// lostPaused records a loss while paused (PolicyDrop).
	lostPaused bool
	// gapped is set while the last item queued for s is a gap marker.
	gapped  bool
	stopped bool
	// passed is set once a message above the replay's Last was queued:
	// the hub delivers in stream order, so a later sequence below last
	// means the stream was recreated.
	passed bool
}

// Key returns the tag given to NewSubscriber.
func (s *Subscriber) Key() string { return s.key }

// Origin implements hub.Subscriber.
func (s *Subscriber) Origin() string { return s.origin }

// Deliver implements hub.Subscriber; it never blocks.
func (s *Subscriber) Deliver(m *message.Message, _ []*hub.Subscription) {
	q := s.q
	q.mu.Lock()
	wake := s.deliverLocked(m)
	q.mu.Unlock()
	if wake && q.wake != nil {
		q.wake()
	}
}

func (s *Subscriber) deliverLocked(m *message.Message) (wake bool) {
	q := s.q
	if q.closed || q.overflow || s.stopped {
		return false
	}
	if s.paused {
		if q.held >= q.max {
			if q.policy == PolicyClose {
				return q.overflowLocked()
			}
			s.lostPaused = true
			return false
		}
		s.pending = append(s.pending, m)
		q.held++
		return false
	}
	if m.Seq <= s.last {
		if !s.passed || m.Seq == s.last {
			return false // replayed or delivered already
		}
		// The sequence went backwards after live messages passed: the
		// stream was recreated under a new epoch.
		if q.policy == PolicyClose {
			return q.overflowLocked()
		}
		wake = q.pushLocked(Item{Sub: s, Gap: true, After: s.last, Reset: true})
		s.gapped, s.last = true, 0
	}
	if q.held >= q.max {
		if q.policy == PolicyClose {
			return q.overflowLocked()
		}
		return s.gapLocked() || wake
	}
	s.last, s.passed, s.gapped = m.Seq, true, false
	return q.pushLocked(Item{Sub: s, Msg: m}) || wake
}

func (q *Queue) pushLocked(it Item) (wake bool) {
	q.items = append(q.items, it)
	if it.Msg != nil {
		q.held++
	}
	return len(q.items) == 1
}

func (q *Queue) overflowLocked() (wake bool) {
	if q.overflow {
		return false
	}
	q.overflow = true
	q.items = nil
	return true
}

// gapLocked queues a gap marker for s, unless the last item queued for s
// is one already: one marker per run of lost messages.
func (s *Subscriber) gapLocked() (wake bool) {
	if s.gapped {
		return false
	}
	s.gapped = true
	return s.q.pushLocked(Item{Sub: s, Gap: true, After: s.last})
}

// Live ends the pause: buffered messages with a sequence above last (the
// replay's ReplayResult.Last; 0 when nothing was replayed) are queued, and
// from now on deliveries are queued unless their sequence is not above the
// last one delivered.
func (s *Subscriber) Live(last uint64) {
	q := s.q
	q.mu.Lock()
	wake := false
	if s.paused && !q.closed && !q.overflow && !s.stopped {
		s.paused, s.last = false, last
		for _, m := range s.pending {
			if m.Seq <= s.last {
				q.held--
				continue
			}
			s.last, s.passed, s.gapped = m.Seq, true, false
			q.held-- // pushLocked counts it again
			wake = q.pushLocked(Item{Sub: s, Msg: m}) || wake
		}
		if s.lostPaused {
			s.lostPaused = false
			wake = s.gapLocked() || wake
		}
	}
	s.pending = nil
	q.mu.Unlock()
	if wake && q.wake != nil {
		q.wake()
	}
}

// Stop makes s deliver nothing more, drops what it buffered and hides what
// it queued; call it after removing its hub subscriptions.
func (s *Subscriber) Stop() {
	q := s.q
	q.mu.Lock()
	s.stopped = true
	q.held -= len(s.pending)
	s.pending = nil
	q.mu.Unlock()
}

// Stopped reports whether Stop was called.
func (s *Subscriber) Stopped() bool {
	s.q.mu.Lock()
	defer s.q.mu.Unlock()
	return s.stopped
}

var _ hub.Subscriber = (*Subscriber)(nil)
