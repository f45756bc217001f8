package node

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/hub"
)

// SubOptions are a subscription's options besides its filters and start.
// The zero value is a plain subscription.
type SubOptions struct {
	// Key is the transport's name for the subscription (Sub.Key).
	Key string
	// Group, when set, makes the subscription a member of the shared
	// subscription Group of its filters: each message goes to one member
	// of the group across all edges (hub.Subscription.Group). Needs
	// Policy.SharedGroups. A shared subscription gets no replay: each of
	// its messages went to one member.
	Group string
	// QoS is the highest QoS granted (Item.QoS).
	QoS byte
	// NoLocal leaves out the messages the feed's own client published.
	NoLocal bool
	// RetainAsPublished keeps the retain flag of live messages (Item.Retain).
	RetainAsPublished bool
	// ID is the subscription's identifier (Item.IDs), 0 for none.
	ID uint32
	// Replaces is a subscription of the feed that the new one replaces
	// (the same filter subscribed again): it counts once against the
	// subscription limit, and is closed once the new one is live.
	Replaces *Sub
}

// Sub is one subscription of a Feed: its filters, start and options, and,
// while it replays, the live messages it buffers. Once live it passes only
// messages above the last sequence it gave (replayed or live), so each
// message is delivered once.
type Sub struct {
	f       *Feed
	key     string
	filters []string
	from    Start
	opts    SubOptions
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
	// retainedSeqs are the sequences of the retained messages a
	// retained-first start gave, by topic, until the live stream has
	// passed them (retainedMax): a live message of the same topic at or
	// below is a duplicate.
	retainedSeqs map[string]uint64
	retainedMax  uint64
}

// Key returns the transport's name for the subscription.
func (s *Sub) Key() string { return s.key }

// Options returns the subscription's options (without Replaces).
func (s *Sub) Options() SubOptions { return s.opts }

// Filters returns the subscription's filters.
func (s *Sub) Filters() []string { return s.filters }

