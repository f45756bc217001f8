package tenantauth_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/tenantauth"
	"github.com/redis/go-redis/v9"
)

// revokeWithin is the bound issue 6 sets from revocation to disconnect.
const revokeWithin = 2 * time.Second

// cluster is an edge's tenancy wiring over a real etcd: the store the admin
// API writes through, the edge's Directory, its Authenticator and its
// registry of live connections.
type cluster struct {
	store   *tenant.Etcd
	dir     *tenant.Directory
	auth    *tenantauth.Authenticator
	clients *node.Clients
}

// newCluster starts etcd and the edge's wiring over it; the
// Authenticator has cfg, with the cluster's Directory.
func newCluster(t *testing.T, cfg tenantauth.Config) *cluster {
	t.Helper()
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	store, err := tenant.NewEtcd(cli, tenant.EtcdConfig{Prefix: "/herald/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{store: store}
	// OnChange runs after the Directory applied the change; clients is set
	// before Run starts.
	c.dir = tenant.NewDirectory(store, tenant.DirectoryConfig{OnChange: func(ch tenant.Change) { c.clients.OnChange(ch) }})
	cfg.Directory = c.dir
	c.auth = newAuth(t, cfg)
	c.clients = node.NewClients(node.ClientsConfig{Check: c.auth.Check})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.dir.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-c.dir.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("directory not ready")
	}
	return c
}

// createKey creates an API key as the admin API does (default argon2id
// parameters) and returns its token.
func (c *cluster) createKey(t *testing.T, tenantID string, caps ...string) (string, tenant.APIKey) {
	t.Helper()
	cs, err := authz.ParseCapabilities(caps)
	if err != nil {
		t.Fatal(err)
	}
	token, id, secret := authz.NewToken(authz.KindAPIKey)
	k, err := c.store.CreateAPIKey(t.Context(), tenant.APIKey{ID: id, Tenant: tenantID, Hash: authz.HashSecret(secret, authz.DefaultArgon2), Capabilities: cs})
	if err != nil {
		t.Fatal(err)
	}
	return token, k
}

// authenticate waits until the Directory has the credential, then
// authenticates with it.
func (c *cluster) authenticate(t *testing.T, cr auth.Credentials) auth.Identity {
	t.Helper()
	deadline := time.Now().Add(revokeWithin)
	for {
		id, err := c.auth.Authenticate(t.Context(), cr)
		if err == nil {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("authenticate: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// conn is a registered connection that records when it was closed.
type conn struct {
	closed chan error
	at     time.Time
	once   sync.Once
}

func (c *cluster) connect(t *testing.T, id auth.Identity) *conn {
	t.Helper()
	cn := &conn{closed: make(chan error, 1)}
	if _, err := c.clients.Register(node.ClientInfo{ID: "c", Protocol: "mqtt", Identity: id}, func(reason error) {
		cn.once.Do(func() { cn.at = time.Now(); cn.closed <- reason })
	}); err != nil {
		t.Fatal(err)
	}
	return cn
}

// waitClosed returns how long after since the connection was closed.
func (cn *conn) waitClosed(t *testing.T, since time.Time) time.Duration {
	t.Helper()
	select {
	case reason := <-cn.closed:
		if !errors.Is(reason, auth.ErrRevoked) {
			t.Fatalf("closed with %v, want ErrRevoked", reason)
		}
		return cn.at.Sub(since)
	case <-time.After(revokeWithin):
		t.Fatalf("not closed within %v", revokeWithin)
	}
	return 0
}

func (cn *conn) open(t *testing.T) {
	t.Helper()
	select {
	case reason := <-cn.closed:
		t.Fatalf("closed: %v", reason)
	default:
	}
}

// TestRevocationCloses ensures keys created through the tenant store authenticate at the edge, and that revoking a key, narrowing its capabilities, deleting a JWT key or deleting the tenant closes the connections concerned within 2 s (measured), refuses the credential from then on, and leaves the others open.
func TestRevocationCloses(t *testing.T) {
	c := newCluster(t, tenantauth.Config{})
	ctx := t.Context()
	for _, id := range []string{"acme", "beta"} {
		if _, err := c.store.Create(ctx, tenant.Tenant{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	tokA, keyA := c.createKey(t, "acme", "publish,subscribe:sensors/#")
	tokB, keyB := c.createKey(t, "acme", "publish:sensors/#")
	tokC, _ := c.createKey(t, "beta", "subscribe:#")
	if _, err := c.store.CreateJWTKey(ctx, tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "HS256", Secret: hmacSecret}); err != nil {
		t.Fatal(err)
	}
	jwtTok := signHS(t, "k1", jwt.MapClaims{"tenant": "acme", "sub": "dev1", "exp": time.Now().Add(time.Hour).Unix(), "caps": []string{"subscribe:news/#"}})

	idA := c.authenticate(t, auth.Credentials{Username: "device", Password: []byte(tokA), RemoteAddr: "192.0.2.1:5000"})
	if idA.Tenant != "acme" || idA.Credential != "key:"+keyA.ID || node.AuthorizePublish(idA, "sensors/x") != nil || node.AuthorizePublish(idA, "other") == nil {
		t.Fatalf("identity %+v", idA)
	}
	idB := c.authenticate(t, auth.Credentials{Token: tokB})
	idC := c.authenticate(t, auth.Credentials{Token: tokC})
	idJ := c.authenticate(t, auth.Credentials{Token: jwtTok})
	connA, connB, connC, connJ := c.connect(t, idA), c.connect(t, idB), c.connect(t, idC), c.connect(t, idJ)

	// Revoke key A.
	start := time.Now()
	if err := c.store.DeleteAPIKey(ctx, "acme", keyA.ID, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("revoke API key -> close callback: %v", connA.waitClosed(t, start))
	if _, err := c.auth.Authenticate(ctx, auth.Credentials{Token: tokA}); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("revoked key: %v", err)
	}
	connB.open(t)

	// Narrow key B's capabilities: its connection must reconnect to get them.
	keyB.Capabilities, _ = authz.ParseCapabilities([]string{"publish:sensors/a"})
	start = time.Now()
	if _, err := c.store.UpdateAPIKey(ctx, keyB); err != nil {
		t.Fatal(err)
	}
	t.Logf("narrow API key capabilities -> close callback: %v", connB.waitClosed(t, start))

	// Delete the JWT key.
	start = time.Now()
	if err := c.store.DeleteJWTKey(ctx, "acme", "k1", 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("delete JWT key -> close callback: %v", connJ.waitClosed(t, start))

	// Delete tenant beta: its key stops working and its connection ends.
	start = time.Now()
	if err := c.store.Delete(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	t.Logf("delete tenant -> close callback: %v", connC.waitClosed(t, start))
	if _, err := c.auth.Authenticate(ctx, auth.Credentials{Token: tokC}); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("deleted tenant's key: %v", err)
	}
	if _, err := c.clients.Register(node.ClientInfo{Identity: idC}, func(error) {}); !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("registering an identity of a deleted tenant: %v", err)
	}
}

// TestRedisReplayAcrossEdges ensures a single-use JWT accepted by one edge is refused as a replay by another edge sharing the Redis guard.
func TestRedisReplayAcrossEdges(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testserver.Redis(t)})
	t.Cleanup(func() { rdb.Close() })
	d := newFakeDir("acme")
	d.jwt["acme"] = []authz.JWTKey{{ID: "k1", Tenant: "acme", Algorithm: "HS256", Key: hmacSecret}}
	guard := tenantauth.NewRedisReplay(rdb, "replaytest", authz.DefaultJWTLeeway)
	edgeA := newAuth(t, tenantauth.Config{Directory: d, Replay: guard})
	edgeB := newAuth(t, tenantauth.Config{Directory: d, Replay: guard})
	tok := signHS(t, "k1", jwt.MapClaims{"tenant": "acme", "exp": time.Now().Add(time.Minute).Unix(), "jti": "once"})
	if _, err := edgeA.Authenticate(t.Context(), auth.Credentials{Token: tok}); err != nil {
		t.Fatal(err)
	}
	if _, err := edgeB.Authenticate(t.Context(), auth.Credentials{Token: tok}); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("replay on another edge: %v", err)
	}
	if ttl := rdb.TTL(t.Context(), "replaytest:{acme}:jti:once").Val(); ttl < time.Minute || ttl > time.Minute+authz.DefaultJWTLeeway+time.Second {
		t.Fatalf("guard key TTL %v, want about exp + leeway", ttl)
	}
}

// TestJWKSKeyThroughStore ensures a JWKS key created through the tenant
// store (as the admin API does) admits the tokens of its identity
// provider's document at an edge that may reach the provider, and that
// deleting the key closes their connections within 2 s (measured) and
// refuses their tokens.
func TestJWKSKeyThroughStore(t *testing.T) {
	p := newIdP(t)
	key := rsaKeys()[2]
	p.serve(rsaJWK("idp-key-1", "RS256", &key.PublicKey))
	c := newCluster(t, tenantauth.Config{JWKS: tenantauth.JWKSConfig{RootCAs: p.roots, AllowNetworks: []string{"127.0.0.1/32"}}})
	ctx := t.Context()
	if _, err := c.store.Create(ctx, tenant.Tenant{ID: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.store.CreateJWTKey(ctx, tenant.JWTKey{ID: "acme-idp", Tenant: "acme", Algorithm: "RS256", JWKSURL: p.url("localhost"),
		Issuer: "https://idp.example/acme"}); err != nil {
		t.Fatal(err)
	}
	tok := signJWT(t, jwt.SigningMethodRS256, key, "idp-key-1", jwt.MapClaims{"iss": "https://idp.example/acme", "sub": "dev1",
		"exp": time.Now().Add(time.Hour).Unix(), "caps": []string{"subscribe:news/#"}})
	id := c.authenticate(t, auth.Credentials{Username: "acme", Password: []byte(tok)})
	if id.Tenant != "acme" || id.Credential != "jwt:acme-idp" || id.Subject != "dev1" || node.AuthorizeSubscribe(id, "news/x") != nil {
		t.Fatalf("identity %+v", id)
	}
	cn := c.connect(t, id)

	start := time.Now()
	if err := c.store.DeleteJWTKey(ctx, "acme", "acme-idp", 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("delete JWKS key -> close callback: %v", cn.waitClosed(t, start))
	if _, err := c.auth.Authenticate(ctx, auth.Credentials{Username: "acme", Password: []byte(tok)}); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("token of the deleted key: %v", err)
	}
}
