package mqtt

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// countingStore counts the session saves and edge lease renewals that reach
// the store.
type countingStore struct {
	store.Store
	saves, renewals atomic.Int64
}

func (c *countingStore) SaveSession(ctx context.Context, tenant string, s *store.Session, lim store.Limits) error {
	c.saves.Add(1)
	return c.Store.SaveSession(ctx, tenant, s, lim)
}

func (c *countingStore) RenewEdgeLease(ctx context.Context, edge string, until time.Time) error {
	c.renewals.Add(1)
	return c.Store.RenewEdgeLease(ctx, edge, until)
}

// waitCount polls n until it reaches want.
func waitCount(t *testing.T, what string, n *atomic.Int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for n.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", what, n.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleSessionsWriteNothing ensures a live edge's idle persistent
// connections cause no session store writes while the edge renews its one
// lease, and that every record names that lease, which is alive.
func TestIdleSessionsWriteNothing(t *testing.T) {
	st := embeddedStore(t)
	cs := &countingStore{Store: st}
	a := newEdge(t, testserver.NATS(t), "edge-a", func(c *Config, n *node.Config) {
		n.State = cs
		c.SessionLease, c.SessionSaveInterval = time.Second, 50*time.Millisecond
	})
	const clients = 10
	for i := range clients {
		c, _, err := a.dialV5(&paho.Connect{ClientID: fmt.Sprintf("idle-%d", i), KeepAlive: 60, Properties: expiry(300)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
		c.subscribe(t, paho.SubscribeOptions{Topic: "idle/#", QoS: 1})
	}
	var edge string
	for i := range clients {
		rec := waitRecord(t, st, fmt.Sprintf("idle-%d", i), func(s *store.Session) bool { return len(s.Subscriptions) == 1 })
		if rec.Edge == "" || (edge != "" && rec.Edge != edge) || !rec.LeaseUntil.IsZero() {
			t.Fatalf("record %+v: want the edge lease %q and no lease of its own", rec, edge)
		}
		edge = rec.Edge
	}
	// Let the subscriptions' saves settle for one renewal, then watch a
	// whole lease (three renewals) go by.
	waitCount(t, "renewals", &cs.renewals, cs.renewals.Load()+1)
	saves, renewals := cs.saves.Load(), cs.renewals.Load()
	waitCount(t, "renewals", &cs.renewals, renewals+3)
	if got := cs.saves.Load() - saves; got != 0 {
		t.Fatalf("%d session saves by %d idle connections over a lease", got, clients)
	}
	leases, err := st.EdgeLeases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if until, ok := leases[edge]; !ok || !until.After(time.Now()) || len(leases) != 1 {
		t.Fatalf("edge leases %v, want %q alive", leases, edge)
	}
}
