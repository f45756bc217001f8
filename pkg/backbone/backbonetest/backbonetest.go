// Package backbonetest is the conformance suite of the backbone's small
// interfaces: the tenant streams (append, range, positions), live interest,
// the control plane (request/reply) and key-value buckets (leases). Their
// users declare each interface where they use it, with the same methods as
// the suite's; every implementation — JetStream's and the in-memory one
// that pure-logic tests use — runs the suite, so that a test passing on the
// in-memory backbone says something about the real one.
package backbonetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/control"
	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
)

// Streams is the stream half of a backbone: one append-only stream per
// tenant, with positions (epoch and sequence).
type Streams interface {
	EnsureTenant(ctx context.Context, tenant string) (string, error)
	Epoch(ctx context.Context, tenant string) (string, error)
	State(ctx context.Context, tenant string) (backbone.StreamState, error)
	Publish(ctx context.Context, m *message.Message, opts backbone.PublishOptions) (message.Position, error)
	PublishAsync(ctx context.Context, m *message.Message, opts backbone.PublishOptions) (*backbone.Pending, error)
	Send(ctx context.Context, m *message.Message, opts backbone.PublishOptions) error
	Range(ctx context.Context, tenant string, filters []string, after, upto uint64, fn func(*message.Message) error) error
	DeleteTenant(ctx context.Context, tenant string) error
	Tenants(ctx context.Context) ([]string, error)
	Durable(ctx context.Context, tenant string, cfg backbone.DurableConfig) (backbone.Consumer, error)
}

// Interest is live interest: the messages stored after a Watch (and its
// Flush) returned reach the live's handler, once, in stream order.
type Interest interface {
	Watch(tenant, filter string) (release func(), err error)
	WatchShared(tenant, filter, queue string, deliver func(*message.Message)) (release func(), err error)
	Flush(ctx context.Context) error
	Close()
}

// Control is the control plane.
type Control interface {
	Publish(subject string, header map[string]string, data []byte) error
	Request(ctx context.Context, subject string, header map[string]string, data []byte) (*control.Msg, error)
	Gather(ctx context.Context, subject string, data []byte, window time.Duration) ([]*control.Msg, error)
	Subscribe(subject string, handler func(*control.Msg)) (*control.Sub, error)
	NewInbox(size int) *control.Inbox
}

// Bucket is a key-value bucket whose keys expire one TTL after their last
// write.
type Bucket interface {
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	Delete(ctx context.Context, key string, rev uint64) error
	Keys(ctx context.Context, filter string) ([]string, error)
}

// Backbone opens what the suites test, for one test.
type Backbone struct {
	// Streams is the backbone's streams.
	Streams Streams
	// NewLive returns a live interest calling handler, as one edge holds.
	NewLive func(handler func(*message.Message)) Interest
	// Control is the control plane.
	Control Control
	// Bucket returns a bucket.
	Bucket func(cfg backbone.BucketConfig) Bucket
}

// Run runs every suite on the backbones open returns, one per test.
func Run(t *testing.T, open func(t *testing.T) Backbone) {
	t.Run("Streams", func(t *testing.T) { TestStreams(t, open) })
	t.Run("Durable", func(t *testing.T) { TestDurable(t, open) })
	t.Run("Live", func(t *testing.T) { TestLive(t, open) })
	t.Run("Control", func(t *testing.T) { TestControl(t, open) })
	t.Run("Bucket", func(t *testing.T) { TestBucket(t, open) })
}

