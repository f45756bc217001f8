package backbone

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
)

// Memory is an in-memory backbone for tests of pure logic: the same tenant
// streams (sequences, epochs, ranges, message ids), live interest (plain
// and shared) and the rest of what the real backbone offers, behind the
// same small interfaces its users declare, checked by the same
// conformance suites (package backbonetest) as the JetStream backbone.
// Nothing is persisted and nothing is bounded but by the test: it is not
// for production.
//
// Live delivery is in stream order per tenant, one goroutine per
// MemoryLive. A publish hands its message to the lives before it returns,
// so a message published after Watch returned always reaches the watcher.
type Memory struct {
	mu      sync.Mutex
	streams map[string]*memStream
	lives   map[*MemoryLive]struct{}
	groups  map[string]*memGroup // shared subscriptions, by queue
	epochs  atomic.Int64         // a clock for epochs that never repeats
	// deliver serialises hand-overs to the lives, so that they see one
	// order; taken before mu is released (see publish).
	deliver sync.Mutex

	ctl      memControl
	buckets  map[string]*memBucket
	durables map[string]*memCons // by tenant and name
}

type memStream struct {
	epoch string
	first uint64 // the first sequence held (last+1 when none)
	last  uint64
	msgs  []*message.Message // first..last
	ids   map[string]uint64  // message id → sequence, for duplicates
}

// NewMemory returns an empty in-memory backbone.
func NewMemory() *Memory {
	m := &Memory{streams: map[string]*memStream{}, lives: map[*MemoryLive]struct{}{}, groups: map[string]*memGroup{},
		buckets: map[string]*memBucket{}}
	m.epochs.Store(time.Now().UnixMilli())
	m.ctl.init()
	return m
}

// streamLocked returns the tenant's stream, created if create is set.
func (m *Memory) streamLocked(tenant string, create bool) (*memStream, error) {
	if !ValidTenant(tenant) {
		return nil, ErrBadTenant
	}
	s := m.streams[tenant]
	if s == nil {
		if !create {
			return nil, ErrNoStream
		}
		s = &memStream{epoch: strconv.FormatInt(m.epochs.Add(1), 36), first: 1, ids: map[string]uint64{}}
		m.streams[tenant] = s
	}
	return s, nil
}

// EnsureTenant creates the tenant's stream if needed and returns its epoch.
func (m *Memory) EnsureTenant(_ context.Context, tenant string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.streamLocked(tenant, true)
	if err != nil {
		return "", err
	}
	return s.epoch, nil
}

// Epoch returns the epoch of the tenant's stream without creating it.
func (m *Memory) Epoch(ctx context.Context, tenant string) (string, error) {
	st, err := m.State(ctx, tenant)
	return st.Epoch, err
}

// State returns the tenant stream's epoch and sequence bounds. An empty
// stream has FirstSeq 0, as JetStream's.
func (m *Memory) State(_ context.Context, tenant string) (StreamState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.streamLocked(tenant, false)
	if err != nil {
		return StreamState{}, err
	}
	first := s.first
	if s.last == 0 {
		first = 0
	}
	return StreamState{Epoch: s.epoch, FirstSeq: first, LastSeq: s.last}, nil
}

// Forget is a no-op: the in-memory backbone caches nothing.
func (m *Memory) Forget(string) {}

// DeleteTenant deletes the tenant's stream; one created later has another
// epoch.
func (m *Memory) DeleteTenant(_ context.Context, tenant string) error {
	if !ValidTenant(tenant) {
		return ErrBadTenant
	}
	m.mu.Lock()
	delete(m.streams, tenant)
	for k := range m.durables {
		if strings.HasPrefix(k, tenant+"\x00") {
			delete(m.durables, k)
		}
	}
	m.mu.Unlock()
	return nil
}

// Tenants lists the tenants that have a stream.
func (m *Memory) Tenants(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.streams))
	for t := range m.streams {
		out = append(out, t)
	}
	slices.Sort(out)
	return out, nil
}

// Trim drops the tenant's messages up to and including seq, as a stream's
// retention does: a test's way to age messages out.
func (m *Memory) Trim(tenant string, seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[tenant]
	if s == nil || seq < s.first {
		return
	}
	seq = min(seq, s.last)
	s.msgs = s.msgs[seq-s.first+1:]
	s.first = seq + 1
}

