package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/hub"
)

// The subscription pipeline.
//
// A Feed is one connection's side of its subscriptions: the bounded queue
// of what its client has not read yet, and the subscriptions (Sub, sub.go)
// that fill it, each one or more topic filters with a Start and options.
// Subscribe takes live interest first (the hub returns once it is in
// effect on the backbone) and holds what arrives, paused; the
// subscription's replay (Sub.Replay, or Feed.Resume for a whole session)
// then emits what the client is owed before that — the retained messages
// of its filters, or the stored messages after a position (replay.go: the
// session store's replay buffer, then the stream's tail it has not applied
// or has trimmed) — and hands over to the live messages, dropping those
// the replay covered: a subscription sees each stored message once, in
// order, whatever edge it resumes on. This is the one place a subscriber's
// replay happens, for every transport.
//
// The feed is the hub's subscriber for all its subscriptions, so a live
// message that matches several of them arrives once, with all of them.
// A feed delivers it either once per subscription (the streaming
// transports: each subscription is its own stream to the client) or, with
// Policy.PerMessage, once for the connection at the highest QoS its
// matching subscriptions grant, with their identifiers (MQTT).
//
// A transport encodes Items: a message with its position and delivery
// options, or a gap. It takes them from the replay (emit) and then from
// Drain or Take, whenever the Wake of its Policy tells it there is
// something. Deliveries never block the hub's dispatching goroutine.

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
	// on top of the bound. Not for a feed of one item per message.
	OverflowDrop
	// OverflowShedQoS0 sheds at-most-once deliveries first: a message
	// delivered at QoS 0 that does not fit is dropped; one at QoS 1 or 2
	// takes the place of the oldest QoS 0 message held, or, with none, ends
	// the feed with ErrSlowConsumer. Each drop is counted (Policy.OnDrop).
	// MQTT's policy: QoS 0 may be lost, QoS 1 and 2 may not.
	OverflowShedQoS0
)

// Policy says how a Feed holds what its client has not read.
type Policy struct {
	// Queue bounds the messages the feed holds, those held while
	// subscriptions replay included; at least 1.
	Queue int
	// Overflow is what happens when a message does not fit.
	Overflow Overflow
	// OnDrop, if set, counts a message dropped under OverflowShedQoS0. It
	// is called under the feed's lock: it must only count.
	OnDrop func()
	// MaxFilters bounds the filters of one Subscribe; 0: no bound.
	MaxFilters int
	// PerMessage delivers a live message once for the connection, however
	// many of its subscriptions it matches (Item.QoS, Item.Retain and
	// Item.IDs sum them up), and holds every live message while any
	// subscription replays, so that messages of all subscriptions keep
	// their order. Without it each matching subscription gets the message
	// (Item.Sub), each in its own order.
	PerMessage bool
	// SharedGroups says the transport names a shared subscription's
	// group (SubOptions.Group), having parsed its protocol's syntax for
	// it: filters are taken as they are. Without it the filters brokers
	// read as shared subscriptions ("$share/…", "$queue/…") are refused
	// (see validateFilter).
	SharedGroups bool
	// Wake is called when the feed goes from nothing to read to
	// something — items, an overflow, a revocation — outside any lock,
	// from whatever goroutine made it so (often the hub's dispatcher): it
	// must not block (a non-blocking channel send, or starting a writer).
	Wake func()
	// Ended, if set, is called instead of Wake when the feed ends by an
	// overflow or a revocation, with why (see Drain), once, under the same
	// rules: a transport that takes items as its window allows (Take)
	// learns the end without asking at each wake.
	Ended func(err error)
}

// Sentinel errors of a Feed.
var (
	// ErrSlowConsumer ends a feed whose queue overflowed under
	// OverflowClose, or under OverflowShedQoS0 with no QoS 0 message to
	// shed.
	ErrSlowConsumer = fault.New(fault.SlowConsumer, "slow consumer: queue full")
	// ErrFeedClosed is what Drain answers once the feed is closed.
	ErrFeedClosed = errors.New("node: feed closed")
)