func publish(t *testing.T, s Streams, tenant, name, payload string) message.Position {
	t.Helper()
	pos, err := s.Publish(t.Context(), &message.Message{Tenant: tenant, Topic: name, Payload: []byte(payload)}, backbone.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

func rangeSeqs(t *testing.T, s Streams, tenant string, filters []string, after, upto uint64) []uint64 {
	t.Helper()
	var seqs []uint64
	if err := s.Range(t.Context(), tenant, filters, after, upto, func(m *message.Message) error {
		seqs = append(seqs, m.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return seqs
}

// TestStreams ensures a tenant's stream gives ascending positions in one
// epoch, keeps a message's fields, reads back exactly the matching
// messages of a range, keeps the order of one sender's publishes (sent,
// pipelined or settled), drops a message id's duplicate, refuses invalid
// tenants, and starts a new epoch when created again.
func TestStreams(t *testing.T, open func(t *testing.T) Backbone) {
	ctx := t.Context()
	s := open(t).Streams
	if _, err := s.State(ctx, "t1"); !errors.Is(err, backbone.ErrNoStream) {
		t.Fatalf("state of a tenant without a stream: %v", err)
	}
	epoch, err := s.EnsureTenant(ctx, "t1")
	if err != nil || epoch == "" {
		t.Fatalf("ensure: %q %v", epoch, err)
	}
	if e, err := s.EnsureTenant(ctx, "t1"); e != epoch || err != nil {
		t.Fatalf("ensure again: %q %v, want %q", e, err, epoch)
	}
	if st, err := s.State(ctx, "t1"); err != nil || st.LastSeq != 0 || st.Epoch != epoch {
		t.Fatalf("empty state %+v %v", st, err)
	}

	in := &message.Message{Tenant: "t1", Topic: "a/b", Payload: []byte("hi"), QoS: 1, Retain: true, ContentType: "text/plain",
		UserProperties: []message.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}, Origin: "edge/c1"}
	p1, err := s.Publish(ctx, in, backbone.PublishOptions{})
	if err != nil || p1 != (message.Position{Epoch: epoch, Seq: 1}) {
		t.Fatalf("first publish: %v %v", p1, err)
	}
	pend, err := s.PublishAsync(ctx, &message.Message{Tenant: "t1", Topic: "a/c/d", Payload: []byte("2")}, backbone.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, &message.Message{Tenant: "t1", Topic: "x", Payload: []byte("3")}, backbone.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if p2, err := pend.Wait(ctx); err != nil || p2.Seq != 2 || p2.Epoch != epoch {
		t.Fatalf("pipelined publish: %v %v", p2, err)
	}
	publish(t, s, "t1", "a/b", "4")
	if st, err := s.State(ctx, "t1"); err != nil || st.LastSeq != 4 || st.FirstSeq != 1 {
		t.Fatalf("state after 4: %+v %v", st, err)
	}
	if e, err := s.Epoch(ctx, "t1"); e != epoch || err != nil {
		t.Fatalf("epoch %q %v", e, err)
	}

	var first *message.Message
	if err := s.Range(ctx, "t1", []string{"a/b"}, 0, 1, func(m *message.Message) error {
		first = m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if first == nil || first.Seq != 1 || first.Topic != "a/b" || string(first.Payload) != "hi" || first.QoS != 1 || !first.Retain ||
		first.ContentType != "text/plain" || fmt.Sprint(first.UserProperties) != fmt.Sprint(in.UserProperties) ||
		first.Origin != "edge/c1" || first.Tenant != "t1" || first.Time.IsZero() {
		t.Fatalf("stored message %+v", first)
	}
	for _, tc := range []struct {
		filters     []string
		after, upto uint64
		want        string
	}{
		{[]string{"#"}, 0, 0, "[1 2 3 4]"},
		{[]string{"a/#"}, 0, 0, "[1 2 4]"},
		{[]string{"a/+", "a/#"}, 1, 0, "[2 4]"},
		{[]string{"a/b"}, 0, 3, "[1]"},
		{[]string{"x", "a/b"}, 1, 4, "[3 4]"},
		{[]string{"none"}, 0, 0, "[]"},
		{[]string{"#"}, 4, 0, "[]"},
	} {
		if got := fmt.Sprint(rangeSeqs(t, s, "t1", tc.filters, tc.after, tc.upto)); got != tc.want {
			t.Errorf("range %v (%d, %d]: %s, want %s", tc.filters, tc.after, tc.upto, got, tc.want)
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Range(ctx, "t1", []string{"#"}, 0, 0, func(*message.Message) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("range stopped: %v after %d", err, n)
	}

	// A message id is stored once.
	dup1, err := s.Publish(ctx, &message.Message{Tenant: "t1", Topic: "d", Payload: []byte("5")}, backbone.PublishOptions{MsgID: "id-1"})
	if err != nil {
		t.Fatal(err)
	}
	dup2, err := s.Publish(ctx, &message.Message{Tenant: "t1", Topic: "d", Payload: []byte("5")}, backbone.PublishOptions{MsgID: "id-1"})
	if err != nil || dup2 != dup1 {
		t.Fatalf("duplicate: %v %v, first %v", dup2, err, dup1)
	}
	if got := fmt.Sprint(rangeSeqs(t, s, "t1", []string{"d"}, 0, 0)); got != fmt.Sprint([]uint64{dup1.Seq}) {
		t.Fatalf("duplicate stored: %s", got)
	}

	// One sender's publishes keep their order, however they are sent.
	for i := range 20 {
		m := &message.Message{Tenant: "t2", Topic: "o", Payload: []byte{byte(i)}}
		switch i % 3 {
		case 0:
			_, err = s.Publish(ctx, m, backbone.PublishOptions{})
		case 1:
			_, err = s.PublishAsync(ctx, m, backbone.PublishOptions{})
		default:
			err = s.Send(ctx, m, backbone.PublishOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	publish(t, s, "t2", "end", "")
	var order []byte
	if err := s.Range(ctx, "t2", []string{"o"}, 0, 0, func(m *message.Message) error {
		order = append(order, m.Payload...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(order) != 20 || !slices.IsSorted(order) {
		t.Fatalf("order %v", order)
	}

	for _, bad := range []string{"", "Bad", "a.b", "a b"} {
		if _, err := s.EnsureTenant(ctx, bad); !errors.Is(err, backbone.ErrBadTenant) || fault.KindOf(err) != fault.Invalid {
			t.Errorf("tenant %q: %v", bad, err)
		}
	}

	// Deleted and created again: another history, another epoch.
	if err := s.DeleteTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.State(ctx, "t1"); !errors.Is(err, backbone.ErrNoStream) {
		t.Fatalf("state after delete: %v", err)
	}
	time.Sleep(2 * time.Millisecond) // epochs are creation times in milliseconds
	again := publish(t, s, "t1", "a/b", "new")
	if again.Seq != 1 || again.Epoch == epoch {
		t.Fatalf("recreated stream: %v (old epoch %q)", again, epoch)
	}
}

// fetchAll fetches from c until n messages came (5 s at most) and returns
// their sequences, acknowledging each batch when ack is set.
func fetchAll(t *testing.T, c backbone.Consumer, n int, ack bool) []uint64 {
	t.Helper()
	var seqs []uint64
	deadline := time.Now().Add(5 * time.Second)
	for len(seqs) < n && time.Now().Before(deadline) {
		b, err := c.Fetch(3, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range b.Messages {
			seqs = append(seqs, m.Seq)
		}
		if ack {
			if err := b.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return seqs
}

// TestDurable ensures a durable consumer delivers a tenant's stream in
// order, in batches of at most the asked size, from after the position its
// owner gives; opened again under the same name after an acknowledgement
// it goes on from there, and one that delivered beyond the owner's
// position starts again after it. Tenants lists the tenants with a stream,
// and a consumer of a deleted stream says so.
func TestDurable(t *testing.T, open func(t *testing.T) Backbone) {
	ctx := t.Context()
	s := open(t).Streams
	if _, err := s.Durable(ctx, "none", backbone.DurableConfig{Name: "d"}); !errors.Is(err, backbone.ErrNoStream) {
		t.Fatalf("durable of a tenant without a stream: %v", err)
	}
	for i := range 7 {
		publish(t, s, "t1", "x", fmt.Sprint(i))
	}
	publish(t, s, "t2", "x", "other")
	if ts, err := s.Tenants(ctx); err != nil || !slices.Contains(ts, "t1") || !slices.Contains(ts, "t2") {
		t.Fatalf("tenants %v %v", ts, err)
	}
	cfg := backbone.DurableConfig{Name: "d", AckWait: time.Minute, MaxAckPending: 64}
	c, err := s.Durable(ctx, "t1", cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Fetch(3, time.Second)
	if err != nil || len(b.Messages) != 3 || b.Messages[0].Seq != 1 || b.Messages[2].Seq != 3 || b.Pending != 4 || b.Fetched != 3 {
		t.Fatalf("first batch %d messages, pending %d, %v", len(b.Messages), b.Pending, err)
	}
	if m := b.Messages[0]; m.Tenant != "t1" || m.Topic != "x" || string(m.Payload) != "0" {
		t.Fatalf("decoded %+v", m)
	}
	if err := b.Ack(); err != nil {
		t.Fatal(err)
	}
	// The owner applied through 3: the same consumer goes on at 4.
	c, err = s.Durable(ctx, "t1", backbone.DurableConfig{Name: "d", After: 3, AckWait: time.Minute, MaxAckPending: 64})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(fetchAll(t, c, 4, false)); got != "[4 5 6 7]" {
		t.Fatalf("after reopening: %s", got)
	}
	// Delivered through 7 and never acknowledged: an owner that applied
	// through 5 gets 6 and 7 again, at once.
	c, err = s.Durable(ctx, "t1", backbone.DurableConfig{Name: "d", After: 5, AckWait: time.Minute, MaxAckPending: 64})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(fetchAll(t, c, 2, true)); got != "[6 7]" {
		t.Fatalf("after a crash: %s", got)
	}
	if b, err := c.Fetch(3, 50*time.Millisecond); err != nil || b.Fetched != 0 {
		t.Fatalf("nothing left: %d, %v", b.Fetched, err)
	}
	if err := c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx); !errors.Is(err, backbone.ErrNoStream) {
		t.Fatalf("check after the stream's deletion: %v", err)
	}
}

// collector gathers a live's deliveries.
type collector struct {
	mu  sync.Mutex
	got []*message.Message
	ch  chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1)} }

func (c *collector) handle(m *message.Message) {
	c.mu.Lock()
	c.got = append(c.got, m)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

// wait returns the payloads received once there are n, failing after 5 s.
func (c *collector) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		if len(c.got) >= n {
			out := make([]string, len(c.got))
			for i, m := range c.got {
				out[i] = string(m.Payload)
			}
			c.mu.Unlock()
			return out
		}
		c.mu.Unlock()
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("received %d of %d", len(c.got), n)
		}
	}
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// TestLive ensures a message stored after a watch took effect reaches it
// once (overlapping filters of one live included) with its sequence and in
// stream order, a released watch stops its messages, another tenant's
// messages never come, and a shared subscription's group across lives gets
// each message of its filter once.
func TestLive(t *testing.T, open func(t *testing.T) Backbone) {
	ctx := t.Context()
	b := open(t)
	s := b.Streams
	c := newCollector()
	live := b.NewLive(c.handle)
	defer live.Close()
	var releases []func()
	for _, f := range []string{"a/#", "a/+", "a/b"} {
		r, err := live.Watch("t1", f)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	if err := live.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	publish(t, s, "t1", "a/b", "1")
	publish(t, s, "t2", "a/b", "other tenant")
	publish(t, s, "t1", "z", "not watched")
	publish(t, s, "t1", "a/c/d", "2")
	publish(t, s, "t1", "a", "3")
	if got := c.wait(t, 3); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("live %v", got)
	}
	c.mu.Lock()
	if seq := c.got[0].Seq; seq != 1 {
		t.Errorf("first live message has sequence %d", seq)
	}
	c.mu.Unlock()
	for _, r := range releases {
		r()
	}
	publish(t, s, "t1", "a/b", "after release")
	// A marker on a watch taken now proves the released one got nothing
	// before it: lives deliver in stream order.
	r, err := live.Watch("t1", "marker")
	if err != nil {
		t.Fatal(err)
	}
	defer r()
	if err := live.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	publish(t, s, "t1", "marker", "4")
	if got := c.wait(t, 4); fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("after release: %v", got)
	}

	// A shared subscription's group spans lives: each message once.
	g1, g2 := newCollector(), newCollector()
	l1, l2 := b.NewLive(func(*message.Message) {}), b.NewLive(func(*message.Message) {})
	defer l1.Close()
	defer l2.Close()
	r1, err := l1.WatchShared("t1", "s/#", "q1", g1.handle)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l2.WatchShared("t1", "s/#", "q1", g2.handle)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []Interest{l1, l2} {
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const shared = 20
	for i := range shared {
		publish(t, s, "t1", "s/x", fmt.Sprint(i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for g1.len()+g2.len() < shared && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a copy would have arrived by now
	if n := g1.len() + g2.len(); n != shared {
		t.Fatalf("the group received %d messages of %d", n, shared)
	}
	r1()
	r2()
}

// TestControl ensures a request reaches the subscribers of its subject
// (wildcards included) and its first answer comes back with its header, a
// request nobody listens to fails with control.ErrNoResponders at once, a
// gather collects every subscriber's answer, and an inbox names the
// subscription of each message and stops receiving once unsubscribed.
func TestControl(t *testing.T, open func(t *testing.T) Backbone) {
	ctx := t.Context()
	c := open(t).Control
	sub, err := c.Subscribe("h.ctl.*.admin.x", func(m *control.Msg) {
		_ = m.Respond(map[string]string{"Edge": "e1", "Got": m.Header["Ask"]}, append([]byte("re:"), m.Data...))
	})
	if err != nil {
		t.Fatal(err)
	}
	sub2, err := c.Subscribe("h.ctl.t1.admin.x", func(m *control.Msg) {
		_ = m.Respond(map[string]string{"Edge": "e2"}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ans, err := c.Request(rctx, "h.ctl.t9.admin.x", map[string]string{"Ask": "y"}, []byte("q"))
	if err != nil || ans.Header["Edge"] != "e1" || ans.Header["Got"] != "y" || string(ans.Data) != "re:q" {
		t.Fatalf("request: %+v %v", ans, err)
	}
	start := time.Now()
	if _, err := c.Request(rctx, "h.ctl.t9.admin.nobody", nil, nil); !errors.Is(err, control.ErrNoResponders) {
		t.Fatalf("request without responders: %v", err)
	} else if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("no responders took %v", d)
	}
	all, err := c.Gather(ctx, "h.ctl.t1.admin.x", []byte("q"), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var edges []string
	for _, m := range all {
		edges = append(edges, m.Header["Edge"])
	}
	slices.Sort(edges)
	if fmt.Sprint(edges) != "[e1 e2]" {
		t.Fatalf("gathered %v", edges)
	}
	_ = sub.Unsubscribe()
	_ = sub2.Unsubscribe()

	in := c.NewInbox(16)
	defer in.Close()
	sa, err := in.Subscribe("h.ctl.t1.client.a")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := in.Subscribe("h.ctl.t1.client.b")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish("h.ctl.t1.client.b", map[string]string{"K": "announce"}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-in.C:
		if m.Sub != sb || m.Header["K"] != "announce" || m.Expects() {
			t.Fatalf("inbox message %+v (sub a %p, b %p)", m, sa, sb)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing in the inbox")
	}
	go func() {
		select {
		case m := <-in.C:
			_ = m.Respond(map[string]string{"Gone": "1"}, nil)
		case <-time.After(5 * time.Second):
		}
	}()
	if ans, err := c.Request(rctx, "h.ctl.t1.client.a", nil, nil); err != nil || ans.Header["Gone"] != "1" {
		t.Fatalf("request to an inbox: %+v %v", ans, err)
	}
	_ = sa.Unsubscribe()
	_ = sb.Unsubscribe()
	if _, err := c.Request(rctx, "h.ctl.t1.client.a", nil, nil); !errors.Is(err, control.ErrNoResponders) {
		t.Fatalf("request after unsubscribe: %v", err)
	}
}

// TestBucket ensures a bucket's create refuses a present key, update and
// delete are compare-and-set on the revision, get and keys see what is
// present, and keys expire one TTL after their last write.
func TestBucket(t *testing.T, open func(t *testing.T) Backbone) {
	ctx := t.Context()
	k := open(t).Bucket(backbone.BucketConfig{Name: "conformance-leases", TTL: time.Second})
	r1, err := k.Create(ctx, "tenant.a", []byte("r1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Create(ctx, "tenant.a", []byte("r2")); !errors.Is(err, backbone.ErrKeyExists) {
		t.Fatalf("second create: %v", err)
	}
	v, rev, err := k.Get(ctx, "tenant.a")
	if err != nil || string(v) != "r1" || rev != r1 {
		t.Fatalf("get: %q %d %v", v, rev, err)
	}
	if _, err := k.Update(ctx, "tenant.a", []byte("r2"), r1+100); !errors.Is(err, backbone.ErrRevision) {
		t.Fatalf("stale update: %v", err)
	}
	r2, err := k.Update(ctx, "tenant.a", []byte("r1"), r1)
	if err != nil || r2 <= r1 {
		t.Fatalf("update: %d %v", r2, err)
	}
	if err := k.Delete(ctx, "tenant.a", r1); !errors.Is(err, backbone.ErrRevision) {
		t.Fatalf("stale delete: %v", err)
	}
	if _, err := k.Put(ctx, "replica.x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Put(ctx, "replica.y", []byte("1")); err != nil {
		t.Fatal(err)
	}
	keys, err := k.Keys(ctx, "replica.>")
	slices.Sort(keys)
	if err != nil || fmt.Sprint(keys) != "[replica.x replica.y]" {
		t.Fatalf("keys %v %v", keys, err)
	}
	if err := k.Delete(ctx, "tenant.a", r2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.Get(ctx, "tenant.a"); !errors.Is(err, backbone.ErrKeyNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := k.Delete(ctx, "replica.y", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Create(ctx, "tenant.a", []byte("again")); err != nil {
		t.Fatalf("create after delete: %v", err)
	}
	// Expiry: one TTL after the last write, the key is gone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := k.Get(ctx, "replica.x")
		if errors.Is(err, backbone.ErrKeyNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key still there after its TTL: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if keys, err := k.Keys(ctx, "replica.>"); err != nil || len(keys) != 0 {
		t.Fatalf("keys after expiry %v %v", keys, err)
	}
}
