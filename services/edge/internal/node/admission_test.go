package node

import (
	"context"
	"errors"
	"testing"

	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/limits"
)

type limitSource map[string]tenant.Limits

func (s limitSource) Limits(id string) (tenant.Limits, bool) { l, ok := s[id]; return l, ok }

func TestAdmit(t *testing.T) {
	q, err := limits.New(limits.Config{EdgeID: "e1", Source: limitSource{"acme": {MaxConnections: 1, MaxConnectionMessagesPerSecond: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{clients: NewClients(ClientsConfig{}), quota: q}
	id := auth.Identity{Tenant: "acme", Credential: "key:k1"}
	var reason error
	a, err := n.Admit(context.Background(), ClientInfo{ID: "c1", Protocol: "mqtt", Identity: id}, func(r error) { reason = r })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Admit(context.Background(), ClientInfo{ID: "c2", Identity: id}, func(error) {}); !errors.Is(err, limits.ErrConnectionLimit) {
		t.Fatalf("second connection: %v, want ErrConnectionLimit", err)
	}
	if err := a.Publish(1); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(1); !errors.Is(err, limits.ErrRateLimited) {
		t.Fatalf("second publish: %v, want ErrRateLimited", err)
	}
	n.clients.OnChange(tenant.Change{Kind: tenant.KindAPIKey, Tenant: "acme", ID: "k1", Deleted: true})
	if !errors.Is(reason, auth.ErrRevoked) {
		t.Fatalf("revoke reason %v", reason)
	}
	a.Release()
	a.Release()
	b, err := n.Admit(context.Background(), ClientInfo{ID: "c3", Identity: id}, func(error) {})
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	b.Release()

	// Anonymous mode: nothing to hold, everything allowed.
	var none *Admission
	if err := none.Publish(1 << 30); err != nil || none.Subscriptions(1<<20) != nil {
		t.Fatal("nil admission refused")
	}
	none.Release()
	a0, err := (&Node{}).Admit(context.Background(), ClientInfo{Identity: id}, nil)
	if err != nil || a0.Publish(1) != nil {
		t.Fatal(err)
	}
}
