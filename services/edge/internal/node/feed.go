package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/hub"
)

// The subscription pipeline.
//
// A Feed is one connection's side of its subscriptions: the bounded queue
// of what its client has not read yet, and the subscriptions (Sub) that
// fill it, each one or more topic filters with a Start. Subscribe takes
// live interest first (the hub returns once it is in effect on the
// backbone) and buffers what arrives, paused; Replay then emits what the
// client is owed before that (replay.go: the session store's replay
// buffer, then the stream's tail it has not applied or has trimmed) and
// hands over to the live messages, dropping those the replay covered: a
// subscription sees each stored message once, in order, whatever edge it
// resumes on. This is the one place a subscriber's replay happens.
//
// A transport encodes Items: a message with its position, or a gap. It
// takes them from Replay (emit) and then from Drain, whenever the Wake of
// its Policy tells it there is something; Drain stamps each message with
// its stream's epoch. Deliveries never block the hub's dispatching
// goroutine.

// Start says what a subscription is owed before live messages. The zero
// Start is Live.
type Start struct {
	after *message.Position
}

// Live starts with the messages stored from the subscription on.
func Live() Start { return Start{} }

// After starts after position p: every stored message after it, in order,
// then live ones. When messages after p may be missing (they left the
// stream, or p belongs to another epoch) a gap comes first. A position
// without an epoch is one in the current epoch.
func After(p message.Position) Start { return Start{after: &p} }

// Position returns the position a start After begins after.
func (s Start) Position() (message.Position, bool) {
	if s.after == nil {
		return message.Position{}, false
	}
	return *s.after, true
}

// History reports whether the start reads stored messages, which needs
// the history capability.
func (s Start) History() bool { return s.after != nil }

// Overflow says what a Feed does when a message does not fit its queue.
type Overflow int

const (
	// OverflowClose ends the feed: Drain reports ErrSlowConsumer, the
	// transport closes the connection, and the client resumes from the
	// last position it received, losing nothing. The default.
	OverflowClose Overflow = iota
	// OverflowDrop drops the messages that do not fit and queues one gap
	// per run of lost messages of a subscription, so that the loss is told
	// to the client, never silent; deliveries resume once there is room.
	// Gaps are few (one between two delivered messages at most) and come
	// on top of the bound.
	OverflowDrop
)

// Policy says how a Feed holds what its client has not read.
type Policy struct {
	// Queue bounds the messages the feed holds, those its paused
	// subscriptions buffer during a replay included; at least 1.
	Queue int
	// Overflow is what happens when a message does not fit.
	Overflow Overflow
	// MaxFilters bounds the filters of one Subscribe; 0: no bound.
	MaxFilters int
	// Wake is called when the feed goes from nothing to read to
	// something — items, an overflow, a revocation — outside any lock,
	// from whatever goroutine made it so (often the hub's dispatcher): it
	// must not block (a non-blocking channel send, or starting a writer).
	Wake func()
}

// Sentinel errors of a Feed.
var (
	// ErrSlowConsumer ends a feed whose queue overflowed under
	// OverflowClose.
	ErrSlowConsumer = fault.New(fault.SlowConsumer, "slow consumer: queue full")
	// ErrFeedClosed is what Drain answers once the feed is closed.
	ErrFeedClosed = errors.New("node: feed closed")
)

// Item is what a transport encodes: a message at its position, or a gap.
type Item struct {
	// Sub is the subscription the item belongs to.
	Sub *Sub
	// Msg is the message; nil for a gap.
	Msg *message.Message
	// Pos is the message's position; for a gap, the position after which
	// messages may be missing.
	Pos message.Position
	// EpochChanged marks a gap whose Pos belongs to a previous epoch of
	// the stream (the stream was recreated).
	EpochChanged bool
}

// Gap reports whether the item is a gap.
func (it Item) Gap() bool { return it.Msg == nil }

// Replayed says what a replay covered.
type Replayed struct {
	// Epoch is the stream's epoch.
	Epoch string
	// Last is the stream's last sequence when the replay started: every
	// matching message up to it was emitted (but across a gap).
	Last uint64
	// Gap is set when messages after the start may be missing;
	// EpochChanged when the start's position was of another epoch.
	Gap, EpochChanged bool
}

// Feed is one connection's subscriptions and the bounded queue they fill.
// Its methods are safe for concurrent use; Drain is meant for one writer at
// a time.
type Feed struct {
	n       *Node
	adm     *Admission
	id      auth.Identity
	origin  string
	policy  Policy
	unwatch func()

	mu    sync.Mutex
	items []entry
	held  int   // messages queued or buffered by paused subscriptions
	err   error // set once: overflow, revocation or close
	subs  []*Sub
	epoch string // the stream's epoch, as last stamped
}

