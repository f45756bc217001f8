package backbone

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/pkg/fault"
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
	// Log receives the outcome of each repair; nil: slog.Default().
	Log *slog.Logger
}

// Live holds ref-counted core NATS interest in tenants' live subjects and
// hands every received message, in the order the server sent it, to one
// handler. One Live serves a whole edge: the handler fans out locally.
//
// Guarantees: messages of one tenant reach the handler in stream order;
// a message matching several watched filters reaches it once.
//
// Core NATS delivery has holes: while the connection reconnects (its server
// died, a network cut) and when the buffer overflows (a slow consumer),
// republished messages are simply not received. Live repairs them: after a
// reconnect or an overflow it reads, for every watched tenant, the stored
// messages of the watched filters after the last sequence it handed over,
// from the stream (Range), and hands them over before any later live
// message, so the handler still sees each tenant's messages in stream order
// and once.
//
// Messages of shared subscriptions (WatchShared) are repaired too, at
// least once within the group: NATS gives each to one member of the queue
// group, and an edge cannot tell which of the messages stored while it was
// cut off NATS had chosen it for (lost with the connection) and which went
// to another edge. So the edge that reconnects reads back every message of
// its shared filters after the last one it received from the tenant, and
// hands each to its deliver: the group gets each message at least once,
// those the other edges had twice.
type Live struct {
	b       *Backbone
	handler func(*message.Message)
	onDrop  func()
	log     *slog.Logger
	ch      chan *nats.Msg
	// repair is signalled (never blocking) when live messages may have
	// been missed; the dispatcher reads the gap back from the stream.
	repair chan struct{}
	// stop ends a repair in progress when Live closes.
	stop    context.Context
	stopNow context.CancelFunc
	// paused drops live messages from a disconnect until a repair
	// after the reconnect has read the stream: a live message received
	// after the reconnect follows messages stored while disconnected, and
	// handing it over first would put it ahead of them (and move the
	// repair's start past them); until the reconnected server's interest
	// has reached the stream leader (which the repair's first answered
	// request shows), more may be dropped.
	paused atomic.Bool
	// reconnects counts disconnects and reconnects: a repair ends the
	// pause only if neither happened while it ran.
	reconnects atomic.Uint64

	mu     sync.Mutex
	subs   map[string]*liveSub // subject -> subscription
	shared map[string]*liveSub // subject + "\x00" + queue -> queue subscription
	// sharedBy routes the messages of queue subscriptions to their handler.
	sharedBy map[*nats.Subscription]func(*message.Message)
	// sharedWatched holds, per tenant, the shared watches (what a repair
	// hands the messages read back to) and the stream's last sequence
	// when the tenant was first shared-watched.
	sharedWatched map[string]*sharedTenant
	// watched holds, per tenant, the filters of Watch and where the stream
	// stood when the tenant was first watched: what a repair reads back.
	watched map[string]*watchedTenant
	closed  bool

	// forgotten holds the tenants no longer watched whose sequences the
	// dispatcher has yet to drop, sharedForgotten those no longer watched
	// by a shared subscription; forget says either is not empty.
	forgotten       map[string]struct{}
	sharedForgotten map[string]struct{}
	forget          atomic.Bool

	done chan struct{}
	// last and repaired are touched only by the dispatch goroutine: the
	// last sequence handed over per tenant, and the sequence up to which a
	// repair read the stream (live copies up to it are dropped). Both go
	// when the tenant is no longer watched: watched again, it starts from
	// its stream as it is then — which may be another stream, of another
	// epoch, whose sequences start again at 1 (a tenant deleted and
	// created again), and whose messages a stale sequence would drop.
	last     map[string]uint64
	repaired map[string]uint64
	// sharedLast and sharedRepaired are last and repaired for the
	// messages of shared subscriptions.
	sharedLast     map[string]uint64
	sharedRepaired map[string]uint64
}

// sharedTenant is a tenant's shared watches, by filter and queue.
type sharedTenant struct {
	watches   map[string]*sharedWatch
	base      uint64
	baseKnown bool
}

type sharedWatch struct {
	filter  string
	deliver func(*message.Message)
	refs    int
}

