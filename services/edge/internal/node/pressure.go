package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Backpressure: publishers are slowed before a subscriber that keeps up
// loses anything.
//
// When an edge cannot deliver as fast as its publishers send (its CPU is
// the bottleneck, not its subscribers' sockets), the feeds of subscribers
// that read at full speed fill all the same: their writers are merely
// behind the dispatcher. Dropping there (the shedding policy of QoS 0, a
// close, a gap) loses messages the client would have taken. So a feed
// whose queue fills does two things instead, for as long as it keeps
// draining:
//
//   - it presses on its tenant's publishers: from three quarters of its
//     bound until it is back to a quarter, Node.Publish waits before it
//     sends (an MQTT connection's reader stops reading its socket, which
//     is TCP's backpressure, and so does the WebSocket's; an HTTP publish
//     is answered later), so the pipeline stops filling;
//   - the delivery of a message that does not fit waits for room (the
//     edge's dispatcher waits, and what is in flight behind it waits in
//     the backbone's bounded live buffer, repaired from the stream if it
//     overflows), rather than dropping it.
//
// A subscriber that is itself slow must not hold everyone back: each
// Config.SlowAfter of pressing, a feed is judged (judgeLocked), and it
// counts as slow if its writer took less than a quarter of its bound
// meanwhile (256 messages in 2 s with MQTT's defaults: a client that
// reads fewer than ~128 messages a second, or stalls for 2 s). A slow feed stops pressing and
// waiting, and its own policy (drop, shed QoS 0, close) applies to it
// alone, for slowFor SlowAfters (or until it has emptied its queue);
// then it is judged again. A feed that drains faster goes
// on pressing, however far behind the flow: publishers then go at the
// pace of the tenant's slowest subscriber above that floor, as they
// would with one broker thread serving them all, rather than a
// subscriber that reads what it can losing what it could not.
//
// The delivery that waits is the edge's one dispatcher, shared by every
// tenant: while it waits on a feed, no other tenant's live message moves.
// Two bounds keep one tenant's subscribers from degrading the others':
//
//   - a stall bound (stallDivisor): a full feed whose writer takes
//     nothing for SlowAfter/20 (100 ms by default) while a delivery waits
//     on it is judged slow at once, not after SlowAfter. A subscriber
//     reading at full speed takes continuously, its writer a few
//     milliseconds behind the dispatcher at most; one that stopped
//     reading (its TCP send buffer full) takes nothing. Only a feed whose
//     queued items wait for its writer is judged so: one whose live
//     messages a replay holds waits for the replay, judged by SlowAfter;
//   - a tenant's share of the dispatcher (waits.go): its deliveries wait
//     for room at most SlowAfter/10 in every SlowAfter/2, however many
//     feeds are stalled or trickle just fast enough to escape the stall
//     bound; once spent, its full feeds apply their own policy until the
//     window ends.
//
// The stall bound alone would not do: n stalled feeds cost n stall
// bounds, and a trickling reader none of them; the share alone would
// spend a tenant's share on its non-readers at every window, at the cost
// of its subscribers that keep up.
//
// Both apply only while the edge is crowded: while another tenant has
// subscribers on it (hub.Crowded), whose deliveries would wait behind.
// A tenant alone on its edge keeps SlowAfter's trade whole: its fast
// subscribers' writers, starved of CPU under a flood, can fall silent
// for more than the stall bound and keep the dispatcher waiting for more
// than the share (TestQoS0FloodReachesFastSubscribers, in the MQTT
// package, lost 1.4% of its messages with the stall bound always on, and
// 26% with both, one run each on a shared 2-core machine), and nobody
// else is held meanwhile. The cost of
// the bounds, when crowded: a subscriber that keeps up but falls silent
// for the stall bound (a round trip longer than it with MQTT's in-flight
// window full) sheds like a slow one; --slow-after scales the bound.

// The backbone's live buffer is the other place where an overloaded edge
// falls behind: what is stored reaches the edge and waits there for the
// dispatcher. A publish waits while more than backlogHigh live messages
// wait, until they are backlogLow, so that the buffer (65,536 messages by
// default; overflowing it costs a read back from the stream) and the
// latency behind it stay short.
//
// The same backlog bounds the dispatcher's waits for room: a delivery
// waiting on a full feed whose writer has taken nothing for
// backlogStallFor stall bounds (500 ms by default) while more than
// backlogStall live messages wait behind it judges that feed slow at once. The live buffer holds whole
// messages, so a wait that lets it fill holds their bytes: publishers on
// other edges are not slowed by this edge's pressure, and one subscriber
// that stopped reading would otherwise keep the buffer filling for a
// whole SlowAfter (about 190 MiB at 23,000 1 KiB messages a second, seen
// by tests/browser TestSlowWebSocketConsumerMemory). Twice backlogHigh, so
// that the publishers this edge does slow (waitBacklog) stop the backlog
// before it judges anyone.
const (
	backlogHigh  = 4096
	backlogLow   = 1024
	backlogStall = 4 * backlogHigh
	// backlogStallFor is how many stall bounds (SlowAfter/20) a writer
	// must have taken nothing for before the backlog judges its feed:
	// longer than the stall bound between tenants, since a fast reader
	// starved of CPU by a flood may pause for over 100 ms.
	backlogStallFor = 5
	// backlogPoll is how often a waiting delivery looks at the backlog.
	backlogPoll = 20 * time.Millisecond
)