// deliverLocked handles a live message for s alone (a feed without
// PerMessage).
func (s *Sub) deliverLocked(m *message.Message) (wake bool) {
	f := s.f
	if f.err != nil || s.stopped {
		return false
	}
	if s.paused {
		if f.count >= f.policy.Queue {
			if f.policy.Overflow == OverflowClose {
				return f.overflowLocked()
			}
			s.lostPaused = true
			return false
		}
		s.pending = append(s.pending, m)
		f.count++
		return false
	}
	if s.retainedDup(m) {
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
	if f.count >= f.policy.Queue {
		if f.policy.Overflow == OverflowClose {
			return f.overflowLocked()
		}
		return s.gapLocked() || wake
	}
	s.last, s.passed, s.gapped = m.Seq, true, false
	return f.pushLocked(s.entry(m)) || wake
}

// entry is m's delivery for s alone.
func (s *Sub) entry(m *message.Message) entry {
	e := entry{sub: s, msg: m, qos: min(m.QoS, s.opts.QoS), retain: s.opts.RetainAsPublished && m.Retain}
	if s.opts.ID != 0 {
		e.ids = []uint32{s.opts.ID}
	}
	return e
}

// passLocked reports whether live message m is new to s (PerMessage):
// not covered by its replay (the first live message above the replay's
// Last ends that check: later ones follow in stream order) nor by its
// retained pass.
func (s *Sub) passLocked(m *message.Message) bool {
	if !s.passed {
		if m.Seq <= s.last && m.Seq > 0 {
			return false
		}
		s.passed = true
	}
	return !s.retainedDup(m)
}

// retainedDup reports whether live message m was given, or superseded,
// by the retained pass.
func (s *Sub) retainedDup(m *message.Message) bool {
	if s.retainedSeqs == nil {
		return false
	}
	if m.Seq > s.retainedMax {
		// Live messages of a tenant arrive in stream order: every later
		// one is newer than every retained message given.
		s.retainedSeqs = nil
		return false
	}
	seq, ok := s.retainedSeqs[m.Topic]
	return ok && m.Seq <= seq
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
// matching its filters, a gap first where messages may be missing; for a
// rewind (Last, Since), the stored messages it reaches back to, the same
// way; for a retained-first start, its retained messages (Item.Retained)
// — then makes
// it live: the live messages held meanwhile and those to come are queued,
// without those the replay gave. emit returning an error stops the
// replay, which Replay then returns; the subscription stays paused. A Live
// start replays nothing. Retained messages that cannot be read are left
// out (logged) and the subscription goes live: they are a convenience of
// the start, the live messages its substance.
func (s *Sub) Replay(ctx context.Context, emit func(Item) error) (Replayed, error) {
	f := s.f
	switch {
	case s.from.retained:
		return s.replayRetained(ctx, emit)
	case !s.from.History():
		f.mu.Lock()
		epoch := f.epoch
		f.mu.Unlock()
		s.live(0)
		return Replayed{Epoch: epoch}, nil
	}
	var from message.Position
	if s.from.after != nil {
		from = *s.from.after
	} else {
		p, ok, err := s.rewindFrom(ctx)
		if err != nil || !ok {
			return Replayed{}, err
		}
		from = p
	}
	res, err := f.n.replay(ctx, f.id.Tenant, s.filters, from,
		func(m *message.Message, epoch string) error {
			it := s.entry(m).item()
			it.Pos.Epoch = epoch
			return emit(it)
		},
		func(changed bool) error { return emit(Item{Sub: s, Pos: from, EpochChanged: changed}) })
	if err != nil {
		return res, err
	}
	s.live(res.Last)
	return res, nil
}

// rewindFrom returns the position a rewind replays after; false, with
// the subscription made live, when the tenant has no stream yet (nothing
// to rewind: everything comes live).
func (s *Sub) rewindFrom(ctx context.Context) (message.Position, bool, error) {
	f := s.f
	st, err := f.n.stream.State(ctx, f.id.Tenant)
	if errors.Is(err, backbone.ErrNoStream) {
		s.live(0)
		return message.Position{}, false, nil
	}
	if err != nil {
		return message.Position{}, false, err
	}
	seq, err := f.n.rewindStart(ctx, f.id.Tenant, s.filters, s.from, st)
	if err != nil {
		return message.Position{}, false, err
	}
	return message.Position{Epoch: st.Epoch, Seq: seq}, true, nil
}

// replayRetained is the replay of a retained-first start.
func (s *Sub) replayRetained(ctx context.Context, emit func(Item) error) (Replayed, error) {
	f := s.f
	f.mu.Lock()
	res := Replayed{Epoch: f.epoch}
	f.mu.Unlock()
	var ids []uint32
	if s.opts.ID != 0 {
		ids = []uint32{s.opts.ID}
	}
	seqs := map[string]uint64{}
	var maxSeq uint64
	for _, filter := range s.filters {
		// Retained also folds in the stream's tail the session service
		// has not applied yet: a retained publish just before this
		// subscribe is not missed.
		r, err := f.n.Retained(ctx, f.id.Tenant, filter)
		if err != nil {
			f.n.log.Warn("retained messages unavailable: the subscription starts with live messages",
				"tenant", f.id.Tenant, "filter", filter, "err", err)
			continue
		}
		if res.Last == 0 || r.Last < res.Last {
			// What every filter's read covered: a cursor (long-poll)
			// continues from here.
			res.Last = r.Last
		}
		now := time.Now()
		for _, m := range r.Messages {
			if len(m.Payload) == 0 || m.Expired(now) || !topic.Match(filter, m.Topic) {
				continue
			}
			if _, dup := seqs[m.Topic]; dup {
				continue // matched an earlier filter of the subscription
			}
			it := Item{Sub: s, Msg: m, Pos: message.Position{Epoch: res.Epoch, Seq: m.Seq},
				QoS: min(m.QoS, s.opts.QoS), Retain: true, IDs: ids, Retained: true}
			if err := emit(it); err != nil {
				return res, err
			}
			seqs[m.Topic] = m.Seq
			maxSeq = max(maxSeq, m.Seq)
		}
	}
	f.mu.Lock()
	if len(seqs) > 0 {
		s.retainedSeqs, s.retainedMax = seqs, maxSeq
	}
	f.mu.Unlock()
	s.live(0)
	return res, nil
}

// Resume replays the paused subscriptions of a per-message feed together,
// as one session, from position from: each stored message after it that
// matches one of them is emitted once (Item.QoS, Retain and IDs summed up
// over those it matches, as for a live message), in order, a gap first
// where messages may be missing; then they all go live, the live messages
// held meanwhile queued without those the replay gave. Shared
// subscriptions replay nothing: each of their messages went to one
// member. A subscription with NoLocal is not given the messages its
// client published, from whatever edge. emit returning an error stops the
// replay, which Resume returns; the subscriptions stay paused.
func (f *Feed) Resume(ctx context.Context, from message.Position, emit func(Item) error) (Replayed, error) {
	f.mu.Lock()
	var subs []*Sub
	for _, s := range f.subs {
		if s.paused && !s.stopped {
			subs = append(subs, s)
		}
	}
	res := Replayed{Epoch: f.epoch}
	f.mu.Unlock()
	var filters []string
	for _, s := range subs {
		if s.opts.Group == "" {
			filters = append(filters, s.filters...)
		}
	}
	if len(filters) > 0 {
		client := originClient(f.origin)
		var err error
		res, err = f.n.replay(ctx, f.id.Tenant, filters, from,
			func(m *message.Message, epoch string) error {
				e := entry{msg: m}
				for _, s := range subs {
					if s.opts.Group == "" && (!s.opts.NoLocal || originClient(m.Origin) != client) &&
						slices.ContainsFunc(s.filters, func(filter string) bool { return topic.Match(filter, m.Topic) }) {
						e.add(s)
					}
				}
				if e.sub == nil {
					return nil
				}
				it := e.item()
				it.Pos.Epoch = epoch
				return emit(it)
			},
			func(changed bool) error { return emit(Item{Pos: from, EpochChanged: changed}) })
		if err != nil {
			return res, err
		}
	}
	for _, s := range subs {
		s.live(res.Last)
	}
	return res, nil
}

// originClient returns the client part of an origin tag ("<edge>/<client>").
func originClient(origin string) string {
	_, client, _ := strings.Cut(origin, "/")
	return client
}

// live ends the pause: messages held meanwhile above last (the replay's
// Last; 0 when nothing was replayed) are queued, and from now on
// deliveries are, unless their sequence is not above the last one given.
func (s *Sub) live(last uint64) {
	f := s.f
	f.mu.Lock()
	wake := false
	if s.paused && !s.stopped {
		s.last = last
		wake = s.unpauseLocked()
	}
	s.pending = nil
	f.mu.Unlock()
	if wake && f.policy.Wake != nil {
		f.policy.Wake()
	}
}

// unpauseLocked makes a paused subscription live: its buffered messages
// (or, PerMessage, the feed's held ones once no subscription replays) are
// queued.
func (s *Sub) unpauseLocked() (wake bool) {
	f := s.f
	s.paused = false
	if f.pressing {
		// Its writer is judged from now on: until now the held
		// messages waited for the replay.
		f.episodeLocked(time.Now())
	}
	if f.policy.PerMessage {
		f.paused--
		if f.paused == 0 {
			return f.releaseLocked()
		}
		return false
	}
	for _, m := range s.pending {
		f.count-- // pushLocked counts it again, if queued
		if f.err != nil || m.Seq <= s.last || s.retainedDup(m) {
			continue
		}
		s.last, s.passed, s.gapped = m.Seq, true, false
		wake = f.pushLocked(s.entry(m)) || wake
	}
	s.pending = nil
	if s.lostPaused && f.err == nil {
		s.lostPaused = false
		wake = s.gapLocked() || wake
	}
	return wake
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
// released and what it queued is skipped (but with PerMessage, where a
// queued message is the connection's).
func (s *Sub) leave() {
	for _, hs := range s.hs {
		s.f.n.hub.Unsubscribe(hs)
	}
	f := s.f
	f.mu.Lock()
	wake := false
	if !s.stopped {
		s.stopped = true
		f.count -= len(s.pending)
		s.pending = nil
		if s.paused && f.policy.PerMessage {
			s.paused = false
			f.paused--
			if f.paused == 0 {
				wake = f.releaseLocked()
			}
		}
	}
	f.mu.Unlock()
	if wake && f.policy.Wake != nil {
		f.policy.Wake()
	}
}

// Closed reports whether Close was called (or the feed closed).
func (s *Sub) Closed() bool {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.stopped
}
