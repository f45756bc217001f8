// Package hub fans live messages out to the subscribers connected to this
// edge, whatever their protocol.
//
// The hub keeps one topic trie per tenant and asks the backbone for live
// interest once per distinct filter (the backbone ref-counts NATS
// subscriptions). Every message reaches Dispatch from the backbone's single
// dispatcher goroutine, in stream order per tenant; Dispatch hands it to each
// matching subscriber once, with all the subscriptions it matched.
package hub

import (
	"context"
	"sync"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
)

// Subscriber receives live messages. Deliver is called from the dispatch
// goroutine and must not block: implementations put the message on a bounded
// queue and apply their documented overflow policy when it is full.
type Subscriber interface {
	// Deliver hands over m, which matched subs (all of this subscriber's,
	// at least one). m is shared: it must not be modified.
	Deliver(m *message.Message, subs []*Subscription)
	// Origin identifies the subscriber's connection for no-local filtering
	// (compared with message.Message.Origin); empty for none.
	Origin() string
}

// Subscription is one topic filter of one subscriber, with its options.
type Subscription struct {
	Tenant     string
	Filter     string
	Subscriber Subscriber
	// QoS is the maximum QoS granted.
	QoS byte
	// NoLocal skips messages this subscriber's own connection published (MQTT 5).
	NoLocal bool
	// RetainAsPublished keeps the retain flag on live deliveries (MQTT 5).
	RetainAsPublished bool
	// ID is the MQTT 5 subscription identifier, 0 for none.
	ID uint32
	// Group, when set, makes this a member of the shared subscription
	// Group of Filter (MQTT 5 "$share/<Group>/<Filter>"): each message of
	// the filter goes to one member of the group across all edges, instead
	// of to every subscription.
	Group string
	// Owner is the subscriber's own handle on the subscription (the
	// core's Sub), which the hub leaves alone.
	Owner any

	release func()
}

// Interest is what the hub needs from the backbone: ref-counted live
// interest in a tenant's filter, and a barrier after which it is in effect.
type Interest interface {
	Watch(tenant, filter string) (release func(), err error)
	Flush(ctx context.Context) error
}

// SharedInterest is implemented by an Interest that can also balance a
// filter's messages over a queue group spanning every edge: each message
// reaches one member of queue, on one edge, where it is handed to deliver
// (in stream order with the other live messages) rather than to Dispatch.
type SharedInterest interface {
	WatchShared(tenant, filter, queue string, deliver func(*message.Message)) (release func(), err error)
}

// Sentinel errors of Subscribe.
var (
	// ErrInvalidFilter is returned by Subscribe for a malformed filter.
	ErrInvalidFilter = fault.New(fault.InvalidFilter, "hub: invalid topic filter")
	// ErrSharedUnsupported is returned for a shared subscription when the
	// interest cannot balance across edges.
	ErrSharedUnsupported = fault.New(fault.Unsupported, "hub: shared subscriptions not supported")
)

// Hub is the local fan-out. It is safe for concurrent use.
type Hub struct {
	interest Interest

	mu      sync.RWMutex
	tenants map[string]*trie
	count   int

	// sharedMu serialises shared subscribes and unsubscribes, which take
	// and release the group's interest; groups is guarded by mu as well.
	sharedMu sync.Mutex
	groups   map[string]*group // by queue
}

// New returns a hub taking interest through in.
func New(in Interest) *Hub {
	return &Hub{interest: in, tenants: map[string]*trie{}, groups: map[string]*group{}}
}

// Subscribe registers s and returns once live interest is in effect on the
// backbone: every message stored after Subscribe returns reaches s (or, for
// a member of a shared group, reaches one member of its group).
func (h *Hub) Subscribe(ctx context.Context, s *Subscription) error {
	if topic.ValidateFilter(s.Filter, topic.Limits{}) != nil {
		return ErrInvalidFilter
	}
	if s.Group != "" {
		return h.subscribeShared(ctx, s)
	}
	release, err := h.interest.Watch(s.Tenant, s.Filter)
	if err != nil {
		return err
	}
	s.release = release
	h.mu.Lock()
	t := h.tenants[s.Tenant]
	if t == nil {
		t = &trie{}
		h.tenants[s.Tenant] = t
	}
	t.add(s)
	h.count++
	h.mu.Unlock()
	if err := h.interest.Flush(ctx); err != nil {
		h.Unsubscribe(s)
		return err
	}
	return nil
}

// Unsubscribe removes s; it is a no-op for a subscription not registered.
func (h *Hub) Unsubscribe(s *Subscription) {
	if s.Group != "" {
		h.unsubscribeShared(s)
		return
	}
	h.mu.Lock()
	t := h.tenants[s.Tenant]
	removed := t != nil && t.remove(s)
	if removed {
		h.count--
		if t.root.empty() {
			delete(h.tenants, s.Tenant)
		}
	}
	h.mu.Unlock()
	if removed && s.release != nil {
		s.release()
	}
}

