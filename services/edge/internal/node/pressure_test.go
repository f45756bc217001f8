package node_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// publishAsync publishes m as the anonymous identity at QoS 0 from a
// goroutine of its own; the channel says when Publish returned.
func publishAsync(n *node.Node, topic string) chan error {
	done := make(chan error, 1)
	go func() {
		_, err := n.Publish(context.Background(), node.Caller{Identity: edgetest.Anonymous},
			&message.Message{Topic: topic, Payload: []byte("x")}, node.PublishOptions{Wait: node.WaitStored})
		done <- err
	}()
	return done
}

// waitFor waits until cond holds, failing after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// pressing returns a node over the in-memory backbone with slowAfter and
// a live per-message feed of queue on topic, shedding QoS 0 (onDrop
// counts), into which n messages were published.
func pressing(t *testing.T, slowAfter time.Duration, queue int, topic string, onDrop func(), n int) (*node.Node, *node.Feed, *waker) {
	t.Helper()
	nd, _ := edgetest.MemoryNodeOn(t, backbone.NewMemory(), func(c *node.Config) { c.SlowAfter = slowAfter })
	f, w := perMessage(t, nd, node.Policy{Queue: queue, Overflow: node.OverflowShedQoS0, OnDrop: onDrop})
	s := subscribe(t, f, topic, node.Live(), node.SubOptions{QoS: 0})
	if _, err := s.Replay(context.Background(), func(node.Item) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-publishAsync(nd, topic); err != nil {
			t.Fatal(err)
		}
	}
	return nd, f, w
}

