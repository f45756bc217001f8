package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
)

// TestServiceFiresWills ensures the sweeper treats a lapsed connection
// lease as a disconnect at its end, publishes each will once its delay has
// passed (or its session expired, whichever is first), keeps a will whose
// delay is still running, and leaves a reconnected session alone.
func TestServiceFiresWills(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.publish(t, "t1", "x", "x", false) // the tenant exists
	now := time.Now()
	will := func(id string, delay time.Duration) *store.Will {
		return &store.Will{Topic: "will/" + id, Payload: []byte(id), QoS: 1, Delay: delay}
	}
	for _, s := range []*store.Session{
		// The edge died: the lease ran out a second ago, no delay.
		{ClientID: "dead-edge", ExpiryInterval: 3600, ConnectedTo: "e/1", LeaseUntil: now.Add(-time.Second), Will: will("dead-edge", 0)},
		// Disconnected two minutes ago with a one-minute delay.
		{ClientID: "delayed", ExpiryInterval: 3600, DisconnectedAt: now.Add(-2 * time.Minute), Will: will("delayed", time.Minute)},
		// The session ended (expiry 0) before the delay passed.
		{ClientID: "ended", DisconnectedAt: now.Add(-time.Second), Will: will("ended", time.Hour)},
		// Still within its delay.
		{ClientID: "waiting", ExpiryInterval: 3600, DisconnectedAt: now, Will: will("waiting", time.Hour)},
		// Connected, with a live lease.
		{ClientID: "alive", ExpiryInterval: 3600, ConnectedTo: "e/2", LeaseUntil: now.Add(time.Hour), Will: will("alive", 0)},
	} {
		if err := e.st.SaveSession(ctx, "t1", s, store.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig
	cfg.DueInterval = 50 * time.Millisecond
	cfg.SweepInterval = 50 * time.Millisecond
	svc, _ := e.startService(t, cfg)
	waitFor(t, "three wills published", func() bool { return svc.Stats().WillsPublished == 3 })

	var got []string
	if err := e.bb.Range(ctx, "t1", []string{"will/#"}, 0, 1<<40, func(m *message.Message) error {
		got = append(got, string(m.Payload))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("wills on the stream %v", got)
	}
	dead, err := e.st.LoadSession(ctx, "t1", "dead-edge")
	if err != nil || dead.Will != nil || dead.ConnectedTo != "" || dead.DisconnectedAt.IsZero() {
		t.Fatalf("dead-edge after the sweep: %+v %v", dead, err)
	}
	if _, err := e.st.LoadSession(ctx, "t1", "ended"); err != store.ErrNoSession {
		t.Fatalf("ended session still there: %v", err)
	}
	for _, id := range []string{"waiting", "alive"} {
		if s, err := e.st.LoadSession(ctx, "t1", id); err != nil || s.Will == nil {
			t.Fatalf("%s lost its will: %+v %v", id, s, err)
		}
	}
	if st := svc.Stats(); st.LeasesLapsed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestServiceFiresWillAtSessionEnd ensures a will whose delay outlasts its
// session is published when the session ends, not when the delay passes
// [MQTT-3.1.3-9], by the due sweep (the expiry sweep runs only hourly
// here), and the session is deleted with it.
func TestServiceFiresWillAtSessionEnd(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.publish(t, "t1", "x", "x", false) // the tenant exists
	disconnected := time.Now()
	sess := &store.Session{ClientID: "short", ExpiryInterval: 2, DisconnectedAt: disconnected,
		Will: &store.Will{Topic: "will/short", Payload: []byte("short"), QoS: 1, Delay: time.Hour}}
	if err := e.st.SaveSession(ctx, "t1", sess, store.Limits{}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig
	cfg.DueInterval = 50 * time.Millisecond
	cfg.SweepInterval = time.Hour
	svc, _ := e.startService(t, cfg)
	waitFor(t, "the will published at the session's end", func() bool { return svc.Stats().WillsPublished == 1 })
	if at := time.Since(disconnected); at < 2*time.Second {
		t.Fatalf("will published %v after the disconnect, before the session ended (2s)", at)
	}
	if _, err := e.st.LoadSession(ctx, "t1", "short"); err != store.ErrNoSession {
		t.Fatalf("the ended session is still there: %v", err)
	}
}

// TestServiceSettlesLapsedEdge ensures the sessions of an edge whose lease
// lapsed become disconnected at the lease's end: their wills fire after
// their delay, their expiry starts (a short one deletes the session), and
// the sessions of an edge whose lease lives are left as they are.
func TestServiceSettlesLapsedEdge(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.publish(t, "t1", "x", "x", false) // the tenant exists
	now := time.Now().Truncate(time.Millisecond)
	lapsed := now.Add(-5 * time.Second)
	for edge, until := range map[string]time.Time{"dead~1": lapsed, "live~1": now.Add(time.Hour)} {
		if err := e.st.RenewEdgeLease(ctx, edge, until); err != nil {
			t.Fatal(err)
		}
	}
	will := func(id string, delay time.Duration) *store.Will {
		return &store.Will{Topic: "will/" + id, Payload: []byte(id), QoS: 1, Delay: delay}
	}
	for _, s := range []*store.Session{
		// On the dead edge: the will is due at once, and a long expiry.
		{ClientID: "fired", ExpiryInterval: 3600, ConnectedTo: "dead/1", Edge: "dead~1", Will: will("fired", 0)},
		// On the dead edge: the will's delay is still running.
		{ClientID: "delayed", ExpiryInterval: 3600, ConnectedTo: "dead/2", Edge: "dead~1", Will: will("delayed", time.Hour)},
		// On the dead edge: the session's expiry ran out since the lapse.
		{ClientID: "expired", ExpiryInterval: 1, ConnectedTo: "dead/3", Edge: "dead~1"},
		// On the live edge, with a will due at once were it disconnected.
		{ClientID: "alive", ExpiryInterval: 3600, ConnectedTo: "live/1", Edge: "live~1", Will: will("alive", 0)},
	} {
		if err := e.st.SaveSession(ctx, "t1", s, store.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig
	cfg.DueInterval = 50 * time.Millisecond
	cfg.SweepInterval = 50 * time.Millisecond
	svc, _ := e.startService(t, cfg)
	waitFor(t, "the dead edge's sessions settled", func() bool {
		edges, err := e.st.SessionEdges(ctx, "t1")
		return err == nil && len(edges) == 1 && edges[0] == "live~1"
	})
	waitFor(t, "the will published", func() bool { return svc.Stats().WillsPublished == 1 })

	var got []string
	if err := e.bb.Range(ctx, "t1", []string{"will/#"}, 0, 1<<40, func(m *message.Message) error {
		got = append(got, string(m.Payload))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "fired" {
		t.Fatalf("wills on the stream %v, want [fired]", got)
	}
	for id, wantWill := range map[string]bool{"fired": false, "delayed": true} {
		s, err := e.st.LoadSession(ctx, "t1", id)
		if err != nil || !s.DisconnectedAt.Equal(lapsed) || s.ConnectedTo != "" || s.Edge != "" || (s.Will != nil) != wantWill {
			t.Fatalf("%s after the lapse: %+v %v", id, s, err)
		}
		if exp, ok := s.ExpiresAt(); !ok || !exp.Equal(lapsed.Add(time.Hour)) {
			t.Fatalf("%s expires at %v, %v; want an hour after the lapse", id, exp, ok)
		}
	}
	waitFor(t, "the expired session deleted", func() bool {
		_, err := e.st.LoadSession(ctx, "t1", "expired")
		return err == store.ErrNoSession
	})
	alive, err := e.st.LoadSession(ctx, "t1", "alive")
	if err != nil || !alive.DisconnectedAt.IsZero() || alive.Edge != "live~1" || alive.Will == nil {
		t.Fatalf("the live edge's session: %+v %v", alive, err)
	}
	if st := svc.Stats(); st.LeasesLapsed != 3 {
		t.Fatalf("stats %+v, want 3 lapsed", st)
	}
}
