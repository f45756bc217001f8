package mqtt

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// crashStore is a session store an edge stops writing to at once when it
// "crashes": what it saved before stays, nothing after reaches the store.
type crashStore struct {
	store.Store
	crashed atomic.Bool
}

var errCrashed = errors.New("the edge crashed")

func (c *crashStore) SaveSession(ctx context.Context, tenant string, s *store.Session, lim store.Limits) error {
	if c.crashed.Load() {
		return errCrashed
	}
	return c.Store.SaveSession(ctx, tenant, s, lim)
}

func (c *crashStore) DeleteSession(ctx context.Context, tenant, clientID string, revision uint64) error {
	if c.crashed.Load() {
		return errCrashed
	}
	return c.Store.DeleteSession(ctx, tenant, clientID, revision)
}

// TestResumedSubscriptionsSurviveCrash ensures the record a resuming
// CONNECT writes keeps the session's subscriptions, which the resume only
// restores after it: an edge that crashes right after a client resumed
// leaves a session that still delivers what the client subscribed to,
// wherever it resumes next.
func TestResumedSubscriptionsSurviveCrash(t *testing.T) {
	st := embeddedStore(t)
	cs := &crashStore{Store: st}
	ns := testserver.NATS(t)
	noPeriodicSave := func(c *Config) { c.SessionLease, c.SessionSaveInterval = time.Hour, 20*time.Minute }
	aNATS := testserver.NATSConn(t, ns)
	a := newEdgeOn(t, aNATS, "edge-a", func(c *Config, n *node.Node) { n.State = cs; noPeriodicSave(c) })
	b := newEdge(t, ns, "edge-b", func(c *Config, n *node.Node) { n.State = st; noPeriodicSave(c) })

	r0, _ := connectRaw(t, a, 5, "subs", false)
	r0.subscribe(packets.Subscription{Filter: "subs/#", Qos: 1})
	r0.send([]byte{packets.Disconnect << 4, 0})
	r0.expectClosed()
	waitRecord(t, st, "subs", func(s *store.Session) bool { return s.DisconnectedAt.After(time.Time{}) && len(s.Subscriptions) == 1 })
	r, ack := connectRaw(t, a, 5, "subs", true)
	if !ack.SessionPresent {
		t.Fatal("session not resumed on edge A")
	}
	cs.crashed.Store(true)
	aNATS.Close()
	r.c.Close()

	r2, ack := connectRaw(t, b, 5, "subs", true)
	if !ack.SessionPresent {
		t.Fatal("session not resumed on edge B")
	}
	b.v5("pub").publish(t, &paho.Publish{Topic: "subs/x", QoS: 1, Payload: []byte("x")})
	if pk := r2.expect(packets.Publish); string(pk.Payload) != "x" {
		t.Fatalf("got %q", pk.Payload)
	}
}
