package tenant_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// tenants creates the tenants ids in s.
func createTenants(t *testing.T, s *tenant.Etcd, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := s.Create(t.Context(), tenant.Tenant{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
}

// wantTaken fails unless err is ErrIdentityTaken and does not name the
// tenant holding the identity.
func wantTaken(t *testing.T, what string, err error, holder string) {
	t.Helper()
	if !errors.Is(err, tenant.ErrIdentityTaken) {
		t.Fatalf("%s: %v, want ErrIdentityTaken", what, err)
	}
	if strings.Contains(err.Error(), holder) {
		t.Fatalf("%s: the error names the holder %q: %v", what, holder, err)
	}
}

// TestIdentitiesOwned ensures a certificate fingerprint or subject, an API key id, a JWT key id and a JWT issuer registered by one tenant cannot be registered by another (without naming the holder), a tenant's own JWT keys may share an issuer, deleting a record frees its identities, and deleting another tenant's record is impossible.
func TestIdentitiesOwned(t *testing.T) {
	s := newEtcd(t, testserver.EtcdClient(t, testserver.Etcd(t)))
	ctx := t.Context()
	createTenants(t, s, "acme", "mallory")
	fp := strings.Repeat("c0", 32)
	mine, err := s.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: "acme", FingerprintSHA256: fp, Subject: "CN=meter-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: "mallory", FingerprintSHA256: fp})
	wantTaken(t, "fingerprint", err, "acme")
	_, err = s.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: "mallory", Subject: "CN=meter-1"})
	wantTaken(t, "subject", err, "acme")
	// Within the tenant too: one certificate, one identity.
	_, err = s.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: "acme", Subject: "CN=meter-1"})
	wantTaken(t, "own subject again", err, "acme")

	key, err := s.CreateAPIKey(ctx, tenant.APIKey{ID: authz.NewID(), Tenant: "acme", Hash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.CreateAPIKey(ctx, tenant.APIKey{ID: key.ID, Tenant: "mallory", Hash: "h"})
	wantTaken(t, "API key id", err, "acme")

	jwt := func(tenantID, id, issuer string) error {
		_, err := s.CreateJWTKey(ctx, tenant.JWTKey{ID: id, Tenant: tenantID, Algorithm: "ES256", PublicKeyPEM: ecPEM(t), Issuer: issuer})
		return err
	}
	if err := jwt("acme", "k1", "https://login.example/o1"); err != nil {
		t.Fatal(err)
	}
	if err := jwt("acme", "k2", "https://login.example/o1"); err != nil {
		t.Fatalf("a second key of the tenant's own issuer (rotation): %v", err)
	}
	wantTaken(t, "JWT key id", jwt("mallory", "k1", ""), "acme")
	wantTaken(t, "JWT issuer", jwt("mallory", "m1", "https://login.example/o1"), "acme")

	// Another tenant cannot delete acme's records by naming them.
	if err := s.DeleteMTLSIdentity(ctx, "mallory", mine.ID, 0); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("mallory deleting acme's identity: %v", err)
	}
	// Deleting mallory's own record leaves acme's ownership alone.
	other, err := s.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: "mallory", FingerprintSHA256: strings.Repeat("d0", 32)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMTLSIdentity(ctx, "mallory", other.ID, 0); err != nil {
		t.Fatal(err)
	}
	_, err = s.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: "mallory", FingerprintSHA256: fp})
	wantTaken(t, "fingerprint after mallory's delete", err, "acme")

	// The issuer stays acme's while one of its keys names it.
	if err := s.DeleteJWTKey(ctx, "acme", "k1", 0); err != nil {
		t.Fatal(err)
	}
	wantTaken(t, "issuer after one of two keys went", jwt("mallory", "m1", "https://login.example/o1"), "acme")
	if err := s.DeleteJWTKey(ctx, "acme", "k2", 0); err != nil {
		t.Fatal(err)
	}
	// Deleted records free their identities.
	if err := s.DeleteMTLSIdentity(ctx, "acme", mine.ID, mine.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: "mallory", FingerprintSHA256: fp, Subject: "CN=meter-1"}); err != nil {
		t.Fatalf("freed certificate: %v", err)
	}
	if err := jwt("mallory", "k1", "https://login.example/o1"); err != nil {
		t.Fatalf("freed JWT key id and issuer: %v", err)
	}
	// So does deleting the whole tenant.
	if err := s.Delete(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAPIKey(ctx, tenant.APIKey{ID: key.ID, Tenant: "mallory", Hash: "h"}); err != nil {
		t.Fatalf("API key id of a deleted tenant: %v", err)
	}
}

