package session_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/services/session"
)

// startService runs a service and returns it; it stops at the end of the test.
func (e env) startService(t *testing.T, cfg session.Config) (*session.Service, func()) {
	t.Helper()
	svc, err := session.New(cfg, e.bb, e.bb.Bucket(cfg.LeaseBucket()), e.st, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return svc, e.run(t, svc)
}

// TestServiceRebuildsAfterFlushWhileRunning ensures a running service notices
// that Redis lost everything (FLUSHALL), counts it, and rebuilds retained
// messages and the replay buffer from the stream, message by message.
func TestServiceRebuildsAfterFlushWhileRunning(t *testing.T) {
	e := newEnv(t)
	payloads := map[uint64]string{}
	for i := range 30 {
		p := fmt.Sprintf("m%d", i)
		payloads[e.publish(t, "t1", fmt.Sprintf("r/%d", i%4), p, i%3 == 0)] = p
	}
	svc, _ := e.startService(t, testConfig)
	e.waitApplied(t, "t1", 30)
	if err := e.rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	// Traffic after the flush is applied too, after the rebuild.
	for i := 30; i < 40; i++ {
		p := fmt.Sprintf("m%d", i)
		payloads[e.publish(t, "t1", fmt.Sprintf("r/%d", i%4), p, i%3 == 0)] = p
	}
	waitFor(t, "loss detected", func() bool { return svc.Stats().StoreLosses >= 1 })
	e.waitApplied(t, "t1", 40)
	e.checkReplay(t, "t1", 40, payloads)
	// Last retained per topic: i%3 == 0 -> r/0: 36, r/1: 33, r/2: 30, r/3: 39.
	want := []string{"r/0=m36", "r/1=m33", "r/2=m30", "r/3=m39"}
	if got := retainedTopics(t, e.st, "t1", "#"); !slices.Equal(got, want) {
		t.Fatalf("retained %v, want %v", got, want)
	}
}

// TestServiceExpiresSessions ensures the sweeper deletes exactly the
// sessions past their expiry interval since disconnect.
func TestServiceExpiresSessions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.publish(t, "t1", "x", "x", false) // the tenant exists
	now := time.Now()
	for _, s := range []*store.Session{
		{ClientID: "gone", ExpiryInterval: 1, DisconnectedAt: now.Add(-time.Minute)},
		{ClientID: "soon", ExpiryInterval: 1, DisconnectedAt: now},
		{ClientID: "stays", ExpiryInterval: 3600, DisconnectedAt: now},
		{ClientID: "online", ExpiryInterval: 1},
	} {
		if err := e.st.SaveSession(ctx, "t1", s, store.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig
	cfg.SweepInterval = 50 * time.Millisecond
	svc, _ := e.startService(t, cfg)
	waitFor(t, "two sessions expired", func() bool { return svc.Stats().SessionsExpired == 2 })
	page, err := e.st.Sessions(ctx, "t1", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range page {
		ids = append(ids, s.ClientID)
	}
	if !slices.Equal(ids, []string{"online", "stays"}) {
		t.Fatalf("sessions left %v", ids)
	}
}

// TestServiceSweepsAndLimitsRetained ensures expired retained messages are
// deleted from the store (not only hidden) and that retained messages beyond
// a tenant's limit are refused and counted.
func TestServiceSweepsAndLimitsRetained(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig
	cfg.SweepInterval = 50 * time.Millisecond
	cfg.TenantLimits = map[string]store.Limits{"t1": {RetainedMessages: 2}}
	short := &message.Message{Tenant: "t1", Topic: "short", Payload: []byte("s"), Retain: true, ExpiresAt: time.Now().Add(300 * time.Millisecond)}
	if _, err := e.bb.Publish(context.Background(), short, backbone.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "t1", "a", "a", true)
	e.publish(t, "t1", "b", "b", true) // beyond the limit of 2
	e.publish(t, "t2", "a", "a", true) // another tenant: default limits
	e.publish(t, "t2", "b", "b", true)
	e.publish(t, "t2", "c", "c", true)
	svc, _ := e.startService(t, cfg)
	e.waitApplied(t, "t1", 3)
	e.waitApplied(t, "t2", 3)
	if st := svc.Stats(); st.RetainedDropped != 1 {
		t.Fatalf("dropped %d, want 1", st.RetainedDropped)
	}
	// Once short expired and was swept, b fits: publish it again.
	waitFor(t, "short swept", func() bool { return svc.Stats().RetainedExpired >= 1 })
	last := e.publish(t, "t1", "b", "b2", true)
	e.waitApplied(t, "t1", last)
	if got := retainedTopics(t, e.st, "t1", "#"); !slices.Equal(got, []string{"a=a", "b=b2"}) {
		t.Fatalf("t1 retained %v", got)
	}
	if got := retainedTopics(t, e.st, "t2", "#"); len(got) != 3 {
		t.Fatalf("t2 retained %v", got)
	}
}

// TestServiceFencedOut ensures a service whose tenant was fenced by a newer
// owner stops writing at once, then (holding the lease again) takes a newer
// token and goes on without losing or repeating a message.
func TestServiceFencedOut(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.publish(t, "t1", "a", "0", false)
	svc, _ := e.startService(t, testConfig)
	e.waitApplied(t, "t1", 1)
	// A "newer owner" takes a token: the running worker's token is stale.
	if _, err := e.st.Fence(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 20; i++ {
		e.publish(t, "t1", "a", fmt.Sprint(i), false)
	}
	waitFor(t, "fenced", func() bool { return svc.Stats().Fenced >= 1 })
	e.waitApplied(t, "t1", 20)
	e.checkReplay(t, "t1", 20, nil)
	if st := svc.Stats(); st.LeasesAcquired < 2 {
		t.Fatalf("stats %+v: the tenant was not taken again", st)
	}
}

// TestReplicasShareTenants ensures two replicas split the tenants with no
// tenant owned twice, and that when one stops the other takes them all.
func TestReplicasShareTenants(t *testing.T) {
	e := newEnv(t)
	tenants := []string{"t1", "t2", "t3", "t4", "t5", "t6"}
	for _, tn := range tenants {
		e.publish(t, tn, "a", "0", true)
	}
	c1, c2 := testConfig, testConfig
	c1.ReplicaID, c2.ReplicaID = "r1", "r2"
	s1, _ := e.startService(t, c1)
	s2, stop2 := e.startService(t, c2)
	split := func() bool {
		a, b := s1.Owned(), s2.Owned()
		all := append(slices.Clone(a), b...)
		slices.Sort(all)
		return len(a) > 0 && len(b) > 0 && slices.Equal(all, tenants)
	}
	waitFor(t, "tenants split over two replicas", split)
	for _, tn := range s1.Owned() {
		if slices.Contains(s2.Owned(), tn) {
			t.Fatalf("%s owned by both replicas", tn)
		}
	}
	for _, tn := range tenants {
		e.waitApplied(t, tn, 1)
	}
	stop2()
	waitFor(t, "r1 owns every tenant", func() bool { return slices.Equal(s1.Owned(), tenants) })
	for _, tn := range tenants {
		last := e.publish(t, tn, "a", "1", true)
		e.waitApplied(t, tn, last)
		e.checkReplay(t, tn, last, map[uint64]string{1: "0", 2: "1"})
	}
}
