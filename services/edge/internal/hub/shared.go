package hub

import (
	"context"
	"slices"
	"sync/atomic"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
)

// group is the local members of one shared subscription. The edge holds
// one queue-group interest for it (backbone.SharedQueue of tenant, group
// and filter, the same name on every edge), so NATS hands each message of
// the filter to one edge with members; the edge then hands it to one local
// member, round robin.
type group struct {
	tenant, filter string
	members        []*Subscription // guarded by Hub.mu
	next           atomic.Uint64
	release        func()
}

func (h *Hub) subscribeShared(ctx context.Context, s *Subscription) error {
	si, ok := h.interest.(SharedInterest)
	if !ok {
		return ErrSharedUnsupported
	}
	queue := backbone.SharedQueue(s.Tenant, s.Group, s.Filter)
	h.sharedMu.Lock()
	defer h.sharedMu.Unlock()
	h.mu.Lock()
	g := h.groups[queue]
	if g != nil {
		g.members = append(g.members, s)
		h.count++
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	g = &group{tenant: s.Tenant, filter: s.Filter, members: []*Subscription{s}}
	release, err := si.WatchShared(s.Tenant, s.Filter, queue, func(m *message.Message) { h.dispatchShared(g, m) })
	if err != nil {
		return err
	}
	g.release = release
	h.mu.Lock()
	h.groups[queue] = g
	h.count++
	h.mu.Unlock()
	if err := h.interest.Flush(ctx); err != nil {
		h.unsubscribeLocked(s, queue)
		return err
	}
	return nil
}

func (h *Hub) unsubscribeShared(s *Subscription) {
	h.sharedMu.Lock()
	defer h.sharedMu.Unlock()
	h.unsubscribeLocked(s, backbone.SharedQueue(s.Tenant, s.Group, s.Filter))
}

// unsubscribeLocked removes member s of the group of queue; the caller
// holds sharedMu.
func (h *Hub) unsubscribeLocked(s *Subscription, queue string) {
	h.mu.Lock()
	g := h.groups[queue]
	if g == nil {
		h.mu.Unlock()
		return
	}
	i := slices.Index(g.members, s)
	if i < 0 {
		h.mu.Unlock()
		return
	}
	// A new slice: dispatchShared may be reading the old one.
	g.members = slices.Delete(slices.Clone(g.members), i, i+1)
	h.count--
	empty := len(g.members) == 0
	if empty {
		delete(h.groups, queue)
	}
	h.mu.Unlock()
	if empty {
		g.release()
	}
}

// dispatchShared hands m, which NATS gave this edge for group g, to one
// local member, round robin. A message that arrives after the last local
// member left is dropped: NATS had chosen this edge for it.
func (h *Hub) dispatchShared(g *group, m *message.Message) {
	if m.Tenant != g.tenant || !topic.Match(g.filter, m.Topic) {
		return // the subjects over-deliver ('$' topics under a wildcard)
	}
	h.mu.RLock()
	members := g.members
	h.mu.RUnlock()
	if len(members) == 0 {
		return
	}
	s := members[(g.next.Add(1)-1)%uint64(len(members))]
	s.Subscriber.Deliver(m, []*Subscription{s})
}