// TestPressureHoldsPublishersWhileTheFeedDrains ensures a feed at three
// quarters of its bound holds its tenant's publishes until its writer has
// taken it back to a quarter, and that the message that finds it full
// waits for room instead of being dropped.
func TestPressureHoldsPublishersWhileTheFeedDrains(t *testing.T) {
	var drops atomic.Int32
	n, f, w := pressing(t, time.Minute, 8, "p", func() { drops.Add(1) }, 6)
	waitFor(t, "the feed at 6 of 8 does not press", func() bool { return n.Pressing() == 1 })
	held := publishAsync(n, "p")
	select {
	case err := <-held:
		t.Fatalf("a publish went through while the feed pressed (err %v)", err)
	case <-time.After(100 * time.Millisecond): // a bounded look: absence cannot be signalled
	}
	if got := len(take(f, 5, all)); got != 5 {
		t.Fatalf("took %d, want 5", got)
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if got := len(takeAll(t, f, w, 2)); got != 2 || drops.Load() != 0 {
		t.Fatalf("took %d more, %d dropped; want 2 and none", got, drops.Load())
	}
}

// TestPressureEndsForAFeedNobodyTakesFrom ensures a feed whose writer
// takes nothing stops holding publishers back after SlowAfter and sheds
// under its own policy.
func TestPressureEndsForAFeedNobodyTakesFrom(t *testing.T) {
	dropped := make(chan struct{}, 64)
	n, _, _ := pressing(t, 100*time.Millisecond, 4, "q", func() {
		select {
		case dropped <- struct{}{}:
		default:
		}
	}, 10)
	waitFor(t, "the feed still presses", func() bool { return n.Pressing() == 0 })
	select {
	case <-dropped:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing shed by the slow feed")
	}
}

// backlogged is the in-memory live interest with a backlog the test sets.
type backlogged struct {
	*backbone.MemoryLive
	queued atomic.Int64
}

func (b *backlogged) Queued() int { return int(b.queued.Load()) }

// TestPublishWaitsForADeepLiveBacklog ensures a publish waits while more
// than 4,096 live messages wait for the edge's dispatcher, until they are
// back to 1,024.
func TestPublishWaitsForADeepLiveBacklog(t *testing.T) {
	mem := backbone.NewMemory()
	var n *node.Node
	live := &backlogged{MemoryLive: mem.NewLive(func(m *message.Message) { n.Dispatch(m) })}
	t.Cleanup(live.Close)
	n, _ = edgetest.MemoryNodeOn(t, mem, func(c *node.Config) { c.Interest = live })
	live.queued.Store(5000)
	held := publishAsync(n, "b")
	select {
	case err := <-held:
		t.Fatalf("a publish went through a backlog of 5,000 (err %v)", err)
	case <-time.After(100 * time.Millisecond): // a bounded look: absence cannot be signalled
	}
	live.queued.Store(2000)
	select {
	case err := <-held:
		t.Fatalf("a publish went through a backlog of 2,000 while waiting (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	live.queued.Store(1000)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// remoteEdge returns the edge under test (SlowAfter slowAfter) and a
// second edge on the same in-memory backbone whose publishers the first
// does not slow: what reaches the first edge's dispatcher then is not held
// back by its feeds' pressure, as with publishers on other edges.
func remoteEdge(t *testing.T, slowAfter time.Duration) (edge, remote *node.Node) {
	t.Helper()
	mem := backbone.NewMemory()
	edge, _ = edgetest.MemoryNodeOn(t, mem, func(c *node.Config) { c.SlowAfter = slowAfter })
	remote, _ = edgetest.MemoryNodeOn(t, mem)
	return edge, remote
}

// admitAs admits an anonymous connection of tenant on n.
func admitAs(t *testing.T, n *node.Node, tenant string) *node.Admission {
	t.Helper()
	a, err := n.Admit(context.Background(), node.ClientInfo{ID: "test", Protocol: "test",
		Identity: auth.Identity{Tenant: tenant, Anonymous: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Release)
	return a
}

// liveFeed returns a live per-message feed of tenant on n, subscribed to
// filter at QoS 0, queue bounding it and shedding QoS 0 (onDrop counts).
func liveFeed(t *testing.T, n *node.Node, tenant, filter string, queue int, onDrop func()) (*node.Feed, *waker) {
	t.Helper()
	w := newWaker()
	f, err := n.NewFeed(context.Background(), admitAs(t, n, tenant), node.Policy{Queue: queue,
		Overflow: node.OverflowShedQoS0, OnDrop: onDrop, PerMessage: true, Wake: w.wake})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	s := subscribe(t, f, filter, node.Live(), node.SubOptions{QoS: 0})
	if _, err := s.Replay(context.Background(), func(node.Item) error { return nil }); err != nil {
		t.Fatal(err)
	}
	return f, w
}

// publishAs publishes a QoS 0 message on topic as an anonymous client of
// tenant through n, waiting for its store.
func publishAs(t *testing.T, n *node.Node, tenant, topic string) {
	t.Helper()
	r, err := n.Publish(context.Background(), node.Caller{Identity: auth.Identity{Tenant: tenant, Anonymous: true}},
		&message.Message{Topic: topic, Payload: []byte("x")}, node.PublishOptions{Wait: node.WaitStored})
	if err == nil {
		_, err = r.Wait(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestStalledFeedIsSlowWithinTheStallBound ensures a full feed whose
// writer takes nothing while the dispatcher waits on it is judged slow
// after the stall bound (SlowAfter/20: 1 s here), not after SlowAfter
// (20 s), and sheds under its own policy.
func TestStalledFeedIsSlowWithinTheStallBound(t *testing.T) {
	edge, remote := remoteEdge(t, 20*time.Second)
	liveFeed(t, edge, "acme", "elsewhere", 1, nil) // another tenant's delivery is at stake
	var drops atomic.Int32
	liveFeed(t, edge, edgetest.Tenant, "s", 2, func() { drops.Add(1) })
	for range 3 {
		publishAs(t, remote, edgetest.Tenant, "s")
	}
	waitFor(t, "the stalled feed was not judged slow within 5 s", func() bool { return drops.Load() > 0 })
	if st := edge.Waits(); st.Stalls != 1 {
		t.Fatalf("waits %+v: want one stall", st)
	}
}

// TestTenantCannotStallAnotherTenantsDelivery ensures one tenant's
// subscribers that read nothing hold the edge's dispatcher for at most
// their tenant's wait share in any window (SlowAfter/10 per SlowAfter/2),
// while another tenant's subscriber receives everything published to it.
func TestTenantCannotStallAnotherTenantsDelivery(t *testing.T) {
	const slowAfter, stuck, rounds = 10 * time.Second, 8, 20
	edge, remote := remoteEdge(t, slowAfter)
	for range stuck {
		liveFeed(t, edge, "acme", "a", 1, nil)
	}
	b, w := liveFeed(t, edge, edgetest.Tenant, "b", rounds, nil)
	for range rounds {
		publishAs(t, remote, "acme", "a")
		publishAs(t, remote, edgetest.Tenant, "b")
	}
	takeAll(t, b, w, rounds)
	// The share is cut by a timer, which may fire late: half a share of
	// slack, where the stall bound alone would let the 8 stalled feeds
	// hold the dispatcher for 8 stall bounds (4 shares) in a row.
	share := slowAfter / 10
	if st := edge.Waits(); st.MostInWindow > share+share/2 || st.Overruns == 0 || st.Stalls == 0 {
		t.Fatalf("waits %+v: want at most %s in a window, the share spent and a stall", st, share)
	}
}