// Item is what a transport encodes: a message at its position, or a gap.
type Item struct {
	// Sub is the subscription the item belongs to: with
	// Policy.PerMessage, the first of those the message matched.
	Sub *Sub
	// Msg is the message; nil for a gap.
	Msg *message.Message
	// Pos is the message's position; for a gap, the position after which
	// messages may be missing.
	Pos message.Position
	// EpochChanged marks a gap whose Pos belongs to a previous epoch of
	// the stream (the stream was recreated).
	EpochChanged bool
	// QoS is the QoS the message is delivered at: the lower of its own
	// and its subscription's (SubOptions.QoS); with Policy.PerMessage, the
	// highest of those over the subscriptions it matched.
	QoS byte
	// Retain says the message goes out as retained: a retained message of
	// a retained-first start, or a live one whose subscription keeps the
	// flag (SubOptions.RetainAsPublished).
	Retain bool
	// IDs are the identifiers (SubOptions.ID) of the subscriptions the
	// message matched, those without one left out.
	IDs []uint32
	// Retained marks a message of a retained-first start's retained pass.
	Retained bool
}

// Gap reports whether the item is a gap.
func (it Item) Gap() bool { return it.Msg == nil }

// Replayed says what a replay covered.
type Replayed struct {
	// Epoch is the stream's epoch.
	Epoch string
	// Last is the stream's last sequence when the replay started: every
	// matching message up to it was emitted (but across a gap); for a
	// retained-first start, the retained messages emitted are those as of
	// Last.
	Last uint64
	// Gap is set when messages after the start may be missing;
	// EpochChanged when the start's position was of another epoch.
	Gap, EpochChanged bool
}

// Feed is one connection's subscriptions and the bounded queue they fill.
// Its methods are safe for concurrent use; Drain and Take are meant for
// one writer at a time.
type Feed struct {
	n       *Node
	adm     *Admission
	id      auth.Identity
	origin  string
	policy  Policy
	unwatch func()

	mu    sync.Mutex
	items []entry
	// count is the messages the feed holds: queued, held (hold) and
	// buffered by paused subscriptions; bounded by Policy.Queue.
	count int
	err   error // set once: overflow, revocation or close
	// ending is set with an overflow or a revocation until Ended (or
	// Wake) is called.
	ending bool
	subs   []*Sub
	epoch  string // the stream's epoch, as last stamped
	// With Policy.PerMessage: paused is the number of paused
	// subscriptions, and hold the live messages that arrived meanwhile.
	paused int
	hold   []held
	// peek is the item Take and Ready hand over, kept here so that
	// handing it allocates nothing.
	peek Item
	// Backpressure (pressure.go): pressing since pressSince on the
	// tenant's publishers; slow once it pressed too long, until empty;
	// room is signalled when a delivery waiting for room may find some.
	pressing, slow bool
	pressSince     time.Time
	slowUntil      time.Time
	pressTimer     *time.Timer
	room           chan struct{}
	// taken counts the items Take and Drain took; takenAtPress, at the
	// start of a SlowAfter of pressing.
	taken, takenAtPress uint64
}

// entry is a queued item before its epoch is stamped: a message with its
// delivery, or a gap after sequence after (reset: the stream was
// recreated).
type entry struct {
	sub    *Sub
	msg    *message.Message
	after  uint64
	reset  bool
	qos    byte
	retain bool
	ids    []uint32
}

// held is a live message that arrived while a subscription of a
// per-message feed replayed, with the subscriptions it matched.
type held struct {
	m    *message.Message
	subs []*Sub
	qos  byte
}