// Len returns the number of registered subscriptions.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.count
}

// Crowded reports whether a tenant other than tenant has subscriptions on
// the hub, shared ones included: whether a delivery of tenant that waits
// holds another tenant's deliveries behind it.
func (h *Hub) Crowded(tenant string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for id := range h.tenants {
		if id != tenant {
			return true
		}
	}
	for _, g := range h.groups {
		if g.tenant != tenant {
			return true
		}
	}
	return false
}

// Dispatch delivers m to every local subscriber with a matching subscription.
// It returns the number of subscribers m was handed to.
func (h *Hub) Dispatch(m *message.Message) int {
	h.mu.RLock()
	t := h.tenants[m.Tenant]
	if t == nil {
		h.mu.RUnlock()
		return 0
	}
	var matched []*Subscription
	if hint := t.lastMatch.Load(); hint > 0 {
		matched = make([]*Subscription, 0, hint)
	}
	t.match(m.Topic, func(s *Subscription) {
		if s.NoLocal && m.Origin != "" && m.Origin == s.Subscriber.Origin() {
			return
		}
		matched = append(matched, s)
	})
	t.lastMatch.Store(int32(min(len(matched), 1<<16)))
	h.mu.RUnlock()
	return deliverGrouped(m, matched)
}

// smallGroup is the number of matches up to which deliverGrouped groups
// them by subscriber by comparing pairs, without a map.
const smallGroup = 16

// deliverGrouped hands m to each subscriber of matched once, with all of
// its subscriptions, subscribers in the order of their first match. The
// common cases cost one allocation (matched itself): one match, or a few
// matches grouped in place. Each subscriber gets its own capped slice,
// since a subscriber may keep it.
func deliverGrouped(m *message.Message, matched []*Subscription) int {
	n := len(matched)
	switch {
	case n == 0:
		return 0
	case n == 1:
		matched[0].Subscriber.Deliver(m, matched[:1:1])
		return 1
	case n <= smallGroup:
		// Regroup matched in place so that each subscriber's matches are
		// contiguous, subscribers and matches in first-match order.
		var orig [smallGroup]*Subscription
		var taken [smallGroup]bool
		copy(orig[:], matched)
		subscribers, at := 0, 0
		for i := range n {
			if taken[i] {
				continue
			}
			start := at
			for k := i; k < n; k++ {
				if !taken[k] && orig[k].Subscriber == orig[i].Subscriber {
					matched[at] = orig[k]
					taken[k] = true
					at++
				}
			}
			matched[start].Subscriber.Deliver(m, matched[start:at:at])
			subscribers++
		}
		return subscribers
	}
	// Many matches: group in place too, through a pooled index of
	// subscribers, so that a fan-out costs no allocation per subscriber.
	sc := groupPool.Get().(*groupScratch)
	defer sc.release()
	for _, s := range matched {
		i, ok := sc.index[s.Subscriber]
		if !ok {
			i = len(sc.counts)
			sc.index[s.Subscriber] = i
			sc.counts = append(sc.counts, 0)
		}
		sc.counts[i]++
	}
	if len(sc.counts) == n {
		// Every subscriber matched once: the usual fan-out.
		for i := range matched {
			matched[i].Subscriber.Deliver(m, matched[i:i+1:i+1])
		}
		return n
	}
	// Counting sort by subscriber, in order of first match.
	sc.orig = append(sc.orig[:0], matched...)
	at := 0
	for i, c := range sc.counts {
		sc.counts[i] = at // now the next free slot of subscriber i
		at += c
	}
	sc.starts = append(sc.starts[:0], sc.counts...)
	for _, s := range sc.orig {
		i := sc.index[s.Subscriber]
		matched[sc.counts[i]] = s
		sc.counts[i]++
	}
	for i, start := range sc.starts {
		end := sc.counts[i]
		matched[start].Subscriber.Deliver(m, matched[start:end:end])
	}
	return len(sc.starts)
}

// groupScratch is deliverGrouped's reusable state for many matches.
type groupScratch struct {
	index  map[Subscriber]int
	counts []int
	starts []int
	orig   []*Subscription
}

var groupPool = sync.Pool{New: func() any { return &groupScratch{index: map[Subscriber]int{}} }}

func (sc *groupScratch) release() {
	if len(sc.index) > 4096 {
		// One huge fan-out does not pin its map for ever.
		sc.index = map[Subscriber]int{}
	} else {
		clear(sc.index)
	}
	clear(sc.orig) // drop the references
	sc.counts, sc.starts, sc.orig = sc.counts[:0], sc.starts[:0], sc.orig[:0]
	groupPool.Put(sc)
}