// entry is a queued item before its epoch is stamped: a message, or a gap
// after sequence after (reset: the stream was recreated).
type entry struct {
	sub   *Sub
	msg   *message.Message
	after uint64
	reset bool
}

// NewFeed returns an empty feed for the admitted connection c: its
// identity's subscriptions, stopped the moment its credential is revoked
// (Drain then answers the revocation's reason). The tenant's stream is
// created if it does not exist, so that every position the feed hands out
// has an epoch: an unavailable backbone fails here, before the transport
// commits to the connection.
func (n *Node) NewFeed(ctx context.Context, c *Admission, p Policy) (*Feed, error) {
	id := c.Identity()
	epoch, err := n.stream.EnsureTenant(ctx, id.Tenant)
	if err != nil {
		return nil, err
	}
	p.Queue = max(p.Queue, 1)
	f := &Feed{n: n, adm: c, id: id, origin: c.origin, policy: p, epoch: epoch}
	f.unwatch = c.watch(f.revoke)
	return f, nil
}

// Subscribe is the subscription pipeline for a connection that holds one
// subscription (SSE, long-poll): a feed with the subscription of filters
// from start; Replay, then Drain. See Feed.Subscribe.
func (n *Node) Subscribe(ctx context.Context, c *Admission, filters []string, from Start, p Policy) (*Feed, error) {
	f, err := n.NewFeed(ctx, c, p)
	if err != nil {
		return nil, err
	}
	if _, err := f.Subscribe(ctx, filters, from, ""); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Subscribe adds a subscription to the feed: filters (deduplicated,
// validated: an error wrapping hub.ErrInvalidFilter, at most
// Policy.MaxFilters), authorized for the feed's identity (subscribe, and
// history for a start that reads stored messages: auth.ErrForbidden),
// within the connection's subscription limit, counted in filters
// (limits.ErrSubscriptionLimit), live once it returns but paused: what arrives is buffered until Replay.
// The tenant's stream is created if needed, so that every position handed
// out has an epoch. key is the transport's name for the subscription
// (Sub.Key).
func (f *Feed) Subscribe(ctx context.Context, filters []string, from Start, key string) (*Sub, error) {
	n := f.n
	filters, err := n.streamFilters(filters, f.policy.MaxFilters)
	if err != nil {
		return nil, err
	}
	for _, filter := range filters {
		if err := AuthorizeSubscribe(f.id, filter); err != nil {
			return nil, err
		}
		if from.History() {
			if err := AuthorizeHistory(f.id, filter); err != nil {
				return nil, err
			}
		}
	}
	f.mu.Lock()
	held := len(filters)
	for _, s := range f.subs {
		held += len(s.filters)
	}
	f.mu.Unlock()
	if err := f.adm.Subscriptions(held); err != nil {
		return nil, err
	}
	epoch, err := n.stream.EnsureTenant(ctx, f.id.Tenant)
	if err != nil {
		return nil, err
	}
	s := &Sub{f: f, key: key, filters: filters, from: from, paused: true}
	s.hs = make([]*hub.Subscription, 0, len(filters))
	for _, filter := range filters {
		hs := &hub.Subscription{Tenant: f.id.Tenant, Filter: filter, Subscriber: s}
		if err := n.hub.Subscribe(ctx, hs); err != nil {
			s.leave()
			return nil, err
		}
		s.hs = append(s.hs, hs)
	}
	f.mu.Lock()
	if f.err != nil {
		err := f.err
		f.mu.Unlock()
		s.leave()
		return nil, err
	}
	f.epoch = epoch
	f.subs = append(f.subs, s)
	f.mu.Unlock()
	return s, nil
}

// Replay replays the feed's subscriptions (see Sub.Replay), in the order
// they were made, and returns what the last one covered.
func (f *Feed) Replay(ctx context.Context, emit func(Item) error) (Replayed, error) {
	f.mu.Lock()
	subs := slices.Clone(f.subs)
	f.mu.Unlock()
	var res Replayed
	for _, s := range subs {
		var err error
		if res, err = s.Replay(ctx, emit); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Drain appends the queued items to buf[:0] and returns them, each
// message stamped with its position. An error means the feed is over:
// ErrSlowConsumer (the queue overflowed under OverflowClose), the reason
// of a revocation (wrapping auth.ErrRevoked), or ErrFeedClosed.
func (f *Feed) Drain(ctx context.Context, buf []Item) ([]Item, error) {
	buf = buf[:0]
	f.mu.Lock()
	if f.err != nil {
		err := f.err
		f.mu.Unlock()
		return buf, err
	}
	for _, e := range f.items {
		if e.msg != nil {
			f.held--
		}
		if e.sub.stopped {
			continue
		}
		it := Item{Sub: e.sub, Msg: e.msg, Pos: message.Position{Seq: e.after}, EpochChanged: e.reset}
		if e.msg != nil {
			it.Pos.Seq = e.msg.Seq
		}
		buf = append(buf, it)
	}
	clear(f.items)
	if cap(f.items) > 64 {
		// Do not keep a burst's backing array while the connection idles.
		f.items = nil
	} else {
		f.items = f.items[:0]
	}
	prev := f.epoch
	f.mu.Unlock()
	if len(buf) == 0 {
		return buf, nil
	}
	epoch := prev
	if e, err := f.n.stream.Epoch(ctx, f.id.Tenant); err == nil && e != prev {
		epoch = e
		f.mu.Lock()
		f.epoch = e
		f.mu.Unlock()
	}
	for i := range buf {
		it := &buf[i]
		it.Pos.Epoch = epoch
		if it.EpochChanged {
			// The gap's position is the last one sent, of the stream
			// before it was recreated.
			it.Pos.Epoch = prev
		}
	}
	return buf, nil
}

// Pending returns the number of queued items.
func (f *Feed) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.items)
}

// Err returns why the feed is over (see Drain), or nil while it is live.
func (f *Feed) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Close ends the feed: its subscriptions leave the hub, what it holds is
// released, and Drain answers ErrFeedClosed. Idempotent.
func (f *Feed) Close() {
	f.mu.Lock()
	subs := f.subs
	f.subs = nil
	if f.err == nil {
		f.err = ErrFeedClosed
	}
	f.items, f.held = nil, 0
	f.mu.Unlock()
	for _, s := range subs {
		s.leave()
	}
	f.unwatch()
}

// Leave takes the feed's subscriptions out of the hub: nothing new
// arrives, and what is queued stays for Drain. A drain flushes a client
// that way before it closes the connection.
func (f *Feed) Leave() {
	f.mu.Lock()
	subs := slices.Clone(f.subs)
	f.mu.Unlock()
	for _, s := range subs {
		for _, hs := range s.hs {
			f.n.hub.Unsubscribe(hs)
		}
	}
}

// revoke stops the feed because its identity's credential no longer
// holds: nothing more is delivered, and Drain answers reason.
func (f *Feed) revoke(reason error) {
	f.mu.Lock()
	first := f.err == nil
	if first {
		f.err = reason
		f.items = nil
	}
	f.mu.Unlock()
	if first && f.policy.Wake != nil {
		f.policy.Wake()
	}
}

// Sub is one subscription of a Feed: its filters and start, and, while it
// replays, the live messages it buffers. It is the hub.Subscriber of its
// filters. Once live it passes only messages above the last sequence it
// gave (replayed or live), so each message is delivered once.
type Sub struct {
	f       *Feed
	key     string
	filters []string
	from    Start
	hs      []*hub.Subscription

	// Guarded by f.mu.
	paused  bool
	pending []*message.Message
	// last is the highest sequence given: the replay's Last, then each
	// live message queued.
	last uint64
	// lostPaused records a loss while paused (OverflowDrop).
	lostPaused bool
	// gapped is set while the last item queued for s is a gap.
	gapped  bool
	stopped bool
	// passed is set once a message above the replay's Last was queued:
	// the hub delivers in stream order, so a later sequence below last
	// means the stream was recreated.
	passed bool
}

// Key returns the transport's name for the subscription.
func (s *Sub) Key() string { return s.key }

// Origin implements hub.Subscriber.
func (s *Sub) Origin() string { return s.f.origin }

// Deliver implements hub.Subscriber; it never blocks.
func (s *Sub) Deliver(m *message.Message, _ []*hub.Subscription) {
	f := s.f
	f.mu.Lock()
	wake := s.deliverLocked(m)
	f.mu.Unlock()
	if wake && f.policy.Wake != nil {
		f.policy.Wake()
	}
}

func (s *Sub) deliverLocked(m *message.Message) (wake bool) {
	f := s.f
	if f.err != nil || s.stopped {
		return false
	}
	if s.paused {
		if f.held >= f.policy.Queue {
			if f.policy.Overflow == OverflowClose {
				return f.overflowLocked()
			}
			s.lostPaused = true
			return false
		}
		s.pending = append(s.pending, m)
		f.held++
		return false
	}
	if m.Seq <= s.last {
		if !s.passed || m.Seq == s.last {
			return false // replayed or delivered already
		}
		// The sequence went backwards after live messages passed: the
		// stream was recreated under a new epoch.
		if f.policy.Overflow == OverflowClose {
			return f.overflowLocked()
		}
		wake = f.pushLocked(entry{sub: s, after: s.last, reset: true})
		s.gapped, s.last = true, 0
	}
	if f.held >= f.policy.Queue {
		if f.policy.Overflow == OverflowClose {
			return f.overflowLocked()
		}
		return s.gapLocked() || wake
	}
	s.last, s.passed, s.gapped = m.Seq, true, false
	return f.pushLocked(entry{sub: s, msg: m}) || wake
}

func (f *Feed) pushLocked(e entry) (wake bool) {
	f.items = append(f.items, e)
	if e.msg != nil {
		f.held++
	}
	return len(f.items) == 1
}

func (f *Feed) overflowLocked() (wake bool) {
	if f.err != nil {
		return false
	}
	f.err = ErrSlowConsumer
	f.items = nil
	return true
}

// gapLocked queues a gap for s, unless the last item queued for s is one
// already: one gap per run of lost messages.
func (s *Sub) gapLocked() (wake bool) {
	if s.gapped {
		return false
	}
	s.gapped = true
	return s.f.pushLocked(entry{sub: s, after: s.last})
}

// Replay emits, in order, what the subscription is owed before its live
// messages — for a start After a position, every stored message after it
// matching its filters, a gap first where messages may be missing — then
// makes it live: the live messages it buffered meanwhile and those to come
// are queued, without those the replay covered. emit returning an error
// stops the replay, which Replay then returns; the subscription stays
// paused. A Live start replays nothing.
func (s *Sub) Replay(ctx context.Context, emit func(Item) error) (Replayed, error) {
	f := s.f
	if s.from.after == nil {
		f.mu.Lock()
		epoch := f.epoch
		f.mu.Unlock()
		s.live(0)
		return Replayed{Epoch: epoch}, nil
	}
	from := *s.from.after
	res, err := f.n.replay(ctx, f.id.Tenant, s.filters, from,
		func(m *message.Message, epoch string) error {
			return emit(Item{Sub: s, Msg: m, Pos: message.Position{Epoch: epoch, Seq: m.Seq}})
		},
		func(changed bool) error { return emit(Item{Sub: s, Pos: from, EpochChanged: changed}) })
	if err != nil {
		return res, err
	}
	s.live(res.Last)
	return res, nil
}

// live ends the pause: buffered messages above last (the replay's Last; 0
// when nothing was replayed) are queued, and from now on deliveries are,
// unless their sequence is not above the last one given.
func (s *Sub) live(last uint64) {
	f := s.f
	f.mu.Lock()
	wake := false
	if s.paused && f.err == nil && !s.stopped {
		s.paused, s.last = false, last
		for _, m := range s.pending {
			f.held-- // pushLocked counts it again, if queued
			if m.Seq <= s.last {
				continue
			}
			s.last, s.passed, s.gapped = m.Seq, true, false
			wake = f.pushLocked(entry{sub: s, msg: m}) || wake
		}
		if s.lostPaused {
			s.lostPaused = false
			wake = s.gapLocked() || wake
		}
	}
	s.pending = nil
	f.mu.Unlock()
	if wake && f.policy.Wake != nil {
		f.policy.Wake()
	}
}

// Close ends the subscription: it leaves the hub and the feed, and nothing
// of it is delivered from now on (what Drain took before is the caller's
// to drop: see Closed).
func (s *Sub) Close() {
	f := s.f
	f.mu.Lock()
	f.subs = slices.DeleteFunc(f.subs, func(x *Sub) bool { return x == s })
	f.mu.Unlock()
	s.leave()
}

// leave takes s out of the hub, then stops it: what it buffered is
// released and what it queued is skipped.
func (s *Sub) leave() {
	for _, hs := range s.hs {
		s.f.n.hub.Unsubscribe(hs)
	}
	f := s.f
	f.mu.Lock()
	if !s.stopped {
		s.stopped = true
		f.held -= len(s.pending)
		s.pending = nil
	}
	f.mu.Unlock()
}

// Closed reports whether Close was called (or the feed closed).
func (s *Sub) Closed() bool {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.stopped
}

// streamFilters validates and deduplicates the filters of a subscription
// of the streaming transports, at most max of them (0: any number).
func (n *Node) streamFilters(raw []string, max int) ([]string, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: at least one topic filter is required", errBadRequest)
	}
	out := make([]string, 0, len(raw))
	for _, filter := range raw {
		if err := validateStreamFilter(filter, n.limits); err != nil {
			return nil, err
		}
		if !slices.Contains(out, filter) {
			out = append(out, filter)
		}
	}
	if max > 0 && len(out) > max {
		return nil, fmt.Errorf("%w: at most %d topic filters", errBadRequest, max)
	}
	return out, nil
}

// errBadRequest is a subscription the core refuses as malformed.
var errBadRequest = fault.New(fault.Invalid, "bad request")

var _ hub.Subscriber = (*Sub)(nil)