type watchedTenant struct {
	filters map[string]int // filter -> references
	// base is the stream's last sequence when the tenant was first
	// watched; baseKnown is false when it could not be read.
	base      uint64
	baseKnown bool
}

// Repair timing: how long after a reconnect the repair starts (the
// resubscriptions must reach every server of the NATS cluster first, or a
// message stored meanwhile is neither received live nor inside the range
// read back), and how long it keeps trying while JetStream recovers (a
// stream whose leader died is unavailable until a new one is elected).
var (
	RepairDelay   = 250 * time.Millisecond
	RepairTimeout = 30 * time.Second
)

type liveSub struct {
	sub  *nats.Subscription
	refs int
}

// ErrClosed is returned when using a closed Live.
var ErrClosed = fault.New(fault.Unavailable, "backbone: live interest closed")

// NewLive starts a dispatcher calling handler for each live message. The
// handler must not block for long: it holds up every other delivery.
func (b *Backbone) NewLive(cfg LiveConfig, handler func(*message.Message)) *Live {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 65536
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	l := &Live{b: b, handler: handler, onDrop: cfg.OnDrop, log: cfg.Log, ch: make(chan *nats.Msg, cfg.Buffer),
		repair: make(chan struct{}, 1),
		subs:   map[string]*liveSub{}, shared: map[string]*liveSub{}, watched: map[string]*watchedTenant{},
		sharedBy: map[*nats.Subscription]func(*message.Message){}, sharedWatched: map[string]*sharedTenant{},
		done: make(chan struct{}), forgotten: map[string]struct{}{}, sharedForgotten: map[string]struct{}{},
		last: map[string]uint64{}, repaired: map[string]uint64{},
		sharedLast: map[string]uint64{}, sharedRepaired: map[string]uint64{}}
	l.stop, l.stopNow = context.WithCancel(context.Background())
	// Chain onto the connection's reconnect handler: every owner of a
	// Live needs the repair, and none must forget to wire it.
	prev := b.nc.Opts.ReconnectedCB
	b.nc.SetReconnectHandler(func(nc *nats.Conn) {
		if prev != nil {
			prev(nc)
		}
		l.reconnects.Add(1)
		l.paused.Store(true)
		l.log.Warn("nats reconnected: reading back what live delivery missed", "server", nc.ConnectedUrlRedacted())
		time.AfterFunc(RepairDelay, l.requestRepair)
	})
	// The pause starts at the disconnect: once resubscribed, the server
	// sends new messages at once, ahead of the reconnect handler, and
	// dispatching one would move the repair's starting point past the
	// messages missed while disconnected.
	prevDown := b.nc.Opts.DisconnectedErrCB
	b.nc.SetDisconnectErrHandler(func(nc *nats.Conn, err error) {
		if prevDown != nil {
			prevDown(nc, err)
		}
		// Closing the connection (the process stopping) disconnects it
		// too: nothing is paused that a reconnect would repair, and a
		// warning at every normal stop would teach operators to ignore
		// the real ones.
		if nc.IsClosed() {
			return
		}
		l.reconnects.Add(1)
		l.paused.Store(true)
		l.log.Warn("nats disconnected: live delivery paused until the stream is read back after the reconnect", "err", err)
	})
	go l.dispatch()
	return l
}

// requestRepair asks the dispatcher to read missed messages back; requests
// made while one is pending merge.
func (l *Live) requestRepair() {
	select {
	case l.repair <- struct{}{}:
	default:
	}
}

// Watch takes interest in filter for tenant and returns the function that
// releases it. Interest is live once Flush returns.
func (l *Live) Watch(tenant, filter string) (release func(), err error) {
	if !ValidTenant(tenant) {
		return nil, ErrBadTenant
	}
	subjects := topic.FilterSubjects(l.b.cfg.LiveSubject(tenant), filter)
	base, baseKnown := l.baseFor(tenant, func() bool { _, ok := l.watched[tenant]; return ok })
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	w := l.watched[tenant]
	if w == nil {
		w = &watchedTenant{filters: map[string]int{}, base: base, baseKnown: baseKnown}
		l.watched[tenant] = w
	}
	w.filters[filter]++
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
			l.unwatchLocked(tenant, filter)
			return nil, unavailable(err)
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
			l.unwatchLocked(tenant, filter)
			l.mu.Unlock()
		})
	}, nil
}

