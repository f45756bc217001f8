package node_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// setup returns a node over embedded NATS with a real embedded store that
// nothing writes to: the test applies to it by hand, playing the session
// service, to control exactly how far behind the stream the store is.
func setup(t *testing.T) (*node.Node, *store.Embedded, string) {
	t.Helper()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	n := edgetest.Node(t, edgetest.NATS(t), "e1", func(c *node.Config) { c.State = st })
	head, err := n.Head(context.Background(), edgetest.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	return n, st, head.Epoch
}

func publish(t *testing.T, n *node.Node, topic, payload string, retain bool) *message.Message {
	t.Helper()
	return edgetest.Publish(t, n, &message.Message{Topic: topic, Payload: []byte(payload), Retain: retain, QoS: 1})
}

// replay subscribes to filters after from and replays, calling emit for
// each message and gap for each gap.
func replay(t *testing.T, n *node.Node, filters []string, from message.Position,
	emit func(*message.Message) error, gap func(bool) error) (node.Replayed, error) {
	t.Helper()
	f, err := n.Subscribe(t.Context(), edgetest.Admit(t, n), filters, node.After(from), node.Policy{Queue: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Replay(t.Context(), func(it node.Item) error {
		if it.Gap() {
			return gap(it.EpochChanged)
		}
		if it.Pos.Seq != it.Msg.Seq || it.Pos.Epoch == "" {
			t.Fatalf("message %d at position %v", it.Msg.Seq, it.Pos)
		}
		return emit(it.Msg)
	})
}

// TestRetainedFoldsUnappliedTail ensures Retained answers what the stream
// says even when the store lags: retained messages and deletions the store
// has not applied yet are folded in from the stream's tail.
func TestRetainedFoldsUnappliedTail(t *testing.T) {
	ctx := context.Background()
	n, st, epoch := setup(t)
	a := publish(t, n, "r/a", "a1", true)
	b := publish(t, n, "r/b", "b1", true)
	if err := st.Apply(ctx, edgetest.Tenant, epoch, []*message.Message{a, b}, store.ReplayLimits{}); err != nil {
		t.Fatal(err)
	}
	// Not applied: a replaced, b deleted, c new, and a non-retained message.
	publish(t, n, "r/a", "a2", true)
	publish(t, n, "r/b", "", true)
	publish(t, n, "r/c", "c1", true)
	publish(t, n, "r/d", "plain", false)

	res, err := n.Retained(ctx, edgetest.Tenant, "r/#")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range res.Messages {
		got = append(got, m.Topic+"="+string(m.Payload))
	}
	if fmt.Sprint(got) != "[r/a=a2 r/c=c1]" || res.Last != 6 {
		t.Fatalf("retained %v last %d, want [r/a=a2 r/c=c1] last 6", got, res.Last)
	}
}

// TestReplayBufferThenStreamTail ensures a resume replays the store's buffer
// and then the part of the stream the store has not applied, in order,
// filtered, exactly once.
func TestReplayBufferThenStreamTail(t *testing.T) {
	ctx := context.Background()
	n, st, epoch := setup(t)
	var applied []*message.Message
	for i := 1; i <= 10; i++ {
		m := publish(t, n, fmt.Sprintf("x/%d", i%2), fmt.Sprint(i), false)
		if i <= 6 {
			applied = append(applied, m)
		}
	}
	if err := st.Apply(ctx, edgetest.Tenant, epoch, applied, store.ReplayLimits{}); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	gaps := 0
	res, err := replay(t, n, []string{"x/1"}, message.Position{Epoch: epoch, Seq: 2},
		func(m *message.Message) error { seqs = append(seqs, m.Seq); return nil },
		func(bool) error { gaps++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[3 5 7 9]" || res.Last != 10 || gaps != 0 || res.Gap {
		t.Fatalf("replayed %v last %d gaps %d", seqs, res.Last, gaps)
	}
}

// TestReplayTrimmedBufferFallsBackToStream ensures a position older than the
// replay buffer is served from the stream, without a gap, while the stream
// still holds it.
func TestReplayTrimmedBufferFallsBackToStream(t *testing.T) {
	ctx := context.Background()
	n, st, epoch := setup(t)
	var all []*message.Message
	for i := 1; i <= 8; i++ {
		all = append(all, publish(t, n, "y", fmt.Sprint(i), false))
	}
	if err := st.Apply(ctx, edgetest.Tenant, epoch, all, store.ReplayLimits{MaxMessages: 3}); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	res, err := replay(t, n, []string{"y"}, message.Position{Epoch: epoch, Seq: 1},
		func(m *message.Message) error { seqs = append(seqs, m.Seq); return nil },
		func(bool) error { t.Fatal("gap reported while the stream holds everything"); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[2 3 4 5 6 7 8]" || res.Gap {
		t.Fatalf("replayed %v gap %v", seqs, res.Gap)
	}
}

// TestReplayBufferTrimmedWhilePaging ensures a replay longer than one page
// of the replay buffer loses nothing when the session service trims the
// buffer between two pages: the messages trimmed after the first page was
// read come from the stream.
func TestReplayBufferTrimmedWhilePaging(t *testing.T) {
	ctx := context.Background()
	n, st, epoch := setup(t)
	const total = 1300 // more than two replay pages
	var all []*message.Message
	for i := 1; i <= total; i++ {
		all = append(all, publish(t, n, "z", fmt.Sprint(i), false))
	}
	if err := st.Apply(ctx, edgetest.Tenant, epoch, all, store.ReplayLimits{}); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	trimmed := false
	emit := func(m *message.Message) error {
		seqs = append(seqs, m.Seq)
		if !trimmed && len(seqs) == 100 {
			// The first page is in hand; the buffer now keeps only the
			// newest 50 messages.
			trimmed = true
			if err := st.Apply(ctx, edgetest.Tenant, epoch, nil, store.ReplayLimits{MaxMessages: 50}); err != nil {
				t.Fatal(err)
			}
			if s, err := st.State(ctx, edgetest.Tenant); err != nil || s.TrimmedThrough != total-50 {
				t.Fatalf("trim did not happen: state %+v, %v", s, err)
			}
		}
		return nil
	}
	res, err := replay(t, n, []string{"z"}, message.Position{Epoch: epoch}, emit,
		func(bool) error { t.Error("gap reported while the stream holds everything"); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != total || res.Gap {
		t.Fatalf("replayed %d messages (gap %v), want %d", len(seqs), res.Gap, total)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("message %d has seq %d: replay skipped or repeated", i, s)
		}
	}
}
