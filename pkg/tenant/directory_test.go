package tenant_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
)

// visibleWithin bounds how long a change may take to reach a Directory.
const visibleWithin = 2 * time.Second

// waitFor polls cond until it holds, failing after visibleWithin; it
// returns how long it took.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > visibleWithin {
			t.Fatalf("%s: not visible within %v", what, visibleWithin)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// changeLog records a Directory's changes.
type changeLog struct {
	mu  sync.Mutex
	all []tenant.Change
}

func (l *changeLog) add(c tenant.Change) { l.mu.Lock(); l.all = append(l.all, c); l.mu.Unlock() }
func (l *changeLog) has(want tenant.Change) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.all {
		if c.Kind == want.Kind && c.Tenant == want.Tenant && c.ID == want.ID && c.Deleted == want.Deleted {
			return true
		}
	}
	return false
}

func runDirectory(t *testing.T, s *tenant.Etcd, log *changeLog) *tenant.Directory {
	t.Helper()
	d := tenant.NewDirectory(s, tenant.DirectoryConfig{OnChange: log.add})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Directory.Run did not return")
		}
	})
	select {
	case <-d.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("directory not ready")
	}
	return d
}

// TestDirectory ensures a Directory loads what exists, then shows every put and revoke of tenants, limits, API keys, JWT keys, certificate identities and admin keys within 2 s, reporting each as a Change.
func TestDirectory(t *testing.T) {
	s := newEtcd(t, testserver.EtcdClient(t, testserver.Etcd(t)))
	ctx := t.Context()
	if _, err := s.Create(ctx, tenant.Tenant{ID: "acme", Limits: tenant.Limits{MaxConnections: 5}}); err != nil {
		t.Fatal(err)
	}
	early, err := s.CreateAPIKey(ctx, tenant.APIKey{ID: authz.NewID(), Tenant: "acme", Hash: "h", Capabilities: caps(t, "publish:a/#")})
	if err != nil {
		t.Fatal(err)
	}
	var log changeLog
	d := runDirectory(t, s, &log)
	if l, ok := d.Limits("acme"); !ok || l.MaxConnections != 5 {
		t.Fatalf("limits after load: %+v %v", l, ok)
	}
	if k, ok := d.APIKey(early.ID); !ok || k.Tenant != "acme" || !k.Capabilities.CanPublish("a/b") {
		t.Fatalf("key after load: %+v %v", k, ok)
	}

	// Puts.
	late, err := s.CreateAPIKey(ctx, tenant.APIKey{ID: authz.NewID(), Tenant: "acme", Hash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new key", func() bool { _, ok := d.APIKey(late.ID); return ok })
	tn, _ := s.Get(ctx, "acme")
	tn.Limits.MaxConnections = 1
	if _, err := s.Put(ctx, tn); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lowered limit", func() bool { l, _ := d.Limits("acme"); return l.MaxConnections == 1 })
	if _, err := s.CreateJWTKey(ctx, tenant.JWTKey{ID: "hmac", Tenant: "acme", Algorithm: "HS256", Secret: []byte(strings.Repeat("k", 32))}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateJWTKey(ctx, tenant.JWTKey{ID: "remote", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://idp.example/jwks"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "JWT keys", func() bool { return len(d.JWTVerifiers("acme")) == 1 && len(d.JWKSKeys("acme")) == 1 })
	fp := strings.Repeat("ab", 32)
	m, err := s.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: "acme", FingerprintSHA256: fp, Subject: "CN=dev"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "mTLS identity", func() bool {
		a, ok1 := d.MTLSByFingerprint(fp)
		b, ok2 := d.MTLSBySubject("CN=dev")
		return ok1 && ok2 && a.ID == m.ID && b.ID == m.ID
	})
	adm, err := s.CreateAdminKey(ctx, tenant.AdminKey{ID: authz.NewID(), Tenant: "acme", Hash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "admin key", func() bool { _, ok := d.AdminKey(adm.ID); return ok })

	// Revoke, measured from before the request.
	start := time.Now()
	if err := s.DeleteAPIKey(ctx, "acme", early.ID, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revoked key", func() bool { _, ok := d.APIKey(early.ID); return !ok })
	t.Logf("revoked key left the directory %v after the revoke was sent", time.Since(start))
	waitFor(t, "revoke change", func() bool {
		return log.has(tenant.Change{Kind: tenant.KindAPIKey, Tenant: "acme", ID: early.ID, Deleted: true})
	})

	// Deleting the tenant takes everything of it at once.
	if err := s.Delete(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deleted tenant", func() bool {
		_, t1 := d.Tenant("acme")
		_, k := d.APIKey(late.ID)
		_, f := d.MTLSByFingerprint(fp)
		_, a := d.AdminKey(adm.ID)
		return !t1 && !k && !f && !a && len(d.JWTVerifiers("acme")) == 0 && len(d.JWKSKeys("acme")) == 0
	})
	if !log.has(tenant.Change{Kind: tenant.KindTenant, Tenant: "acme", ID: "acme", Deleted: true}) {
		t.Error("no tenant deletion change")
	}
	if d.Revision() == 0 {
		t.Error("revision 0")
	}
}

// TestDirectoryRefusesMisfiledRecords ensures a record whose tenant or ID differs from its place in the key layout is ignored, so writing under one tenant cannot mint a credential for another.
func TestDirectoryRefusesMisfiledRecords(t *testing.T) {
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	s := newEtcd(t, cli)
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if _, err := s.Create(ctx, tenant.Tenant{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	prefix := strings.TrimSuffix(s.Key("x"), "tenants/x")
	id := authz.NewID()
	if _, err := cli.Put(ctx, prefix+"keys/a/"+id, `{"id":"`+id+`","tenant":"b","hash":"h","created_at":"2026-01-01T00:00:00Z"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, prefix+"elsewhere/x", `junk`); err != nil {
		t.Fatal(err)
	}
	var log changeLog
	d := runDirectory(t, s, &log)
	if _, ok := d.APIKey(id); ok {
		t.Fatal("misfiled key admitted")
	}
	good, err := s.CreateAPIKey(ctx, tenant.APIKey{ID: authz.NewID(), Tenant: "b", Hash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "good key", func() bool { _, ok := d.APIKey(good.ID); return ok })
}
