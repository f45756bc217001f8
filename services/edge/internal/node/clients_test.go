package node_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// closes records close callbacks.
type closes struct {
	mu      sync.Mutex
	reasons map[string]error
}

func (c *closes) fn(id string) func(error) {
	return func(err error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.reasons == nil {
			c.reasons = map[string]error{}
		}
		if _, dup := c.reasons[id]; dup {
			panic("closed twice: " + id)
		}
		c.reasons[id] = err
	}
}

func (c *closes) get(id string) (error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err, ok := c.reasons[id]
	return err, ok
}

func register(t *testing.T, r *node.Clients, cl *closes, id string, ident auth.Identity) *node.Client {
	t.Helper()
	c, err := r.Register(node.ClientInfo{ID: id, Protocol: "mqtt", Identity: ident}, cl.fn(id))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClientsRevocation ensures a deleted key closes exactly the connections that used it, a deleted tenant all of its connections, each once with a reason wrapping auth.ErrRevoked, and that unregistered connections are never called back.
func TestClientsRevocation(t *testing.T) {
	r := node.NewClients(node.ClientsConfig{})
	var cl closes
	k1 := auth.Identity{Tenant: "acme", Credential: "key:k1"}
	register(t, r, &cl, "a", k1)
	register(t, r, &cl, "b", k1)
	register(t, r, &cl, "c", auth.Identity{Tenant: "acme", Credential: "key:k2"})
	register(t, r, &cl, "d", auth.Identity{Tenant: "acme", Credential: "jwt:k1"})
	register(t, r, &cl, "e", auth.Identity{Tenant: "other", Credential: "key:k1"})
	gone := register(t, r, &cl, "f", k1)
	gone.Unregister()
	gone.Unregister()

	r.OnChange(tenant.Change{Kind: tenant.KindAPIKey, Tenant: "acme", ID: "k1"}) // an update, without Check: nothing
	if _, ok := cl.get("a"); ok {
		t.Fatal("closed on an update without a Check")
	}
	r.OnChange(tenant.Change{Kind: tenant.KindAPIKey, Tenant: "acme", ID: "k1", Deleted: true})
	for id, want := range map[string]bool{"a": true, "b": true, "c": false, "d": false, "e": false, "f": false} {
		err, ok := cl.get(id)
		if ok != want || ok && !errors.Is(err, auth.ErrRevoked) {
			t.Errorf("%s: closed %v (%v), want %v", id, ok, err, want)
		}
	}
	if n := r.Count("acme"); n != 2 {
		t.Fatalf("acme has %d connections left, want 2", n)
	}
	r.OnChange(tenant.Change{Kind: tenant.KindJWTKey, Tenant: "acme", ID: "k1", Deleted: true})
	if _, ok := cl.get("d"); !ok {
		t.Fatal("deleted JWT key did not close its connection")
	}
	r.OnChange(tenant.Change{Kind: tenant.KindTenant, Tenant: "acme", ID: "acme", Deleted: true})
	if _, ok := cl.get("c"); !ok || r.Count("acme") != 0 {
		t.Fatal("deleted tenant left a connection")
	}
	if _, ok := cl.get("e"); ok {
		t.Fatal("another tenant's connection was closed")
	}
}

// TestClientsCheck ensures Register refuses an identity the Check no longer admits (a revocation that raced the connect), and that a changed credential closes the connections the Check refuses.
func TestClientsCheck(t *testing.T) {
	var mu sync.Mutex
	valid := map[string]bool{"key:k1": true}
	check := func(id auth.Identity) error {
		mu.Lock()
		defer mu.Unlock()
		if !valid[id.Credential] {
			return auth.ErrRevoked
		}
		return nil
	}
	r := node.NewClients(node.ClientsConfig{Check: check})
	var cl closes
	if _, err := r.Register(node.ClientInfo{ID: "x", Identity: auth.Identity{Tenant: "acme", Credential: "key:k2"}}, cl.fn("x")); !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("Register of a revoked credential: %v", err)
	}
	register(t, r, &cl, "a", auth.Identity{Tenant: "acme", Credential: "key:k1"})
	mu.Lock()
	valid["key:k1"] = false
	mu.Unlock()
	r.OnChange(tenant.Change{Kind: tenant.KindAPIKey, Tenant: "acme", ID: "k1"})
	if _, ok := cl.get("a"); !ok {
		t.Fatal("changed credential did not close its connection")
	}
}

// TestClientsExpiry ensures a connection is closed when its credential expires, and an expired identity cannot register.
func TestClientsExpiry(t *testing.T) {
	r := node.NewClients(node.ClientsConfig{})
	var cl closes
	if _, err := r.Register(node.ClientInfo{Identity: auth.Identity{Tenant: "acme", Expires: time.Now().Add(-time.Second)}}, cl.fn("x")); !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("expired identity: %v", err)
	}
	start := time.Now()
	register(t, r, &cl, "a", auth.Identity{Tenant: "acme", Credential: "jwt:k", Expires: start.Add(50 * time.Millisecond)})
	register(t, r, &cl, "b", auth.Identity{Tenant: "acme", Credential: "jwt:k", Expires: start.Add(30 * time.Millisecond)})
	cl1 := register(t, r, &cl, "c", auth.Identity{Tenant: "acme", Credential: "jwt:k", Expires: start.Add(40 * time.Millisecond)})
	cl1.Unregister()
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, a := cl.get("a")
		_, b := cl.get("b")
		if a && b {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired connections not closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := cl.get("c"); ok {
		t.Fatal("unregistered connection called back at expiry")
	}
}

// TestClientsKickList ensures Kick closes the tenant's connections with an id, with the reason given, and List reports the rest oldest first.
func TestClientsKickList(t *testing.T) {
	r := node.NewClients(node.ClientsConfig{})
	var cl closes
	register(t, r, &cl, "a", auth.Identity{Tenant: "acme"})
	register(t, r, &cl, "b", auth.Identity{Tenant: "acme"})
	register(t, r, &cl, "a", auth.Identity{Tenant: "other"})
	kicked := errors.New("kicked by the operator")
	if n := r.Kick("acme", "a", kicked); n != 1 {
		t.Fatalf("kicked %d", n)
	}
	if err, _ := cl.get("a"); err != kicked {
		t.Fatalf("reason %v", err)
	}
	if l := r.List("acme"); len(l) != 1 || l[0].ID != "b" || l[0].Since.IsZero() {
		t.Fatalf("list %+v", l)
	}
}