// NewFeed returns an empty feed for the admitted connection c: its
// identity's subscriptions, stopped the moment its credential is revoked
// (Drain then answers the revocation's reason). The tenant's stream is
// created if it does not exist, so that every position the feed hands out
// has an epoch: an unavailable backbone fails here, before the transport
// commits to the connection.
func (n *Node) NewFeed(ctx context.Context, c *Admission, p Policy) (*Feed, error) {
	if p.PerMessage && p.Overflow == OverflowDrop {
		return nil, errors.New("node: a feed of one item per message has no gaps to drop messages with")
	}
	id := c.Identity()
	epoch, err := n.stream.EnsureTenant(ctx, id.Tenant)
	if err != nil {
		return nil, err
	}
	p.Queue = max(p.Queue, 1)
	f := &Feed{n: n, adm: c, id: id, origin: c.origin, policy: p, epoch: epoch}
	unwatch, untrack := c.watch(f.revoke), c.track(f)
	f.unwatch = func() { unwatch(); untrack() }
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
	if _, err := f.Subscribe(ctx, filters, from, SubOptions{}); err != nil {
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
// (limits.ErrSubscriptionLimit), live once it returns but paused: what
// arrives is held until its replay (Sub.Replay, Feed.Resume). The
// tenant's stream is created if needed, so that every position handed out
// has an epoch. A subscription that replaces another (SubOptions.Replaces)
// takes over from it once live: no message falls between the two.
func (f *Feed) Subscribe(ctx context.Context, filters []string, from Start, o SubOptions) (*Sub, error) {
	n := f.n
	filters, err := n.subscriptionFilters(filters, f.policy)
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
		if s != o.Replaces {
			held += len(s.filters)
		}
	}
	f.mu.Unlock()
	if err := f.adm.Subscriptions(held); err != nil {
		return nil, err
	}
	epoch, err := n.stream.EnsureTenant(ctx, f.id.Tenant)
	if err != nil {
		return nil, err
	}
	s := &Sub{f: f, key: o.Key, filters: filters, from: from, opts: o, paused: true}
	s.opts.Replaces = nil
	f.mu.Lock()
	if f.policy.PerMessage {
		f.paused++
	}
	f.mu.Unlock()
	s.hs = make([]*hub.Subscription, 0, len(filters))
	for _, filter := range filters {
		hs := &hub.Subscription{Tenant: f.id.Tenant, Filter: filter, Subscriber: f, Owner: s, QoS: o.QoS,
			NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished, ID: o.ID, Group: o.Group}
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
	if o.Replaces != nil {
		// The new subscription took over first: no message falls between.
		o.Replaces.Close()
	}
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
// ErrSlowConsumer (the queue overflowed), the reason of a revocation
// (wrapping auth.ErrRevoked), or ErrFeedClosed.
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
			f.count--
		}
		if e.sub.stopped && !f.policy.PerMessage {
			continue
		}
		buf = append(buf, e.item())
	}
	clear(f.items)
	if cap(f.items) > 64 {
		// Do not keep a burst's backing array while the connection idles.
		f.items = nil
	} else {
		f.items = f.items[:0]
	}
	if len(buf) > 0 {
		f.taken += uint64(len(buf))
		f.relievedLocked()
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

// Take hands the queued items to take, in order, at most max of them,
// while take accepts them, and returns how many it took: a writer that can
// send only some of what is queued (MQTT, within the client's in-flight
// window) takes those and leaves the rest queued, under the feed's bound.
// take runs under the feed's lock with an item valid during the call
// only: it must only look at the item and change the caller's own state.
// Positions carry the epoch last seen (no lookup: see Drain); a feed that
// is over takes nothing (Err says why).
func (f *Feed) Take(max int, take func(*Item) bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0
	}
	i, n := 0, 0
	for ; i < len(f.items) && n < max; i++ {
		e := &f.items[i]
		if e.sub.stopped && !f.policy.PerMessage {
			continue
		}
		// Handed over in place (peek): an item of its own, passed to
		// take, would escape to the heap, once per message and subscriber.
		f.peek = e.item()
		f.peek.Pos.Epoch = f.epoch
		if !take(&f.peek) {
			break
		}
		n++
	}
	f.peek = Item{}
	for j := range i {
		if f.items[j].msg != nil {
			f.count--
		}
	}
	if i == len(f.items) {
		clear(f.items)
		if cap(f.items) > 256 {
			f.items = nil
		} else {
			f.items = f.items[:0]
		}
	} else if i > 0 {
		left := copy(f.items, f.items[i:])
		clear(f.items[left:])
		f.items = f.items[:left]
	}
	if i > 0 {
		f.taken += uint64(i)
		f.relievedLocked()
	}
	return n
}

// Ready reports whether Take would take something now.
func (f *Feed) Ready(fits func(*Item) bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.items {
		e := &f.items[i]
		if e.sub.stopped && !f.policy.PerMessage {
			continue
		}
		f.peek = e.item()
		ok := f.err == nil && fits(&f.peek)
		f.peek = Item{}
		return ok
	}
	return false
}

func (e entry) item() Item {
	it := Item{Sub: e.sub, Msg: e.msg, Pos: message.Position{Seq: e.after}, EpochChanged: e.reset,
		QoS: e.qos, Retain: e.retain, IDs: e.ids}
	if e.msg != nil {
		it.Pos.Seq = e.msg.Seq
	}
	return it
}

// Pending returns the number of queued items.
func (f *Feed) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.items)
}