// publish stores a copy of msg and hands it to the lives watching it. It
// returns the stored message's position.
func (m *Memory) publish(msg *message.Message, opts PublishOptions) (message.Position, error) {
	m.mu.Lock()
	s, err := m.streamLocked(msg.Tenant, true)
	if err != nil {
		m.mu.Unlock()
		return message.Position{}, err
	}
	if err := topic.ValidateName(msg.Topic, topic.Limits{}); err != nil {
		m.mu.Unlock()
		return message.Position{}, fmt.Errorf("%w: %w", ErrNotStored, err)
	}
	if seq, dup := s.ids[opts.MsgID]; dup && opts.MsgID != "" {
		m.mu.Unlock()
		return message.Position{Epoch: s.epoch, Seq: seq}, nil
	}
	stored := *msg
	s.last++
	stored.Seq, stored.Time = s.last, time.Now()
	stored.TraceParent = opts.TraceParent
	s.msgs = append(s.msgs, &stored)
	if opts.MsgID != "" {
		s.ids[opts.MsgID] = s.last
	}
	pos := message.Position{Epoch: s.epoch, Seq: s.last}
	hand := m.routeLocked(&stored)
	// Handed over in sequence order: deliver is taken before mu is let go.
	m.deliver.Lock()
	m.mu.Unlock()
	for _, h := range hand {
		h.live.ch <- memDelivery{m: &stored, deliver: h.deliver}
	}
	m.deliver.Unlock()
	return pos, nil
}

// Publish stores m and returns its position.
func (m *Memory) Publish(_ context.Context, msg *message.Message, opts PublishOptions) (message.Position, error) {
	return m.publish(msg, opts)
}

// PublishAsync stores m at once and returns the settled outcome.
func (m *Memory) PublishAsync(_ context.Context, msg *message.Message, opts PublishOptions) (*Pending, error) {
	pos, err := m.publish(msg, opts)
	if err != nil {
		return nil, err
	}
	return Settled(pos, nil), nil
}

// Send stores m, answering nothing but a refusal of its tenant.
func (m *Memory) Send(_ context.Context, msg *message.Message, opts PublishOptions) error {
	if !ValidTenant(msg.Tenant) {
		return ErrBadTenant
	}
	_, _ = m.publish(msg, opts)
	return nil
}

// Range calls fn, in stream order, for each stored message of tenant with a
// sequence in (after, upto] matching one of the filters; upto 0 means the
// last stored when Range started.
func (m *Memory) Range(ctx context.Context, tenant string, filters []string, after, upto uint64, fn func(*message.Message) error) error {
	m.mu.Lock()
	s, err := m.streamLocked(tenant, false)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	if upto == 0 || upto > s.last {
		upto = s.last
	}
	var out []*message.Message
	for _, msg := range s.msgs {
		if msg.Seq > after && msg.Seq <= upto && anyMatch(filters, msg.Topic) {
			out = append(out, msg)
		}
	}
	m.mu.Unlock()
	for _, msg := range out {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := *msg
		if err := fn(&c); err != nil {
			return err
		}
	}
	return nil
}

// memDelivery is one message for a live: deliver set for a shared
// subscription's member, else the live's handler.
type memDelivery struct {
	m       *message.Message
	deliver func(*message.Message)
}

// handOver is one live to hand a stored message to.
type handOver struct {
	live    *MemoryLive
	deliver func(*message.Message)
}

// routeLocked returns where msg goes: every live watching a matching filter
// of its tenant, once, and one member of each shared group whose filter
// matches.
func (m *Memory) routeLocked(msg *message.Message) []handOver {
	var out []handOver
	for l := range m.lives {
		if l.matchesLocked(msg) {
			out = append(out, handOver{live: l})
		}
	}
	for _, g := range m.groups {
		if g.tenant != msg.Tenant || !topic.Match(g.filter, msg.Topic) || len(g.members) == 0 {
			continue
		}
		mem := g.members[g.next%len(g.members)]
		g.next++
		out = append(out, handOver{live: mem.live, deliver: mem.deliver})
	}
	return out
}

