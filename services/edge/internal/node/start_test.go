package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// collect runs a feed's replay if replay is set, then drains it until
// want messages came (or 5 s passed), and returns their payloads; a gap,
// or a message not stamped with its position, fails the test.
func collect(t *testing.T, f *node.Feed, w *waker, replay bool, want int) []string {
	return collectIn(t, f, w, replay, want, "")
}

// collectIn is collect for messages of epoch, if set.
func collectIn(t *testing.T, f *node.Feed, w *waker, replay bool, want int, epoch string) []string {
	t.Helper()
	ctx := context.Background()
	var got []string
	take := func(it node.Item) {
		if it.Gap() {
			t.Fatalf("gap %+v", it)
		}
		if it.Pos.Seq != it.Msg.Seq || it.Pos.Epoch == "" || (epoch != "" && it.Pos.Epoch != epoch) {
			t.Fatalf("message %d at %v", it.Msg.Seq, it.Pos)
		}
		got = append(got, string(it.Msg.Payload))
	}
	if replay {
		if _, err := f.Replay(ctx, func(it node.Item) error { take(it); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		items, err := f.Drain(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			take(it)
		}
		if len(items) == 0 {
			w.wait(t)
		}
	}
	return got
}

// TestRewindLastWhilePublishing ensures a Last(n) start gives the last n
// matching messages — reaching back over several windows of a stream
// where most messages do not match — then the live ones, each once and in
// order, while messages keep being published through the handover.
func TestRewindLastWhilePublishing(t *testing.T) {
	ctx := context.Background()
	n, _ := edgetest.MemoryNodeOn(t, backbone.NewMemory())
	for i := range 400 {
		for range 3 {
			edgetest.Publish(t, n, &message.Message{Topic: "other", Payload: []byte("x")})
		}
		edgetest.Publish(t, n, &message.Message{Topic: "r/t", Payload: []byte(fmt.Sprint(i))})
	}
	const more, last = 300, 150
	w := newWaker()
	still, err := n.Subscribe(ctx, edgetest.Admit(t, n), []string{"r/+"}, node.Last(last), node.Policy{Queue: 1, Wake: w.wake})
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, still, w, true, 0); len(got) != last || got[0] != "250" || got[last-1] != "399" {
		t.Fatalf("rewound %d messages %q, want %d from 250 to 399", len(got), got, last)
	}
	still.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range more {
			edgetest.Publish(t, n, &message.Message{Topic: "r/t", Payload: []byte(fmt.Sprint(400 + i))})
		}
	}()
	f, err := n.Subscribe(ctx, edgetest.Admit(t, n), []string{"r/+"}, node.Last(last), node.Policy{Queue: 4 * more, Wake: w.wake})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var replayed []string
	if _, err := f.Replay(ctx, func(it node.Item) error {
		replayed = append(replayed, string(it.Msg.Payload))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(replayed) < last {
		t.Fatalf("rewound %d messages, want at least %d", len(replayed), last)
	}
	// The rewind reaches back from where the stream stood when it read
	// it, which the concurrent publishes moved on: its first message is
	// 150 before that point, and every later one follows once.
	first := 0
	if _, err := fmt.Sscan(replayed[0], &first); err != nil {
		t.Fatal(err)
	}
	got := append(replayed, collect(t, f, w, false, 400+more-first-len(replayed))...)
	<-done
	if want := 400 + more - first; len(got) != want || first < 400-last {
		t.Fatalf("received %d messages from %d, want %d (%d rewound)", len(got), first, want, last)
	}
	for i, p := range got {
		if p != fmt.Sprint(first+i) {
			t.Fatalf("message %d is %q after %q: rewind and live overlap or miss", i, p, got[0])
		}
	}
}

// TestRewindLastShortStream ensures a Last(n) start on a stream holding
// fewer matching messages gives them all, without a gap, and one on a
// tenant that never published anything is live.
func TestRewindLastShortStream(t *testing.T) {
	ctx := context.Background()
	n, _ := edgetest.MemoryNodeOn(t, backbone.NewMemory())
	w := newWaker()
	f, err := n.Subscribe(ctx, edgetest.Admit(t, n), []string{"s/#"}, node.Last(10), node.Policy{Queue: 16, Wake: w.wake})
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, f, w, true, 0); len(got) != 0 {
		t.Fatalf("an empty stream rewound %q", got)
	}
	f.Close()
	for i := range 3 {
		edgetest.Publish(t, n, &message.Message{Topic: "s/x", Payload: []byte(fmt.Sprint(i))})
	}
	f, err = n.Subscribe(ctx, edgetest.Admit(t, n), []string{"s/#"}, node.Last(10), node.Policy{Queue: 16, Wake: w.wake})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := fmt.Sprint(collect(t, f, w, true, 3)); got != "[0 1 2]" {
		t.Fatalf("rewound %s, want [0 1 2]", got)
	}
}

// TestRewindSince ensures a Since(d) start gives the matching messages
// stored within d before the subscription, not those stored earlier, then
// the live ones.
func TestRewindSince(t *testing.T) {
	ctx := context.Background()
	n, _ := edgetest.MemoryNodeOn(t, backbone.NewMemory())
	for i := range 20 {
		edgetest.Publish(t, n, &message.Message{Topic: "d/old", Payload: []byte(fmt.Sprint("old", i))})
	}
	oldEnd := time.Now()
	// The messages' age is what the start measures: the second batch is
	// stored a second after the first.
	time.Sleep(time.Until(oldEnd.Add(time.Second)))
	newStart := time.Now()
	for i := range 30 {
		edgetest.Publish(t, n, &message.Message{Topic: "d/new", Payload: []byte(fmt.Sprint(i))})
		edgetest.Publish(t, n, &message.Message{Topic: "other", Payload: []byte("x")})
	}
	// Reaches half a second before the second batch: after the first.
	d := time.Since(newStart) + 500*time.Millisecond
	w := newWaker()
	f, err := n.Subscribe(ctx, edgetest.Admit(t, n), []string{"d/+"}, node.Since(d), node.Policy{Queue: 64, Wake: w.wake})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := collect(t, f, w, true, 30)
	edgetest.Publish(t, n, &message.Message{Topic: "d/new", Payload: []byte("live")})
	got = append(got, collect(t, f, w, false, 1)...)
	if len(got) != 31 || got[0] != "0" || got[29] != "29" || got[30] != "live" {
		t.Fatalf("got %d messages %q…, want 0…29 then live", len(got), got[:min(len(got), 3)])
	}
}

// TestParseStart ensures the starts a client may ask for are read the same
// for every transport, and the others refused as invalid requests.
func TestParseStart(t *testing.T) {
	for _, tc := range []struct {
		retained bool
		rewind   string
		want     string // Start.String, or "error"
		history  bool
	}{
		{false, "", "", false},
		{true, "", "retained", false},
		{false, "10", "10", true},
		{false, "30s", "30s", true},
		{false, "5m", "5m0s", true},
		{true, "10", "error", false},
		{false, "0", "error", false},
		{false, "-3", "error", false},
		{false, "-1s", "error", false},
		{false, "ten", "error", false},
		{false, "9000h", "error", false},
	} {
		s, err := node.ParseStart(tc.retained, tc.rewind)
		if tc.want == "error" {
			if !errors.Is(err, node.ErrBadStart) || !fault.Is(err, fault.Invalid) {
				t.Errorf("ParseStart(%v, %q): %v, want ErrBadStart (invalid)", tc.retained, tc.rewind, err)
			}
			continue
		}
		if err != nil || s.String() != tc.want || s.History() != tc.history {
			t.Errorf("ParseStart(%v, %q) = %q history %v, %v; want %q history %v",
				tc.retained, tc.rewind, s, s.History(), err, tc.want, tc.history)
		}
	}
}