// Oldest returns the lowest stream sequence of the messages the feed
// holds (queued, or held during a replay), and false when it holds none:
// a transport that keeps a cursor (MQTT's session) must not pass it. A
// feed that is over keeps what it held, undelivered, until Close.
func (f *Feed) Oldest() (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var low uint64
	found := false
	see := func(seq uint64) {
		if seq > 0 && (!found || seq < low) {
			low, found = seq, true
		}
	}
	for i := range f.items {
		if m := f.items[i].msg; m != nil {
			see(m.Seq)
		}
	}
	for _, h := range f.hold {
		see(h.m.Seq)
	}
	for _, s := range f.subs {
		for _, m := range s.pending {
			see(m.Seq)
		}
	}
	return low, found
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
	f.items, f.hold, f.count = nil, nil, 0
	f.unpressLocked()
	f.roomLocked() // a delivery waiting for room stops waiting
	f.mu.Unlock()
	for _, s := range subs {
		s.leave()
	}
	f.unwatch()
}

// Filters returns the filters of the feed's subscriptions, in the order
// they were subscribed.
func (f *Feed) Filters() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, s := range f.subs {
		out = append(out, s.filters...)
	}
	return out
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
	if f.err == nil {
		f.err, f.ending = reason, true
	}
	f.unpressLocked()
	ended := f.endedLocked()
	f.mu.Unlock()
	f.signal(false, ended)
}

// endedLocked returns why the feed ended if the transport has not been
// told yet.
func (f *Feed) endedLocked() error {
	if !f.ending {
		return nil
	}
	f.ending = false
	return f.err
}

// signal tells the transport, outside the lock, that the feed ended
// (Ended, or Wake without it) or that it has something to read (Wake).
func (f *Feed) signal(wake bool, ended error) {
	switch {
	case ended != nil && f.policy.Ended != nil:
		f.policy.Ended(ended)
	case (wake || ended != nil) && f.policy.Wake != nil:
		f.policy.Wake()
	}
}

// Origin implements hub.Subscriber: the connection's origin tag, for
// no-local subscriptions.
func (f *Feed) Origin() string { return f.origin }

// Deliver implements hub.Subscriber; it never blocks. m matched subs, all
// of them the feed's.
func (f *Feed) Deliver(m *message.Message, subs []*hub.Subscription) {
	// The clock only for a message that can expire: it was 5% of an edge's
	// CPU in a fan-out, read once per subscriber.
	if !m.ExpiresAt.IsZero() && m.Expired(time.Now()) {
		return
	}
	f.mu.Lock()
	f.waitRoomLocked()
	var wake bool
	if f.policy.PerMessage {
		wake = f.deliverMessageLocked(m, subs)
	} else {
		for _, hs := range subs {
			wake = hs.Owner.(*Sub).deliverLocked(m) || wake
		}
	}
	if f.count >= f.high() && f.n.slowAfter > 0 {
		f.pressLocked(time.Now())
	}
	ended := f.endedLocked()
	f.mu.Unlock()
	f.signal(wake, ended)
}

// deliverMessageLocked delivers m once for the connection (PerMessage):
// held while a subscription replays, otherwise routed and queued.
func (f *Feed) deliverMessageLocked(m *message.Message, hss []*hub.Subscription) (wake bool) {
	if f.err != nil {
		return false
	}
	if f.paused > 0 {
		h := held{m: m, subs: make([]*Sub, 0, len(hss))}
		for _, hs := range hss {
			if s := hs.Owner.(*Sub); !s.stopped {
				h.subs = append(h.subs, s)
				h.qos = max(h.qos, min(m.QoS, s.opts.QoS))
			}
		}
		if len(h.subs) == 0 {
			return false
		}
		if ok, wake := f.admitLocked(h.qos); !ok {
			return wake
		}
		f.hold = append(f.hold, h)
		f.count++
		return false
	}
	var subs [4]*Sub
	matched := subs[:0]
	for _, hs := range hss {
		matched = append(matched, hs.Owner.(*Sub))
	}
	e, ok := f.routeLocked(m, matched)
	if !ok {
		return false
	}
	if ok, wake := f.admitLocked(e.qos); !ok {
		return wake
	}
	return f.pushLocked(e)
}

