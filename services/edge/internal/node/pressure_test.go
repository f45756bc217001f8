package node_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
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
