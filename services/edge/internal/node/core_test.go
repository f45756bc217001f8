package node_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/limits"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// These tests run the core over the in-memory backbone: pure logic, the
// same conformance suite as JetStream's behind it.

// waker counts a feed's wakeups and lets a test wait for one.
type waker struct{ ch chan struct{} }

func newWaker() *waker { return &waker{ch: make(chan struct{}, 1)} }

func (w *waker) wake() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

func (w *waker) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the feed never woke")
	}
}

// TestFeedResumeWhilePublishing ensures a subscription started after a
// position yields, replay then live, exactly the matching messages stored
// after it, once each and in order, stamped with their position, while
// messages keep being published through the handover.
func TestFeedResumeWhilePublishing(t *testing.T) {
	ctx := context.Background()
	n, _ := edgetest.MemoryNodeOn(t, backbone.NewMemory())
	var from message.Position
	for i := range 50 {
		edgetest.Publish(t, n, &message.Message{Topic: "other", Payload: []byte("x")})
		m := edgetest.Publish(t, n, &message.Message{Topic: "r/t", Payload: []byte(fmt.Sprint(i))})
		if i == 19 {
			from = edgetest.Position(t, n, m)
		}
	}
	const more = 300
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range more {
			edgetest.Publish(t, n, &message.Message{Topic: "r/t", Payload: []byte(fmt.Sprint(50 + i))})
		}
	}()
	w := newWaker()
	f, err := n.Subscribe(ctx, edgetest.Admit(t, n), []string{"r/+"}, node.After(from), node.Policy{Queue: 4 * more, Wake: w.wake})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := collectIn(t, f, w, true, 30+more, from.Epoch)
	<-done
	if len(got) != 30+more {
		t.Fatalf("received %d messages, want %d", len(got), 30+more)
	}
	for i, p := range got {
		if p != fmt.Sprint(20+i) {
			t.Fatalf("message %d is %q: replay and live overlap or miss", i, p)
		}
	}
}