// memGroup is a shared subscription's queue group across lives.
type memGroup struct {
	tenant, filter string
	members        []*memMember
	next           int
}

type memMember struct {
	live    *MemoryLive
	deliver func(*message.Message)
	refs    int
}

// liveBuffer bounds a MemoryLive's undelivered messages; a publisher
// waits when it is full.
const liveBuffer = 1 << 16

// MemoryLive is live interest in a Memory backbone, as Live is in the
// JetStream one: ref-counted watches per tenant and filter, one goroutine
// handing messages to the handler in stream order.
type MemoryLive struct {
	m       *Memory
	handler func(*message.Message)
	ch      chan memDelivery
	done    chan struct{}
	// watched counts the watches per tenant and filter; guarded by m.mu.
	watched map[string]map[string]int
	closed  bool
}

// NewLive starts a live whose goroutine calls handler for each message
// of the filters it watches.
func (m *Memory) NewLive(handler func(*message.Message)) *MemoryLive {
	l := &MemoryLive{m: m, handler: handler, ch: make(chan memDelivery, liveBuffer), done: make(chan struct{}),
		watched: map[string]map[string]int{}}
	m.mu.Lock()
	m.lives[l] = struct{}{}
	m.mu.Unlock()
	go l.run()
	return l
}

func (l *MemoryLive) run() {
	defer close(l.done)
	for d := range l.ch {
		if d.deliver != nil {
			d.deliver(d.m)
		} else {
			l.handler(d.m)
		}
	}
}

func (l *MemoryLive) matchesLocked(msg *message.Message) bool {
	for f := range l.watched[msg.Tenant] {
		if topic.Match(f, msg.Topic) {
			return true
		}
	}
	return false
}

// Watch takes interest in filter for tenant, in effect when it returns.
func (l *MemoryLive) Watch(tenant, filter string) (release func(), err error) {
	if !ValidTenant(tenant) {
		return nil, ErrBadTenant
	}
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	fs := l.watched[tenant]
	if fs == nil {
		fs = map[string]int{}
		l.watched[tenant] = fs
	}
	fs[filter]++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if fs := l.watched[tenant]; fs != nil {
				if fs[filter]--; fs[filter] <= 0 {
					delete(fs, filter)
				}
				if len(fs) == 0 {
					delete(l.watched, tenant)
				}
			}
		})
	}, nil
}

// WatchShared makes this live a member of the queue group of a shared
// subscription: each message of filter goes to one member of the group,
// across lives, handed to deliver in stream order.
func (l *MemoryLive) WatchShared(tenant, filter, queue string, deliver func(*message.Message)) (release func(), err error) {
	if !ValidTenant(tenant) {
		return nil, ErrBadTenant
	}
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	g := m.groups[queue]
	if g == nil {
		g = &memGroup{tenant: tenant, filter: filter}
		m.groups[queue] = g
	}
	var mem *memMember
	for _, x := range g.members {
		if x.live == l {
			mem = x
		}
	}
	if mem == nil {
		mem = &memMember{live: l, deliver: deliver}
		g.members = append(g.members, mem)
	}
	mem.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if mem.refs--; mem.refs > 0 {
				return
			}
			g.members = slices.DeleteFunc(g.members, func(x *memMember) bool { return x == mem })
			if len(g.members) == 0 {
				delete(m.groups, queue)
			}
		})
	}, nil
}

// Flush returns at once: a watch is in effect when Watch returns.
func (l *MemoryLive) Flush(context.Context) error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return nil
}

// Close stops the live: its watches end and its goroutine returns once it
// handed over what it had.
func (l *MemoryLive) Close() {
	m := l.m
	m.deliver.Lock()
	m.mu.Lock()
	if l.closed {
		m.mu.Unlock()
		m.deliver.Unlock()
		return
	}
	l.closed = true
	delete(m.lives, l)
	for q, g := range m.groups {
		g.members = slices.DeleteFunc(g.members, func(x *memMember) bool { return x.live == l })
		if len(g.members) == 0 {
			delete(m.groups, q)
		}
	}
	close(l.ch)
	m.mu.Unlock()
	m.deliver.Unlock()
	<-l.done
}
