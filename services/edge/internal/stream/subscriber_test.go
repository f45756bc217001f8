package stream

import (
	"testing"

	"github.com/heraldmq/herald/pkg/message"
)

func msg(seq uint64) *message.Message { return &message.Message{Topic: "t", Seq: seq} }

// seqs describes drained items: message sequences, and -After for gaps.
func seqs(items []Item) []int64 {
	var out []int64
	for _, it := range items {
		if it.Gap {
			out = append(out, -int64(it.After))
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
	q := NewQueue(10, PolicyClose, func() { wakes++ })
	s := q.NewSubscriber("k", "")
	for _, n := range []uint64{4, 5, 6} {
		s.Deliver(msg(n), nil)
	}
	if q.Len() != 0 || wakes != 0 {
		t.Fatal("paused subscriber queued")
	}
	s.Live(5)
	s.Deliver(msg(6), nil) // a second copy
	s.Deliver(msg(7), nil)
	items, overflow := q.Drain(nil)
	if got := seqs(items); overflow || !equal(got, []int64{6, 7}) || wakes != 1 {
		t.Fatalf("got %v overflow %v wakes %d", got, overflow, wakes)
	}
	if q.held != 0 {
		t.Fatalf("held %d after drain", q.held)
	}
}

// TestOverflowClose ensures a full queue under PolicyClose overflows, and
// that paused buffers count towards the bound.
func TestOverflowClose(t *testing.T) {
	q := NewQueue(2, PolicyClose, nil)
	a, b := q.NewSubscriber("a", ""), q.NewSubscriber("b", "")
	a.Deliver(msg(1), nil)
	b.Live(0)
	b.Deliver(msg(2), nil)
	b.Deliver(msg(3), nil)
	if _, overflow := q.Drain(nil); !overflow || !q.Overflowed() {
		t.Fatal("no overflow")
	}
}

// TestOverflowDrop ensures PolicyDrop drops what does not fit and queues one
// gap marker per run of lost messages, after the last message kept.
func TestOverflowDrop(t *testing.T) {
	q := NewQueue(2, PolicyDrop, nil)
	s := q.NewSubscriber("a", "")
	s.Live(0)
	for n := uint64(1); n <= 5; n++ {
		s.Deliver(msg(n), nil)
	}
	items, _ := q.Drain(nil)
	if got := seqs(items); !equal(got, []int64{1, 2, -2}) {
		t.Fatalf("got %v", got)
	}
	s.Deliver(msg(6), nil)
	items, _ = q.Drain(nil)
	if got := seqs(items); !equal(got, []int64{6}) {
		t.Fatalf("got %v", got)
	}
}

// TestDropWhilePaused ensures a loss during a replay under PolicyDrop is
// reported after the buffered messages once live.
func TestDropWhilePaused(t *testing.T) {
	q := NewQueue(1, PolicyDrop, nil)
	s := q.NewSubscriber("a", "")
	s.Deliver(msg(8), nil)
	s.Deliver(msg(9), nil)
	s.Live(7)
	items, _ := q.Drain(nil)
	if got := seqs(items); !equal(got, []int64{8, -8}) {
		t.Fatalf("got %v", got)
	}
}

// TestStop ensures a stopped subscriber's queued items are not drained and
// its buffer is released.
func TestStop(t *testing.T) {
	q := NewQueue(4, PolicyClose, nil)
	a, b := q.NewSubscriber("a", ""), q.NewSubscriber("b", "")
	a.Live(0)
	a.Deliver(msg(1), nil)
	b.Deliver(msg(2), nil)
	a.Stop()
	b.Stop()
	a.Deliver(msg(3), nil)
	if items, _ := q.Drain(nil); len(items) != 0 || q.held != 0 {
		t.Fatalf("got %v, held %d", seqs(items), q.held)
	}
}

// TestReset ensures a sequence going backwards (a recreated stream) closes
// under PolicyClose and is marked as a reset gap under PolicyDrop.
func TestReset(t *testing.T) {
	q := NewQueue(4, PolicyClose, nil)
	s := q.NewSubscriber("a", "")
	s.Live(0)
	s.Deliver(msg(5), nil)
	s.Deliver(msg(1), nil)
	if !q.Overflowed() {
		t.Fatal("reset not treated as overflow")
	}
	q = NewQueue(4, PolicyDrop, nil)
	s = q.NewSubscriber("a", "")
	s.Live(0)
	s.Deliver(msg(5), nil)
	s.Deliver(msg(1), nil)
	items, _ := q.Drain(nil)
	if got := seqs(items); !equal(got, []int64{5, -5, 1}) || !items[1].Reset {
		t.Fatalf("got %v", got)
	}
}

// TestPayload ensures payload encoding round-trips text and binary.
func TestPayload(t *testing.T) {
	for _, p := range [][]byte{nil, []byte("héllo\n"), {0xff, 0}} {
		text, enc := EncodePayload(p)
		back, err := DecodePayload(text, enc)
		if err != nil || string(back) != string(p) {
			t.Errorf("%q: got %q %v", p, back, err)
		}
	}
	if _, err := DecodePayload("x", "hex"); err == nil {
		t.Error("unknown encoding accepted")
	}
}
