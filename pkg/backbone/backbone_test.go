package backbone_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/nats-io/nats.go/jetstream"
)

func newBackbone(t *testing.T) *backbone.Backbone {
	t.Helper()
	b, _ := newBackboneJS(t)
	return b
}

// newBackboneJS returns a backbone and a JetStream context of its own on
// the same server, for tests that act on the streams behind the backbone.
func newBackboneJS(t *testing.T) (*backbone.Backbone, jetstream.JetStream) {
	t.Helper()
	s := testserver.NATS(t)
	nc := testserver.NATSConn(t, s)
	b, err := backbone.New(nc, backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return b, js
}

// TestPublishLiveRange ensures a stored message reaches live interest with its
// stream sequence, once even under overlapping filters, and is readable back
// by Range with the same sequence and metadata.
func TestPublishLiveRange(t *testing.T) {
	ctx := context.Background()
	b := newBackbone(t)
	got := make(chan *message.Message, 16)
	live := b.NewLive(backbone.LiveConfig{}, func(m *message.Message) { got <- m })
	defer live.Close()
	for _, f := range []string{"a/#", "a/+", "a/b"} {
		if _, err := live.Watch("t1", f); err != nil {
			t.Fatal(err)
		}
	}
	if err := live.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	in := &message.Message{Tenant: "t1", Topic: "a/b", Payload: []byte("hi"), QoS: 1, Retain: true,
		ContentType: "text/plain", UserProperties: []message.UserProperty{{Key: "k", Value: "v"}}}
	pos, err := b.Publish(ctx, in, backbone.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pos.Seq != 1 || pos.Epoch == "" {
		t.Fatalf("position %v", pos)
	}
	// A second message on another topic under a/ proves the first was not duplicated.
	if _, err := b.Publish(ctx, &message.Message{Tenant: "t1", Topic: "a/c/d", Payload: []byte("2")}, backbone.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	m := <-got
	if m.Seq != 1 || m.Topic != "a/b" || string(m.Payload) != "hi" || m.QoS != 1 || !m.Retain || m.ContentType != "text/plain" || len(m.UserProperties) != 1 {
		t.Fatalf("live message %+v", m)
	}
	if m2 := <-got; m2.Seq != 2 || m2.Topic != "a/c/d" {
		t.Fatalf("second live message %+v", m2)
	}
	select {
	case m3 := <-got:
		t.Fatalf("unexpected extra delivery %+v", m3)
	case <-time.After(100 * time.Millisecond):
	}

	var seqs []uint64
	if err := b.Range(ctx, "t1", []string{"a/+", "a/#"}, 0, 0, func(m *message.Message) error {
		seqs = append(seqs, m.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[1 2]" {
		t.Fatalf("range seqs %v", seqs)
	}
}

// TestRangeFilters ensures Range returns exactly the messages after a
// sequence that match the filters, in order, up to a bound.
func TestRangeFilters(t *testing.T) {
	ctx := context.Background()
	b := newBackbone(t)
	topics := []string{"x/1", "y/1", "x/2", "$SYS/x", "x/3/deep", "y/2"}
	for _, tp := range topics {
		if _, err := b.Publish(ctx, &message.Message{Tenant: "t2", Topic: tp}, backbone.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		filters     []string
		after, upto uint64
		want        string
	}{
		{[]string{"x/+"}, 0, 0, "[1 3]"},
		{[]string{"x/#"}, 1, 0, "[3 5]"},
		{[]string{"#"}, 0, 0, "[1 2 3 5 6]"},
		{[]string{"+/1", "x/+"}, 0, 0, "[1 2 3]"},
		{[]string{"#"}, 2, 5, "[3 5]"},
		{[]string{"$SYS/#"}, 0, 0, "[4]"},
		{[]string{"z"}, 0, 0, "[]"},
	}
	for _, c := range cases {
		var seqs []uint64
		if err := b.Range(ctx, "t2", c.filters, c.after, c.upto, func(m *message.Message) error {
			seqs = append(seqs, m.Seq)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(seqs); got != c.want {
			t.Errorf("Range(%v, %d, %d) = %s, want %s", c.filters, c.after, c.upto, got, c.want)
		}
	}
}

// TestBadTenant ensures tenant ids outside the safe alphabet are refused.
func TestBadTenant(t *testing.T) {
	b := newBackbone(t)
	for _, id := range []string{"", "A", "a.b", "a*", "a>", "-a", "a b"} {
		if _, err := b.Publish(context.Background(), &message.Message{Tenant: id, Topic: "x"}, backbone.PublishOptions{}); err == nil {
			t.Errorf("tenant %q accepted", id)
		}
	}
}

// TestPublishAsyncKeepsOrder ensures pipelined publishes from one goroutine,
// to different topics, are stored in the order they were sent and each
// Wait returns its own position.
func TestPublishAsyncKeepsOrder(t *testing.T) {
	ctx := context.Background()
	b := newBackbone(t)
	var pending []*backbone.Pending
	for i := 0; i < 200; i++ {
		p, err := b.PublishAsync(ctx, &message.Message{Tenant: "t3", Topic: fmt.Sprintf("k/%d", i%7), Payload: []byte(fmt.Sprint(i))}, backbone.PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, p)
	}
	for i, p := range pending {
		pos, err := p.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pos.Seq != uint64(i+1) || pos.Epoch == "" {
			t.Fatalf("publish %d stored at %v", i, pos)
		}
	}
	i := 0
	if err := b.Range(ctx, "t3", []string{"#"}, 0, 0, func(m *message.Message) error {
		if string(m.Payload) != fmt.Sprint(i) {
			return fmt.Errorf("seq %d holds %q, want %d", m.Seq, m.Payload, i)
		}
		i++
		return nil
	}); err != nil || i != 200 {
		t.Fatalf("range: %v after %d", err, i)
	}
}

// TestRangeLeavesNoConsumer ensures Range deletes its consumer when done, so
// more resumes than a stream's consumer limit can run in a short time.
func TestRangeLeavesNoConsumer(t *testing.T) {
	ctx := context.Background()
	b, js := newBackboneJS(t)
	if _, err := b.Publish(ctx, &message.Message{Tenant: "t4", Topic: "a"}, backbone.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1100; i++ {
		if err := b.Range(ctx, "t4", []string{"#"}, 0, 0, func(*message.Message) error { return nil }); err != nil {
			t.Fatalf("range %d: %v", i, err)
		}
	}
	s, err := js.Stream(ctx, backbone.StreamName("t4"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("%d consumers left behind", info.State.Consumers)
	}
}

// TestDeleteTenant ensures DeleteTenant removes the tenant's stream and its
// messages, is harmless when repeated, leaves other tenants alone, and that
// the tenant's next publish starts a new history under another epoch (so
// that no position of the old history resumes into the new one).
func TestDeleteTenant(t *testing.T) {
	ctx := t.Context()
	b := newBackbone(t)
	var old message.Position
	for _, tn := range []string{"t1", "t2"} {
		pos, err := b.Publish(ctx, &message.Message{Tenant: tn, Topic: "a", Payload: []byte("old")}, backbone.PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tn == "t1" {
			old = pos
		}
	}
	for range 2 {
		if err := b.DeleteTenant(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.State(ctx, "t1"); !errors.Is(err, backbone.ErrNoStream) {
		t.Fatalf("State after delete: %v, want ErrNoStream", err)
	}
	if st, err := b.State(ctx, "t2"); err != nil || st.LastSeq != 1 {
		t.Fatalf("t2 after deleting t1: %+v, %v", st, err)
	}
	pos, err := b.Publish(ctx, &message.Message{Tenant: "t1", Topic: "a", Payload: []byte("new")}, backbone.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pos.Seq != 1 || pos.Epoch == old.Epoch {
		t.Fatalf("first position after delete %v; the old history was %v", pos, old)
	}
	var got []string
	if err := b.Range(ctx, "t1", []string{"#"}, 0, 0, func(m *message.Message) error {
		got = append(got, string(m.Payload))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "new" {
		t.Fatalf("stream after delete and publish: %v", got)
	}
	if err := b.DeleteTenant(ctx, "bad.tenant"); !errors.Is(err, backbone.ErrBadTenant) {
		t.Fatalf("bad tenant: %v", err)
	}
}

// TestLiveAfterStreamRecreated ensures live delivery of a tenant whose
// stream was deleted and created again (a tenant deleted and created
// anew) starts with the new stream's first message: the sequences handed
// over for the old stream are forgotten with the tenant's last watch, not
// used to drop the new stream's messages as copies of old ones.
func TestLiveAfterStreamRecreated(t *testing.T) {
	ctx := t.Context()
	b, js := newBackboneJS(t)
	got := make(chan *message.Message, 16)
	live := b.NewLive(backbone.LiveConfig{}, func(m *message.Message) { got <- m })
	defer live.Close()
	watch := func() func() {
		release, err := live.Watch("t1", "#")
		if err != nil {
			t.Fatal(err)
		}
		if err := live.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return release
	}
	publish := func(payload string) {
		if _, err := b.Publish(ctx, &message.Message{Tenant: "t1", Topic: "a", Payload: []byte(payload)}, backbone.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	next := func() *message.Message {
		select {
		case m := <-got:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no live message within 5 s")
			return nil
		}
	}
	release := watch()
	publish("old")
	if m := next(); m.Seq != 1 || string(m.Payload) != "old" {
		t.Fatalf("first stream: %+v", m)
	}
	release()
	if err := js.DeleteStream(ctx, backbone.StreamName("t1")); err != nil {
		t.Fatal(err)
	}
	b.Forget("t1")
	release = watch()
	defer release()
	publish("new")
	if m := next(); m.Seq != 1 || string(m.Payload) != "new" {
		t.Fatalf("recreated stream: %+v", m)
	}
}