// TestFeedGapFromAnotherEpoch ensures a position of a previous epoch (the
// stream recreated) and one older than what the stream holds each start
// with a gap, the first marked as an epoch change.
func TestFeedGapFromAnotherEpoch(t *testing.T) {
	ctx := context.Background()
	n, mem := edgetest.MemoryNodeOn(t, backbone.NewMemory())
	var pos []message.Position
	for i := range 5 {
		pos = append(pos, edgetest.Position(t, n, edgetest.Publish(t, n, &message.Message{Topic: "g", Payload: []byte(fmt.Sprint(i))})))
	}
	mem.Trim(edgetest.Tenant, pos[2].Seq)
	replay := func(from message.Position) []string {
		f, err := n.Subscribe(ctx, edgetest.Admit(t, n), []string{"g"}, node.After(from), node.Policy{Queue: 8})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var out []string
		if _, err := f.Replay(ctx, func(it node.Item) error {
			if it.Gap() {
				out = append(out, fmt.Sprintf("gap@%s changed=%v", it.Pos, it.EpochChanged))
			} else {
				out = append(out, string(it.Msg.Payload))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got, want := fmt.Sprint(replay(pos[0])), fmt.Sprintf("[gap@%s changed=false 3 4]", pos[0]); got != want {
		t.Errorf("trimmed: %s, want %s", got, want)
	}
	old := message.Position{Epoch: "zz", Seq: 1}
	if got, want := fmt.Sprint(replay(old)), fmt.Sprintf("[gap@%s changed=true]", old); got != want {
		t.Errorf("other epoch: %s, want %s", got, want)
	}
}

// TestFeedRevocationStops ensures a revoked credential stops its
// connection's feed at once: what was queued is dropped, the feed wakes,
// and Drain answers the revocation, before the transport's own close runs.
func TestFeedRevocationStops(t *testing.T) {
	ctx := context.Background()
	clients := node.NewClients(node.ClientsConfig{})
	n := edgetest.MemoryNode(t, func(c *node.Config) { c.Clients = clients })
	id := auth.Identity{Tenant: edgetest.Tenant, Anonymous: true, Credential: "key:k1"}
	var closedWith error
	var feedErrAtClose error
	var f *node.Feed
	adm, err := n.Admit(ctx, node.ClientInfo{ID: "c1", Protocol: "sse", Identity: id}, func(reason error) {
		closedWith, feedErrAtClose = reason, f.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Release()
	w := newWaker()
	if f, err = n.Subscribe(ctx, adm, []string{"a"}, node.Live(), node.Policy{Queue: 8, Wake: w.wake}); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Replay(ctx, nil); err != nil {
		t.Fatal(err)
	}
	edgetest.Publish(t, n, &message.Message{Topic: "a", Payload: []byte("before")})
	w.wait(t)
	clients.OnChange(tenant.Change{Kind: tenant.KindAPIKey, Tenant: edgetest.Tenant, ID: "k1", Deleted: true})
	if !errors.Is(closedWith, auth.ErrRevoked) || !errors.Is(feedErrAtClose, auth.ErrRevoked) {
		t.Fatalf("closed with %v, the feed then %v", closedWith, feedErrAtClose)
	}
	items, err := f.Drain(ctx, nil)
	if !errors.Is(err, auth.ErrRevoked) || len(items) != 0 {
		t.Fatalf("drain after revocation: %d items, %v", len(items), err)
	}
	edgetest.Publish(t, n, &message.Message{Topic: "a", Payload: []byte("after")})
	if items, err := f.Drain(ctx, nil); len(items) != 0 || err == nil {
		t.Fatalf("a revoked feed delivered %d items (%v)", len(items), err)
	}
}

// limitSource gives tenants' limits.
type limitSource map[string]tenant.Limits

func (s limitSource) Limits(id string) (tenant.Limits, bool) { l, ok := s[id]; return l, ok }

// TestSubscribeChecks ensures Subscribe validates the filters (shared
// prefixes refused), deduplicates and bounds them, authorizes subscribe and
// — for a start that reads history — history, and counts a connection's
// filters against its tenant's subscription limit across its feed's
// subscriptions, leaving nothing in the hub when it refuses.
func TestSubscribeChecks(t *testing.T) {
	ctx := context.Background()
	q, err := limits.New(limits.Config{EdgeID: "e", Source: limitSource{edgetest.Tenant: {MaxSubscriptionsPerConnection: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	n := edgetest.MemoryNode(t, func(c *node.Config) { c.Quota = q })
	caps, err := authz.ParseCapabilities([]string{"sub:a/#", "history:a/h/#"})
	if err != nil {
		t.Fatal(err)
	}
	id := auth.Identity{Tenant: edgetest.Tenant, Credential: "key:k", Capabilities: caps}
	adm, err := n.Admit(ctx, node.ClientInfo{ID: "c", Protocol: "ws", Identity: id}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Release()
	f, err := n.NewFeed(ctx, adm, node.Policy{Queue: 4, MaxFilters: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		filters []string
		from    node.Start
		kind    fault.Kind
	}{
		{nil, node.Live(), fault.Invalid},
		{[]string{"a/#/b"}, node.Live(), fault.InvalidFilter},
		{[]string{"$share/g/a/x"}, node.Live(), fault.InvalidFilter},
		{[]string{"a/1", "a/2", "a/3"}, node.Live(), fault.Invalid},
		{[]string{"b"}, node.Live(), fault.Forbidden},
		{[]string{"a/x"}, node.After(message.Position{Seq: 1}), fault.Forbidden},
	} {
		if _, err := f.Subscribe(ctx, tc.filters, tc.from, node.SubOptions{}); fault.KindOf(err) != tc.kind || err == nil {
			t.Errorf("%v from %+v: %v, want kind %v", tc.filters, tc.from, err, tc.kind)
		}
	}
	if got := n.Subscriptions(); got != 0 {
		t.Fatalf("%d subscriptions left by refusals", got)
	}
	if _, err := f.Subscribe(ctx, []string{"a/1", "a/1", "a/2"}, node.Live(), node.SubOptions{Key: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Subscribe(ctx, []string{"a/h/1"}, node.After(message.Position{Seq: 0}), node.SubOptions{Key: "y"}); err != nil {
		t.Fatalf("history allowed: %v", err)
	}
	if got := n.Subscriptions(); got != 3 {
		t.Fatalf("%d subscriptions, want 3 (duplicates folded)", got)
	}
	if _, err := f.Subscribe(ctx, []string{"a/4"}, node.Live(), node.SubOptions{Key: "z"}); !errors.Is(err, limits.ErrSubscriptionLimit) {
		t.Fatalf("fourth filter: %v, want the subscription limit", err)
	}
}

// TestPublishChecks ensures Publish refuses an invalid topic, a topic
// outside the caller's capabilities and a payload over its tenant's limit
// before anything is stored, and stores into the caller's tenant whatever
// the message says.
func TestPublishChecks(t *testing.T) {
	ctx := context.Background()
	q, err := limits.New(limits.Config{EdgeID: "e", Source: limitSource{"acme": {MaxPayloadBytes: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	n, mem := edgetest.MemoryNodeOn(t, backbone.NewMemory(), func(c *node.Config) { c.Quota = q })
	caps, err := authz.ParseCapabilities([]string{"pub:a/#"})
	if err != nil {
		t.Fatal(err)
	}
	caller := node.Caller{Identity: auth.Identity{Tenant: "acme", Credential: "key:k", Capabilities: caps}}
	for _, tc := range []struct {
		topic, payload string
		kind           fault.Kind
	}{
		{"a/+", "x", fault.InvalidTopic},
		{"b", "x", fault.Forbidden},
		{"a/b", "too long", fault.PayloadQuota},
	} {
		m := &message.Message{Topic: tc.topic, Payload: []byte(tc.payload)}
		if _, err := n.Publish(ctx, caller, m, node.PublishOptions{Wait: node.WaitStored}); fault.KindOf(err) != tc.kind || err == nil {
			t.Errorf("%s %q: %v, want kind %v", tc.topic, tc.payload, err, tc.kind)
		}
	}
	if _, err := mem.State(ctx, "acme"); !errors.Is(err, backbone.ErrNoStream) {
		t.Fatalf("a refused publish touched the stream: %v", err)
	}
	var sent sync.WaitGroup
	sent.Add(1)
	r, err := n.Publish(ctx, caller, &message.Message{Tenant: "other", Topic: "a/b", Payload: []byte("ok")},
		node.PublishOptions{BeforeSend: func() error { sent.Done(); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	sent.Wait()
	pos, err := r.Wait(ctx)
	if err != nil || pos.Seq != 1 {
		t.Fatalf("stored at %v, %v", pos, err)
	}
	if _, err := mem.State(ctx, "other"); !errors.Is(err, backbone.ErrNoStream) {
		t.Fatal("a message naming another tenant was stored there")
	}
}

// TestClientsListSubscriptions ensures the registry lists, for each
// connection, the filters its open feeds hold now (the admin API's
// connection list): every feed's subscriptions, a closed subscription or
// feed no more.
func TestClientsListSubscriptions(t *testing.T) {
	ctx := context.Background()
	clients := node.NewClients(node.ClientsConfig{})
	n := edgetest.MemoryNode(t, func(c *node.Config) { c.Clients = clients })
	id := auth.Identity{Tenant: edgetest.Tenant, Anonymous: true, Credential: "key:k1"}
	adm, err := n.Admit(ctx, node.ClientInfo{ID: "c1", Protocol: "ws", Identity: id}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Release()
	list := func() string {
		t.Helper()
		l := clients.List(edgetest.Tenant)
		if len(l) != 1 {
			t.Fatalf("%d connections listed, want 1", len(l))
		}
		return fmt.Sprint(l[0].Subscriptions)
	}
	if got := list(); got != "[]" {
		t.Fatalf("before any feed: %s", got)
	}
	f1, err := n.NewFeed(ctx, adm, node.Policy{Queue: 8})
	if err != nil {
		t.Fatal(err)
	}
	s1, err := f1.Subscribe(ctx, []string{"b/#", "a"}, node.Live(), node.SubOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f2, err := n.Subscribe(ctx, adm, []string{"c/+"}, node.Live(), node.Policy{Queue: 8})
	if err != nil {
		t.Fatal(err)
	}
	if got := list(); got != "[a b/# c/+]" {
		t.Fatalf("two feeds: %s, want [a b/# c/+]", got)
	}
	s1.Close()
	if got := list(); got != "[c/+]" {
		t.Fatalf("after closing a subscription: %s, want [c/+]", got)
	}
	f2.Close()
	if got := list(); got != "[]" {
		t.Fatalf("after closing the feed: %s, want []", got)
	}
	f1.Close()
}
