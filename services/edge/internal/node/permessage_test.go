package node_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// These tests run the per-message feed (MQTT's) through the hub over the
// in-memory backbone.

// perMessage returns a per-message feed of the anonymous tenant on n.
func perMessage(t *testing.T, n *node.Node, p node.Policy) (*node.Feed, *waker) {
	t.Helper()
	w := newWaker()
	p.PerMessage, p.SharedGroups, p.Wake = true, true, w.wake
	f, err := n.NewFeed(context.Background(), edgetest.Admit(t, n), p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f, w
}

// take takes at most max of the feed's items while fits accepts them.
func take(f *node.Feed, max int, fits func(*node.Item) bool) []node.Item {
	var out []node.Item
	f.Take(max, func(it *node.Item) bool {
		if !fits(it) {
			return false
		}
		out = append(out, *it)
		return true
	})
	return out
}

func all(*node.Item) bool { return true }

// takeAll waits for the feed's items until want were taken.
func takeAll(t *testing.T, f *node.Feed, w *waker, want int) []node.Item {
	t.Helper()
	var got []node.Item
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		n := len(got)
		got = append(got, take(f, 1<<20, all)...)
		if len(got) == n {
			select {
			case <-w.ch:
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	if len(got) != want {
		t.Fatalf("took %d items, want %d: %v", len(got), want, describe(got))
	}
	return got
}

// describe lists items as "payload/qos/ids[/R for retained]", the
// identifiers sorted.
func describe(items []node.Item) []string {
	var out []string
	for _, it := range items {
		if it.Gap() {
			out = append(out, "gap")
			continue
		}
		ids := slices.Clone(it.IDs)
		slices.Sort(ids)
		s := fmt.Sprintf("%s/%d/%v", it.Msg.Payload, it.QoS, ids)
		if it.Retained {
			s += "/R"
		}
		out = append(out, s)
	}
	return out
}

func subscribe(t *testing.T, f *node.Feed, filter string, from node.Start, o node.SubOptions) *node.Sub {
	t.Helper()
	s, err := f.Subscribe(context.Background(), []string{filter}, from, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPerMessageOnceForOverlaps ensures a message matching several
// subscriptions of a per-message feed is delivered once, at the highest
// QoS granted, with every identifier; and that while one subscription
// replays every live message is held, so that the connection's messages
// keep their order.
func TestPerMessageOnceForOverlaps(t *testing.T) {
	ctx := context.Background()
	n, _ := edgetest.MemoryNodeOn(t, backbone.NewMemory())
	f, w := perMessage(t, n, node.Policy{Queue: 16})
	a := subscribe(t, f, "a/#", node.Live(), node.SubOptions{QoS: 0, ID: 1})
	if _, err := a.Replay(ctx, func(node.Item) error { return nil }); err != nil {
		t.Fatal(err)
	}
	edgetest.Publish(t, n, &message.Message{Topic: "a/x", Payload: []byte("1"), QoS: 2})
	takeAll(t, f, w, 1)
	b := subscribe(t, f, "a/x", node.Live(), node.SubOptions{QoS: 1, ID: 2})
	edgetest.Publish(t, n, &message.Message{Topic: "a/x", Payload: []byte("2"), QoS: 2})
	edgetest.Publish(t, n, &message.Message{Topic: "a/y", Payload: []byte("3"), QoS: 2})
	time.Sleep(50 * time.Millisecond)
	if f.Pending() != 0 {
		t.Fatal("live messages queued while a subscription replays")
	}
	if low, ok := f.Oldest(); !ok || low == 0 {
		t.Fatal("held messages not counted by Oldest")
	}
	if _, err := b.Replay(ctx, func(node.Item) error { return nil }); err != nil {
		t.Fatal(err)
	}
	got := describe(takeAll(t, f, w, 2))
	if want := []string{"2/1/[1 2]", "3/0/[1]"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestPerMessageShedQoS0 ensures the shedding overflow drops QoS 0
// deliveries first, makes room for QoS 1 ones by dropping the oldest QoS 0
// one, and ends the feed when only QoS 1 and 2 ones fill it.
func TestPerMessageShedQoS0(t *testing.T) {
	ctx := context.Background()
	n, _ := edgetest.MemoryNodeOn(t, backbone.NewMemory())
	var drops atomic.Int32
	f, w := perMessage(t, n, node.Policy{Queue: 2, Overflow: node.OverflowShedQoS0, OnDrop: func() { drops.Add(1) }})
	s := subscribe(t, f, "q", node.Live(), node.SubOptions{QoS: 2})
	if _, err := s.Replay(ctx, func(node.Item) error { return nil }); err != nil {
		t.Fatal(err)
	}
	publish := func(p string, qos byte) {
		edgetest.Publish(t, n, &message.Message{Topic: "q", Payload: []byte(p), QoS: qos})
	}
	waitPending := func(want int) {
		deadline := time.Now().Add(5 * time.Second)
		for f.Pending() != want && f.Err() == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	publish("a", 0)
	publish("b", 1)
	waitPending(2)
	publish("c", 0) // no room: dropped
	publish("d", 1) // takes a's place
	deadline := time.Now().Add(5 * time.Second)
	for drops.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := describe(takeAll(t, f, w, 2))
	if want := []string{"b/1/[]", "d/1/[]"}; !slices.Equal(got, want) || drops.Load() != 2 {
		t.Fatalf("got %v and %d drops, want %v and 2", got, drops.Load(), want)
	}
	publish("e", 1)
	publish("f", 2)
	waitPending(2)
	publish("g", 1) // no QoS 0 to shed: the feed ends
	deadline = time.Now().Add(5 * time.Second)
	for f.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if f.Err() != node.ErrSlowConsumer {
		t.Fatalf("feed error %v, want the slow consumer", f.Err())
	}
}

// TestTakeWithinWindow ensures Take stops at the first item the writer
// cannot send, leaving it and what follows queued in order.
func TestTakeWithinWindow(t *testing.T) {
	ctx := context.Background()
	n, _ := edgetest.MemoryNodeOn(t, backbone.NewMemory())
	f, w := perMessage(t, n, node.Policy{Queue: 16})
	s := subscribe(t, f, "w", node.Live(), node.SubOptions{QoS: 1})
	if _, err := s.Replay(ctx, func(node.Item) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for i, qos := range []byte{0, 1, 1, 0, 1} {
		edgetest.Publish(t, n, &message.Message{Topic: "w", Payload: []byte(fmt.Sprint(i)), QoS: qos})
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Pending() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	window := 1
	fits := func(it *node.Item) bool {
		if it.QoS == 0 {
			return true
		}
		if window == 0 {
			return false
		}
		window--
		return true
	}
	if got := describe(take(f, 16, fits)); !slices.Equal(got, []string{"0/0/[]", "1/1/[]"}) {
		t.Fatalf("first take %v", got)
	}
	if f.Ready(fits) {
		t.Fatal("ready with the window full")
	}
	window = 8
	if got := describe(take(f, 2, fits)); !slices.Equal(got, []string{"2/1/[]", "3/0/[]"}) {
		t.Fatalf("second take %v", got)
	}
	if got := describe(takeAll(t, f, w, 1)); !slices.Equal(got, []string{"4/1/[]"}) {
		t.Fatalf("last take %v", got)
	}
}

// TestRetainedFirst ensures a retained-first start gives the retained
// messages of its filter, then live ones, without the live copy of a
// retained message that arrived while the retained ones were read.
func TestRetainedFirst(t *testing.T) {
	ctx := context.Background()
	n, _ := edgetest.MemoryNodeOn(t, backbone.NewMemory())
	edgetest.Publish(t, n, &message.Message{Topic: "r/a", Payload: []byte("a1"), Retain: true, QoS: 1})
	edgetest.Publish(t, n, &message.Message{Topic: "r/b", Payload: []byte("b1"), Retain: true, QoS: 1})
	edgetest.Publish(t, n, &message.Message{Topic: "r/b", Payload: nil, Retain: true}) // cleared
	edgetest.Publish(t, n, &message.Message{Topic: "x", Payload: []byte("x"), Retain: true})
	f, w := perMessage(t, n, node.Policy{Queue: 16})
	s := subscribe(t, f, "r/+", node.RetainedFirst(), node.SubOptions{QoS: 1, ID: 9})
	// Arrives live while the subscription is paused, and is retained too.
	edgetest.Publish(t, n, &message.Message{Topic: "r/a", Payload: []byte("a2"), Retain: true, QoS: 1})
	time.Sleep(50 * time.Millisecond)
	var retained []node.Item
	if _, err := s.Replay(ctx, func(it node.Item) error { retained = append(retained, it); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := describe(retained); !slices.Equal(got, []string{"a2/1/[9]/R"}) || !retained[0].Retain {
		t.Fatalf("retained %v", got)
	}
	edgetest.Publish(t, n, &message.Message{Topic: "r/a", Payload: []byte("a3"), QoS: 1})
	if got := describe(takeAll(t, f, w, 1)); !slices.Equal(got, []string{"a3/1/[9]"}) {
		t.Fatalf("live %v: the live copy of a retained message came again", got)
	}
}

// TestResumeSession ensures a per-message feed resumes its subscriptions
// together from one position: each stored message once with its
// delivery summed over the subscriptions it matches, none for a shared
// subscription, none of the client's own for a no-local one, then the
// live messages held meanwhile without those the replay gave.
func TestResumeSession(t *testing.T) {
	ctx := context.Background()
	n, _ := edgetest.MemoryNodeOn(t, backbone.NewMemory())
	start := edgetest.Position(t, n, edgetest.Publish(t, n, &message.Message{Topic: "s/old", Payload: []byte("old")}))
	f, w := perMessage(t, n, node.Policy{Queue: 64})
	own := n.Origin("test") // the client edgetest.Admit admits
	edgetest.Publish(t, n, &message.Message{Topic: "s/1", Payload: []byte("1"), QoS: 1})
	edgetest.Publish(t, n, &message.Message{Topic: "s/2", Payload: []byte("own"), QoS: 1, Origin: own})
	edgetest.Publish(t, n, &message.Message{Topic: "g/1", Payload: []byte("shared"), QoS: 1})
	subscribe(t, f, "s/#", node.Live(), node.SubOptions{QoS: 1, ID: 1, NoLocal: true})
	subscribe(t, f, "s/1", node.Live(), node.SubOptions{QoS: 2, ID: 2})
	subscribe(t, f, "g/#", node.Live(), node.SubOptions{QoS: 1, Group: "grp"})
	edgetest.Publish(t, n, &message.Message{Topic: "s/1", Payload: []byte("live"), QoS: 2})
	var replayed []node.Item
	res, err := f.Resume(ctx, start, func(it node.Item) error { replayed = append(replayed, it); return nil })
	if err != nil {
		t.Fatal(err)
	}
	got := describe(replayed)
	// The live message may have been stored before the replay read the
	// stream's end: then the replay has it and the live copy is dropped.
	if slices.Equal(got, []string{"1/1/[1 2]", "live/2/[1 2]"}) {
		if items := take(f, 16, all); len(items) != 0 {
			t.Fatalf("replayed and live: %v", describe(items))
		}
		return
	}
	if want := []string{"1/1/[1 2]"}; !slices.Equal(got, want) {
		t.Fatalf("replayed %v, want %v (last %d)", got, want, res.Last)
	}
	if got := describe(takeAll(t, f, w, 1)); !slices.Equal(got, []string{"live/2/[1 2]"}) {
		t.Fatalf("live %v", got)
	}
}