// routeLocked sums up the delivery of live message m for the
// subscriptions it matched (PerMessage): the highest QoS they grant, the
// retain flag if one keeps it, their identifiers — leaving out those
// stopped, and those whose replay or retained pass gave m already.
func (f *Feed) routeLocked(m *message.Message, subs []*Sub) (entry, bool) {
	e := entry{msg: m}
	for _, s := range subs {
		if !s.stopped && s.passLocked(m) {
			e.add(s)
		}
	}
	return e, e.sub != nil
}

// add sums subscription s up into the delivery of e's message, which it
// matched: the highest QoS granted, the retain flag if s keeps it, the
// identifiers.
func (e *entry) add(s *Sub) {
	if e.sub == nil {
		e.sub = s
	}
	e.qos = max(e.qos, min(e.msg.QoS, s.opts.QoS))
	if s.opts.RetainAsPublished && e.msg.Retain {
		e.retain = true
	}
	if s.opts.ID != 0 {
		e.ids = append(e.ids, s.opts.ID)
	}
}

// admitLocked applies the queue's bound to a message about to be queued
// or held at the given QoS: ok says it may be; wake that the feed ended.
func (f *Feed) admitLocked(qos byte) (ok, wake bool) {
	if f.count < f.policy.Queue {
		return true, false
	}
	if f.policy.Overflow == OverflowShedQoS0 {
		if qos == 0 {
			f.dropped()
			return false, false
		}
		if f.shedLocked() {
			f.dropped()
			return true, false
		}
	}
	return false, f.overflowLocked()
}

func (f *Feed) dropped() {
	if f.policy.OnDrop != nil {
		f.policy.OnDrop()
	}
}

// shedLocked removes the oldest QoS 0 message queued or held.
func (f *Feed) shedLocked() bool {
	for i := range f.items {
		if e := &f.items[i]; e.msg != nil && e.qos == 0 {
			f.items = slices.Delete(f.items, i, i+1)
			f.count--
			return true
		}
	}
	for i, h := range f.hold {
		if h.qos == 0 {
			f.hold = slices.Delete(f.hold, i, i+1)
			f.count--
			return true
		}
	}
	return false
}

func (f *Feed) pushLocked(e entry) (wake bool) {
	f.items = append(f.items, e)
	if e.msg != nil {
		f.count++
	}
	return len(f.items) == 1
}

func (f *Feed) overflowLocked() (wake bool) {
	if f.err != nil {
		return false
	}
	f.err, f.ending = ErrSlowConsumer, true
	f.unpressLocked()
	return true
}

// releaseLocked ends the hold of a per-message feed once no subscription
// replays: the live messages that arrived meanwhile are routed, in order,
// minus those the replays gave.
func (f *Feed) releaseLocked() (wake bool) {
	hold := f.hold
	f.hold = nil
	for _, h := range hold {
		f.count-- // pushLocked counts it again, if queued
		if f.err != nil {
			continue
		}
		if e, ok := f.routeLocked(h.m, h.subs); ok {
			wake = f.pushLocked(e) || wake
		}
	}
	return wake
}

// subscriptionFilters validates and deduplicates the filters of a
// subscription, at most p.MaxFilters of them (0: any number).
func (n *Node) subscriptionFilters(raw []string, p Policy) ([]string, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: at least one topic filter is required", errBadRequest)
	}
	out := make([]string, 0, len(raw))
	for _, filter := range raw {
		if err := validateFilter(filter, n.limits, p.SharedGroups); err != nil {
			return nil, err
		}
		if !slices.Contains(out, filter) {
			out = append(out, filter)
		}
	}
	if p.MaxFilters > 0 && len(out) > p.MaxFilters {
		return nil, fmt.Errorf("%w: at most %d topic filters", errBadRequest, p.MaxFilters)
	}
	return out, nil
}

// errBadRequest is a subscription the core refuses as malformed.
var errBadRequest = fault.New(fault.Invalid, "bad request")

var _ hub.Subscriber = (*Feed)(nil)