// baseFor returns where a repair of tenant's new watch may start reading:
// nowhere new if watching (called under l.mu) says the tenant is watched
// already (its base stays), else where its stream stands now (a repair
// never reads back before it: the tenant's earlier messages were never
// wanted here). known is false when it could not be read.
func (l *Live) baseFor(tenant string, watching func() bool) (base uint64, known bool) {
	l.mu.Lock()
	watched := watching()
	l.mu.Unlock()
	if watched {
		return 0, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.b.cfg.PublishTimeout)
	defer cancel()
	st, err := l.b.State(ctx, tenant)
	switch {
	case err == nil:
		return st.LastSeq, true
	case errors.Is(err, ErrNoStream):
		return 0, true
	}
	return 0, false
}

func (l *Live) unwatchLocked(tenant, filter string) {
	w := l.watched[tenant]
	if w == nil {
		return
	}
	if w.filters[filter]--; w.filters[filter] <= 0 {
		delete(w.filters, filter)
	}
	if len(w.filters) == 0 {
		delete(l.watched, tenant)
		l.forgotten[tenant] = struct{}{}
		l.forget.Store(true)
	}
}

// dropForgotten drops the sequences of the tenants no longer watched. The
// dispatcher calls it before handling anything, so a message is never
// judged by the sequences of a tenant's earlier watch.
func (l *Live) dropForgotten() {
	l.mu.Lock()
	ts, shared := l.forgotten, l.sharedForgotten
	l.forgotten, l.sharedForgotten = map[string]struct{}{}, map[string]struct{}{}
	l.forget.Store(false)
	l.mu.Unlock()
	for t := range ts {
		delete(l.last, t)
		delete(l.repaired, t)
	}
	for t := range shared {
		delete(l.sharedLast, t)
		delete(l.sharedRepaired, t)
	}
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
	return unavailable(l.b.nc.FlushWithContext(ctx))
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
	l.stopNow()
	close(l.ch)
	<-l.done
}

// AsyncError is to be called from the NATS connection's error handler: a slow
// consumer error on one of Live's subscriptions means live messages were
// lost; they are read back from the stream, and OnDrop is told.
func (l *Live) AsyncError(sub *nats.Subscription, err error) {
	if sub == nil || !errors.Is(err, nats.ErrSlowConsumer) {
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
		l.requestRepair()
		if l.onDrop != nil {
			l.onDrop()
		}
	}
}

func (l *Live) dispatch() {
	defer close(l.done)
	prefix := l.b.cfg.SubjectPrefix + ".live"
	for {
		select {
		case nm, ok := <-l.ch:
			if !ok {
				return
			}
			if l.forget.Load() {
				l.dropForgotten()
			}
			if l.paused.Load() {
				// Stored, so the repair reads it back, in order with
				// what was missed.
				continue
			}
			l.dispatchOne(prefix, nm)
		case <-l.repair:
			if l.forget.Load() {
				l.dropForgotten()
			}
			l.repairGaps()
		}
	}
}

func (l *Live) dispatchOne(prefix string, nm *nats.Msg) {
	tenant, name, err := splitSubject(prefix, nm.Subject)
	if err != nil {
		return
	}
	seq := parseSeq(nm.Header.Get(nats.JSSequence))
	if seq == 0 {
		return // not a republished message
	}
	if nm.Sub != nil && nm.Sub.Queue != "" {
		// A queue subscription's message: this edge's share of a
		// shared subscription. It is neither a copy of nor copied by
		// the plain subscriptions' messages (those reach the handler
		// on their own), so it stays out of their dedupe.
		if upto, ok := l.sharedRepaired[tenant]; ok {
			if seq <= upto {
				return // the repair handed it over already
			}
			delete(l.sharedRepaired, tenant)
		}
		l.sharedLast[tenant] = max(l.sharedLast[tenant], seq)
		l.mu.Lock()
		deliver := l.sharedBy[nm.Sub]
		l.mu.Unlock()
		if deliver != nil {
			deliver(l.message(tenant, name, seq, nm))
		}
		return
	}
	if upto, ok := l.repaired[tenant]; ok {
		if seq <= upto {
			// Received live after the repair had read it back
			// from the stream.
			return
		}
		delete(l.repaired, tenant)
	}
	// A message matching several watched subjects arrives once per
	// subject, back to back: drop the copies.
	last := l.last[tenant]
	if seq == last {
		return
	}
	if seq < last {
		// The stream was recreated: its epoch changed.
		l.b.Forget(tenant)
	}
	l.last[tenant] = seq
	l.handler(l.message(tenant, name, seq, nm))
}