// TestIdentityConcurrentRegistrations ensures that of many tenants registering one certificate fingerprint at once, exactly one gets it.
func TestIdentityConcurrentRegistrations(t *testing.T) {
	s := newEtcd(t, testserver.EtcdClient(t, testserver.Etcd(t)))
	ids := []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"}
	createTenants(t, s, ids...)
	fp := strings.Repeat("e1", 32)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		won    []string
		others []error
	)
	for _, id := range ids {
		wg.Go(func() {
			_, err := s.CreateMTLSIdentity(t.Context(), tenant.MTLSIdentity{ID: authz.NewID(), Tenant: id, FingerprintSHA256: fp})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won = append(won, id)
			} else {
				others = append(others, err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("%d tenants got the fingerprint: %v", len(won), won)
	}
	for _, err := range others {
		if !errors.Is(err, tenant.ErrIdentityTaken) {
			t.Errorf("loser: %v, want ErrIdentityTaken", err)
		}
	}
}

// mtlsRecord writes a certificate identity straight into etcd, bypassing
// the ownership index, as data written before it existed.
func mtlsRecord(t *testing.T, cli *clientv3.Client, s *tenant.Etcd, tenantID, id, fp string) {
	t.Helper()
	prefix := strings.TrimSuffix(s.Key("x"), "tenants/x")
	v := `{"id":"` + id + `","tenant":"` + tenantID + `","fingerprint_sha256":"` + fp + `","created_at":"2026-01-01T00:00:00Z"}`
	if _, err := cli.Put(t.Context(), prefix+"mtls/"+tenantID+"/"+id, v); err != nil {
		t.Fatal(err)
	}
}

// TestDirectoryIdentityClash ensures a Directory resolves a certificate fingerprint that two tenants' records hold (written around the index) to nobody, reports the first holder as changed so its clients are checked again, and resolves it again once one record is gone.
func TestDirectoryIdentityClash(t *testing.T) {
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	s := newEtcd(t, cli)
	ctx := t.Context()
	createTenants(t, s, "acme", "mallory")
	fp := strings.Repeat("f2", 32)
	first, second := authz.NewID(), authz.NewID()
	mtlsRecord(t, cli, s, "acme", first, fp)
	var log changeLog
	d := runDirectory(t, s, &log)
	if m, ok := d.MTLSByFingerprint(fp); !ok || m.Tenant != "acme" {
		t.Fatalf("one holder: %+v %v", m, ok)
	}
	mtlsRecord(t, cli, s, "mallory", second, fp)
	waitFor(t, "clash", func() bool {
		return log.has(tenant.Change{Kind: tenant.KindMTLSIdentity, Tenant: "mallory", ID: second})
	})
	if m, ok := d.MTLSByFingerprint(fp); ok {
		t.Fatalf("a fingerprint two tenants hold resolves to %s", m.Tenant)
	}
	if !log.has(tenant.Change{Kind: tenant.KindMTLSIdentity, Tenant: "acme", ID: first}) {
		t.Error("the first holder was not reported as changed")
	}
	if err := s.DeleteMTLSIdentity(ctx, "mallory", second, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "clash resolved", func() bool { m, ok := d.MTLSByFingerprint(fp); return ok && m.ID == first })
}

// TestReconcileOwners ensures ReconcileOwners indexes identities stored before the index existed, marks one held by two tenants as a conflict that nobody can register, removes owner keys no record holds, and finds nothing to do when run again.
func TestReconcileOwners(t *testing.T) {
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	s := newEtcd(t, cli)
	ctx := t.Context()
	createTenants(t, s, "acme", "beta", "mallory")
	legacy, clash := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
	mtlsRecord(t, cli, s, "acme", authz.NewID(), legacy)
	mtlsRecord(t, cli, s, "acme", authz.NewID(), clash)
	mtlsRecord(t, cli, s, "beta", authz.NewID(), clash)
	// An identity registered through the index, then its record removed
	// behind the index's back: its owner key is stale.
	gone, err := s.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: "beta", FingerprintSHA256: strings.Repeat("c3", 32)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, strings.TrimSuffix(s.Key("x"), "tenants/x")+"mtls/beta/"+gone.ID); err != nil {
		t.Fatal(err)
	}

	rep, err := s.ReconcileOwners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (tenant.OwnersReport{Indexed: 1, Conflicts: 1, Stale: 1}) {
		t.Fatalf("first run: %+v", rep)
	}
	for _, fp := range []string{legacy, clash} {
		_, err := s.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: "mallory", FingerprintSHA256: fp})
		wantTaken(t, "after reconcile "+fp[:4], err, "acme")
	}
	if rep, err := s.ReconcileOwners(ctx); err != nil || rep != (tenant.OwnersReport{}) {
		t.Fatalf("second run: %+v, %v", rep, err)
	}
}
