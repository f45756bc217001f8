package node

import (
	"context"
	"errors"
	"testing"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/hub"
)

func msg(seq uint64) *message.Message { return &message.Message{Topic: "t", Seq: seq} }

// testFeed returns a feed of tenant "t" over an in-memory backbone, whose
// subscriptions the tests make by hand (paused, outside the hub).
func testFeed(t *testing.T, queue int, overflow Overflow, wake func()) *Feed {
	t.Helper()
	mem := backbone.NewMemory()
	if _, err := mem.EnsureTenant(context.Background(), "t"); err != nil {
		t.Fatal(err)
	}
	n := &Node{stream: mem}
	f, err := n.NewFeed(context.Background(), &Admission{id: auth.Identity{Tenant: "t"}}, Policy{Queue: queue, Overflow: overflow, Wake: wake})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// newSub returns a paused subscription of f, outside the hub.
func (f *Feed) newSub(key string) *Sub {
	s := &Sub{f: f, key: key, paused: true}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.policy.PerMessage {
		f.paused++
	}
	f.subs = append(f.subs, s)
	return s
}

// deliver hands m to s as the hub would.
func (s *Sub) deliver(m *message.Message) { s.f.Deliver(m, []*hub.Subscription{{Owner: s}}) }

func drain(t *testing.T, f *Feed) ([]Item, error) {
	t.Helper()
	return f.Drain(context.Background(), nil)
}

// seqs describes drained items: message sequences, and -After for gaps.
func seqs(items []Item) []int64 {
	var out []int64
	for _, it := range items {
		if it.Gap() {
			out = append(out, -int64(it.Pos.Seq))
			continue
		}
		out = append(out, int64(it.Msg.Seq))
	}
	return out
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPausedThenLive ensures deliveries during a replay are held, and once
// live only those above the replay's last sequence pass, each once.
func TestPausedThenLive(t *testing.T) {
	wakes := 0
	f := testFeed(t, 10, OverflowClose, func() { wakes++ })
	s := f.newSub("k")
	for _, n := range []uint64{4, 5, 6} {
		s.deliver(msg(n))
	}
	if f.Pending() != 0 || wakes != 0 {
		t.Fatal("paused subscriber queued")
	}
	s.live(5)
	s.deliver(msg(6)) // a second copy
	s.deliver(msg(7))
	items, err := drain(t, f)
	if got := seqs(items); err != nil || !equal(got, []int64{6, 7}) || wakes != 1 {
		t.Fatalf("got %v err %v wakes %d", got, err, wakes)
	}
	if f.count != 0 {
		t.Fatalf("held %d after drain", f.count)
	}
}

// TestOverflowClose ensures a full queue under OverflowClose overflows, and
// that paused buffers count towards the bound.
func TestOverflowClose(t *testing.T) {
	f := testFeed(t, 2, OverflowClose, nil)
	a, b := f.newSub("a"), f.newSub("b")
	a.deliver(msg(1))
	b.live(0)
	b.deliver(msg(2))
	b.deliver(msg(3))
	if _, err := drain(t, f); !errors.Is(err, ErrSlowConsumer) || !errors.Is(f.Err(), ErrSlowConsumer) {
		t.Fatalf("no overflow: %v", err)
	}
}

// TestOverflowDrop ensures OverflowDrop drops what does not fit and queues one
// gap marker per run of lost messages, after the last message kept.
func TestOverflowDrop(t *testing.T) {
	f := testFeed(t, 2, OverflowDrop, nil)
	s := f.newSub("a")
	s.live(0)
	for n := uint64(1); n <= 5; n++ {
		s.deliver(msg(n))
	}
	items, _ := drain(t, f)
	if got := seqs(items); !equal(got, []int64{1, 2, -2}) {
		t.Fatalf("got %v", got)
	}
	s.deliver(msg(6))
	items, _ = drain(t, f)
	if got := seqs(items); !equal(got, []int64{6}) {
		t.Fatalf("got %v", got)
	}
}

// TestDropWhilePaused ensures a loss during a replay under OverflowDrop is
// reported after the buffered messages once live.
func TestDropWhilePaused(t *testing.T) {
	f := testFeed(t, 1, OverflowDrop, nil)
	s := f.newSub("a")
	s.deliver(msg(8))
	s.deliver(msg(9))
	s.live(7)
	items, _ := drain(t, f)
	if got := seqs(items); !equal(got, []int64{8, -8}) {
		t.Fatalf("got %v", got)
	}
}

// TestStop ensures a stopped subscriber's queued items are not drained and
// its buffer is released.
func TestStop(t *testing.T) {
	f := testFeed(t, 4, OverflowClose, nil)
	a, b := f.newSub("a"), f.newSub("b")
	a.live(0)
	a.deliver(msg(1))
	b.deliver(msg(2))
	a.leave()
	b.leave()
	a.deliver(msg(3))
	if items, _ := drain(t, f); len(items) != 0 || f.count != 0 {
		t.Fatalf("got %v, held %d", seqs(items), f.count)
	}
}

// TestReset ensures a sequence going backwards (a recreated stream) closes
// under OverflowClose and is marked as a reset gap under OverflowDrop.
func TestReset(t *testing.T) {
	f := testFeed(t, 4, OverflowClose, nil)
	s := f.newSub("a")
	s.live(0)
	s.deliver(msg(5))
	s.deliver(msg(1))
	if !errors.Is(f.Err(), ErrSlowConsumer) {
		t.Fatal("reset not treated as overflow")
	}
	f = testFeed(t, 4, OverflowDrop, nil)
	s = f.newSub("a")
	s.live(0)
	s.deliver(msg(5))
	s.deliver(msg(1))
	items, _ := drain(t, f)
	if got := seqs(items); !equal(got, []int64{5, -5, 1}) || !items[1].EpochChanged {
		t.Fatalf("got %v", got)
	}
}