// repairGaps reads back, for every watched tenant, the stored messages of its
// watched filters after the last one handed over, and hands them over. It
// runs on the dispatcher, so live messages wait behind it and stay in order.
func (l *Live) repairGaps() {
	// Only a repair that starts after a reconnect ends the pause it set;
	// it ends it whatever its outcome (past RepairTimeout, live delivery
	// resumes without the missed messages rather than not at all).
	if l.paused.Load() {
		gen := l.reconnects.Load()
		defer func() {
			if l.reconnects.Load() == gen {
				l.paused.Store(false)
			}
		}()
	}
	type gap struct {
		tenant  string
		filters []string
		from    uint64
	}
	var gaps []gap
	l.mu.Lock()
	// Before the plain repair moves last: the shared repair starts from
	// what the connection brought last.
	shared := l.sharedGapsLocked()
	for t, w := range l.watched {
		from := l.last[t]
		if w.base > from {
			from = w.base
		}
		if from == 0 && !w.baseKnown {
			// Where this tenant's messages start for us is unknown:
			// reading the whole stream back is not a repair.
			continue
		}
		g := gap{tenant: t, from: from}
		for f := range w.filters {
			g.filters = append(g.filters, f)
		}
		gaps = append(gaps, g)
	}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(l.stop, RepairTimeout)
	defer cancel()
	for _, g := range gaps {
		start, before := time.Now(), l.last[g.tenant]
		if err := l.repairTenant(ctx, g.tenant, g.filters, g.from); err != nil {
			// The messages stay in the stream: resumable subscribers get
			// them when they resume. Say that this edge missed them.
			l.log.Error("live repair failed: messages stored meanwhile are not delivered live",
				"tenant", g.tenant, "from", g.from, "err", err)
			if l.onDrop != nil {
				l.onDrop()
			}
			continue
		}
		l.log.Info("live repair", "tenant", g.tenant, "from", g.from, "through", l.last[g.tenant],
			"advanced", l.last[g.tenant] > before, "took", time.Since(start).Round(time.Millisecond))
	}
	l.repairShared(ctx, shared)
}

// sharedGap is what a repair reads back for a tenant's shared watches.
type sharedGap struct {
	tenant  string
	from    uint64
	watches []sharedWatch
}

// sharedGapsLocked returns, per tenant with shared watches, where its
// shared repair starts: after the last message this edge received from
// the tenant, plain or shared (up to it, what NATS routed here arrived),
// and not before the tenant was first shared-watched.
func (l *Live) sharedGapsLocked() []sharedGap {
	var gaps []sharedGap
	for t, st := range l.sharedWatched {
		from := max(l.sharedLast[t], l.last[t], st.base)
		if from == 0 && !st.baseKnown {
			continue
		}
		g := sharedGap{tenant: t, from: from}
		for _, w := range st.watches {
			g.watches = append(g.watches, *w)
		}
		gaps = append(gaps, g)
	}
	return gaps
}

// repairShared reads back, for each gap, the stored messages of the
// tenant's shared filters after its start, and hands each to the deliver
// of every shared watch it matches (see the type's documentation: at least
// once within the group). It runs on the dispatcher, after repairGaps'
// plain repair.
func (l *Live) repairShared(ctx context.Context, gaps []sharedGap) {
	for _, g := range gaps {
		filters := make([]string, 0, len(g.watches))
		for _, w := range g.watches {
			filters = append(filters, w.filter)
		}
		n := 0
		covered, err := l.readBack(ctx, g.tenant, filters, g.from, func(m *message.Message) {
			l.sharedLast[g.tenant] = max(l.sharedLast[g.tenant], m.Seq)
			n++
			for _, w := range g.watches {
				if topic.Match(w.filter, m.Topic) {
					w.deliver(m)
				}
			}
		})
		if covered > 0 {
			l.sharedRepaired[g.tenant] = covered
			l.sharedLast[g.tenant] = max(l.sharedLast[g.tenant], covered)
		}
		if err != nil {
			l.log.Error("shared subscription repair failed: messages stored meanwhile may have reached no member of their group",
				"tenant", g.tenant, "from", g.from, "err", err)
			if l.onDrop != nil {
				l.onDrop()
			}
			continue
		}
		l.log.Info("shared subscription repair", "tenant", g.tenant, "from", g.from, "through", l.sharedLast[g.tenant], "handed_over", n)
	}
}