// Backlog is implemented by a live interest (backbone.Live) that can say
// how many received messages wait for its dispatcher.
type Backlog interface {
	Queued() int
}

// waitBacklog waits while the live backlog is above backlogHigh, until it
// is backlogLow or ctx ends. It polls: the wait is the overload's, and a
// signal from the dispatcher would cost every message a check.
func (n *Node) waitBacklog(ctx context.Context) error {
	if n.backlog == nil || n.backlog.Queued() <= backlogHigh {
		return nil
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for n.backlog.Queued() > backlogLow {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// stallDivisor: a full feed whose writer took nothing for
// SlowAfter/stallDivisor while a delivery waited on it is slow.
const stallDivisor = 20

// slowFor is how many SlowAfters a feed judged slow stays so before it
// is judged again: a slow subscriber holds its tenant's publishers back
// for one SlowAfter in 1+slowFor at most.
const slowFor = 4

// DefaultSlowAfter is Config.SlowAfter's default.
const DefaultSlowAfter = 2 * time.Second

// pressure counts, per tenant, the feeds pressing on its publishers.
type pressure struct {
	any atomic.Int32 // feeds pressing, all tenants: the publish path's fast check

	mu      sync.Mutex
	tenants map[string]*gate
}

// gate is one tenant's pressing feeds; clear is closed when they are
// none.
type gate struct {
	n     int
	clear chan struct{}
}

func (p *pressure) press(tenant string) {
	p.mu.Lock()
	if p.tenants == nil {
		p.tenants = map[string]*gate{}
	}
	g := p.tenants[tenant]
	if g == nil {
		g = &gate{clear: make(chan struct{})}
		p.tenants[tenant] = g
	}
	g.n++
	p.any.Add(1)
	p.mu.Unlock()
}

func (p *pressure) release(tenant string) {
	p.mu.Lock()
	if g := p.tenants[tenant]; g != nil {
		p.any.Add(-1)
		if g.n--; g.n == 0 {
			close(g.clear)
			delete(p.tenants, tenant)
		}
	}
	p.mu.Unlock()
}

// wait returns once no feed of tenant presses, or when ctx ends (with its
// error). A feed presses only while it drains: one that stops stops
// pressing within SlowAfter.
func (p *pressure) wait(ctx context.Context, tenant string) error {
	for p.any.Load() > 0 {
		p.mu.Lock()
		g := p.tenants[tenant]
		p.mu.Unlock()
		if g == nil {
			return nil
		}
		select {
		case <-g.clear:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Pressing returns the number of feeds holding their tenant's publishers
// back now.
func (n *Node) Pressing() int { return int(n.pressure.any.Load()) }

// pressLocked updates the feed's pressure after its count grew: from
// three quarters of the bound it presses, unless it is slow; each
// SlowAfter of pressing it is judged (judgeLocked).
func (f *Feed) pressLocked(now time.Time) {
	if f.slow && now.After(f.slowUntil) {
		f.slow = false // judged again
	}
	if f.n.slowAfter <= 0 || f.slow || f.err != nil {
		return
	}
	if f.pressing {
		if now.Sub(f.pressSince) >= f.n.slowAfter {
			f.judgeLocked(now)
		}
		return
	}
	if f.count >= f.high() {
		f.pressing = true
		f.n.pressure.press(f.id.Tenant)
		f.episodeLocked(now)
	}
}

// episodeLocked starts a SlowAfter of pressing, at whose end the feed is
// judged: a feed nobody takes from gets no delivery that would find it
// pressing too long (its publishers wait), so a timer does.
func (f *Feed) episodeLocked(now time.Time) {
	f.pressSince, f.takenAtPress = now, f.taken
	if f.pressTimer == nil {
		f.pressTimer = time.AfterFunc(f.n.slowAfter, f.pressExpired)
	} else {
		f.pressTimer.Reset(f.n.slowAfter)
	}
}

// judgeLocked ends a SlowAfter of pressing. The subscriber is slow — the
// feed stops pressing, and its overflow policy applies — if its writer
// took less than a quarter of the feed's bound meanwhile: it does not
// even drain from where it presses to where it stops. A replay that
// holds the live messages for a whole SlowAfter counts the same (its
// writer is the client's connection too, and the edge's deliveries must
// not wait on it longer); the episode starts again when it ends. Otherwise it
// drains, if slower than the pipeline fills it, and goes on pressing.
func (f *Feed) judgeLocked(now time.Time) {
	if f.taken-f.takenAtPress < uint64(max(1, f.policy.Queue/4)) {
		f.slowLocked(now)
		return
	}
	f.episodeLocked(now)
}

// slowLocked judges the feed slow: it stops pressing and waiting, and
// its overflow policy applies for slowFor SlowAfters.
func (f *Feed) slowLocked(now time.Time) {
	f.slow, f.slowUntil = true, now.Add(slowFor*f.n.slowAfter)
	f.unpressLocked()
	f.roomLocked()
}

// pressExpired judges a feed still pressing after SlowAfter.
func (f *Feed) pressExpired() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); f.pressing && now.Sub(f.pressSince) >= f.n.slowAfter {
		f.judgeLocked(now)
	}
}

// relievedLocked updates the feed's pressure after items left its queue:
// at a quarter of the bound it stops pressing, empty it is no longer
// slow; a delivery waiting for room is told.
func (f *Feed) relievedLocked() {
	if f.pressing && f.count <= f.policy.Queue/4 {
		f.unpressLocked()
	}
	if f.count == 0 {
		f.slow = false
	}
	if f.count < f.policy.Queue {
		f.roomLocked()
	}
}

// roomLocked tells a delivery waiting for room to look again.
func (f *Feed) roomLocked() {
	if f.room != nil {
		select {
		case f.room <- struct{}{}:
		default:
		}
	}
}

func (f *Feed) unpressLocked() {
	if f.pressing {
		f.pressing = false
		f.n.pressure.release(f.id.Tenant)
		f.pressTimer.Stop()
	}
}

// replayingLocked reports whether a subscription of the feed replays,
// holding the live messages that arrive meanwhile.
func (f *Feed) replayingLocked() bool {
	if f.policy.PerMessage {
		return f.paused > 0
	}
	for _, s := range f.subs {
		if s.paused && !s.stopped {
			return true
		}
	}
	return false
}

// high is the count from which a feed presses.
func (f *Feed) high() int { return max(1, f.policy.Queue*3/4) }

// waitRoomLocked waits, unlocking the feed meanwhile, while its queue is
// full of items its writer is taking (or of live messages held while a
// subscription replays), until there is room, the feed ends or it turns
// slow (pressLocked; or its writer took nothing for the stall bound), or
// the tenant's share of the dispatcher's waits is spent (waits.go); the
// overflow policy applies to what still does not fit. Called by a
// delivery before it queues a message.
func (f *Feed) waitRoomLocked() {
	if f.n.slowAfter <= 0 {
		return
	}
	var (
		timer   *time.Timer
		crowded bool      // another tenant's deliveries wait behind this one
		taken   uint64    // the writer's count as of since
		since   time.Time // when the writer last took, as seen here
	)
	for f.count >= f.policy.Queue && f.err == nil && !f.slow && (len(f.items) > 0 || f.replayingLocked()) {
		now := time.Now()
		f.pressLocked(now)
		if f.slow {
			break
		}
		if timer == nil {
			crowded = f.n.hub.Crowded(f.id.Tenant)
		}
		left := max(0, f.n.slowAfter-now.Sub(f.pressSince))
		replaying := f.replayingLocked()
		if !replaying && (since.IsZero() || f.taken != taken) {
			taken, since = f.taken, now
		}
		stalled := now.Sub(since)
		if crowded && !replaying {
			if stalled >= f.n.stall {
				f.n.waits.stalled()
				f.slowLocked(now)
				break
			}
			left = min(left, f.n.stall-stalled)
		}
		// A writer that took nothing for backlogStallFor while the live
		// backlog grew past backlogStall is a client that stopped reading:
		// slow at once, whoever else is on the edge. One that takes, however
		// far behind, is not judged by the backlog (a QoS 1 subscriber
		// reading at full speed behind a flood stays connected).
		if !replaying && stalled >= f.n.stall*backlogStallFor && f.n.backlog != nil && f.n.backlog.Queued() > backlogStall {
			f.n.waits.stalled()
			f.slowLocked(now)
			break
		}
		if crowded {
			share := f.n.waits.left(f.id.Tenant, now)
			if share <= 0 {
				break
			}
			left = min(left, share)
		}
		if f.n.backlog != nil {
			left = min(left, backlogPoll) // to see the backlog grow
		}
		left = max(time.Millisecond, left)
		if f.room == nil {
			f.room = make(chan struct{}, 1)
		}
		if timer == nil {
			timer = time.NewTimer(left)
			defer timer.Stop()
		} else {
			timer.Reset(left)
		}
		room := f.room
		f.mu.Unlock()
		select {
		case <-room:
		case <-timer.C:
		}
		f.n.waits.spend(f.id.Tenant, time.Since(now), crowded)
		f.mu.Lock()
	}
}
