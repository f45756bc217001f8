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