func (l *Live) repairTenant(ctx context.Context, tenant string, filters []string, from uint64) error {
	covered, err := l.readBack(ctx, tenant, filters, from, func(m *message.Message) {
		l.last[tenant] = max(l.last[tenant], m.Seq)
		l.handler(m)
	})
	if covered > 0 {
		l.repaired[tenant] = covered
		l.last[tenant] = max(l.last[tenant], covered)
	}
	return err
}

// readBack reads tenant's stored messages of filters after from up to the
// stream's last and hands each to fn, once and in stream order, retrying
// while the stream does not answer (until ctx ends); each call gets its
// own short deadline: right after a reconnect (above all to a server that
// just restarted) a request's reply can be lost while interest spreads
// through the cluster, and a lost reply must cost one attempt, not the
// whole repair. It returns the stream's last sequence once everything up
// to it was read, 0 when there was nothing to read.
func (l *Live) readBack(ctx context.Context, tenant string, filters []string, from uint64, fn func(*message.Message)) (covered uint64, err error) {
	for {
		actx, cancel := context.WithTimeout(ctx, repairAttempt)
		st, err := l.b.State(actx, tenant)
		cancel()
		if err == nil {
			if st.LastSeq <= from {
				return 0, nil
			}
			last := from
			rctx, cancel := context.WithTimeout(ctx, 5*repairAttempt)
			err = l.b.Range(rctx, tenant, filters, from, st.LastSeq, func(m *message.Message) error {
				if m.Seq > last {
					last = m.Seq
					fn(m)
				}
				return nil
			})
			cancel()
			if err == nil {
				return st.LastSeq, nil
			}
			from = last
		}
		if errors.Is(err, ErrNoStream) {
			return 0, nil
		}
		l.log.Warn("live repair: reading the stream failed; retrying", "tenant", tenant, "from", from, "err", err)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// repairAttempt bounds one stream call of a repair.
const repairAttempt = 2 * time.Second

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
// deliver stays in use. Messages missed while the connection was down are
// read back and handed to deliver after the reconnect (see Live).
func (l *Live) WatchShared(tenant, filter, queue string, deliver func(*message.Message)) (release func(), err error) {
	if !ValidTenant(tenant) {
		return nil, ErrBadTenant
	}
	subjects := topic.FilterSubjects(l.b.cfg.LiveSubject(tenant), filter)
	base, baseKnown := l.baseFor(tenant, func() bool { _, ok := l.sharedWatched[tenant]; return ok })
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	st := l.sharedWatched[tenant]
	if st == nil {
		st = &sharedTenant{watches: map[string]*sharedWatch{}, base: base, baseKnown: baseKnown}
		l.sharedWatched[tenant] = st
	}
	wkey := filter + "\x00" + queue
	if w := st.watches[wkey]; w != nil {
		w.refs++
	} else {
		st.watches[wkey] = &sharedWatch{filter: filter, deliver: deliver, refs: 1}
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
			l.unwatchSharedLocked(tenant, wkey)
			return nil, unavailable(err)
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
			l.unwatchSharedLocked(tenant, wkey)
			l.mu.Unlock()
		})
	}, nil
}

func (l *Live) unwatchSharedLocked(tenant, wkey string) {
	st := l.sharedWatched[tenant]
	if st == nil {
		return
	}
	if w := st.watches[wkey]; w != nil {
		if w.refs--; w.refs <= 0 {
			delete(st.watches, wkey)
		}
	}
	if len(st.watches) == 0 {
		delete(l.sharedWatched, tenant)
		l.sharedForgotten[tenant] = struct{}{}
		l.forget.Store(true)
	}
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
