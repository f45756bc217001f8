package tenant_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
)

func caps(t *testing.T, ss ...string) authz.Capabilities {
	t.Helper()
	c, err := authz.ParseCapabilities(ss)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ecPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestEtcdTenantCreate ensures Create refuses a taken ID and negative limits, and stores limits with the tenant.
func TestEtcdTenantCreate(t *testing.T) {
	s := newEtcd(t, testserver.EtcdClient(t, testserver.Etcd(t)))
	ctx := t.Context()
	a, err := s.Create(ctx, tenant.Tenant{ID: "acme", Limits: tenant.Limits{MaxConnections: 10, ReplayWindow: time.Hour}})
	if err != nil || a.Revision == 0 || a.CreatedAt.IsZero() {
		t.Fatalf("Create = %+v, %v", a, err)
	}
	if _, err := s.Create(ctx, tenant.Tenant{ID: "acme"}); !errors.Is(err, tenant.ErrAlreadyExists) {
		t.Fatalf("second Create = %v, want ErrAlreadyExists", err)
	}
	if _, err := s.Create(ctx, tenant.Tenant{ID: "neg", Limits: tenant.Limits{MaxPayloadBytes: -1}}); !errors.Is(err, tenant.ErrInvalid) {
		t.Fatalf("negative limit = %v, want ErrInvalid", err)
	}
	if _, err := s.Put(ctx, tenant.Tenant{ID: "neg", Limits: tenant.Limits{MaxSessions: -1}}); !errors.Is(err, tenant.ErrInvalid) {
		t.Fatalf("Put with a negative limit = %v, want ErrInvalid", err)
	}
	got, err := s.Get(ctx, "acme")
	if err != nil || got.Limits != a.Limits {
		t.Fatalf("Get = %+v, %v; want limits %+v", got, err, a.Limits)
	}
}

// TestEtcdAPIKeys ensures API keys are created only in existing tenants, read, paged, updated with revision checks and revoked, stored as JSON at keys/<tenant>/<id> with capabilities as strings.
func TestEtcdAPIKeys(t *testing.T) {
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	s := newEtcd(t, cli)
	ctx := t.Context()
	if _, err := s.Create(ctx, tenant.Tenant{ID: "acme"}); err != nil {
		t.Fatal(err)
	}
	newKey := func(tn string) tenant.APIKey {
		return tenant.APIKey{ID: authz.NewID(), Tenant: tn, Hash: "$argon2id$stub", Capabilities: caps(t, "publish:sensors/#")}
	}
	if _, err := s.CreateAPIKey(ctx, newKey("nobody")); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("key in a missing tenant: %v", err)
	}
	bad := newKey("acme")
	bad.ID = "Not-An-ID"
	if _, err := s.CreateAPIKey(ctx, bad); !errors.Is(err, tenant.ErrInvalid) {
		t.Fatalf("bad id: %v", err)
	}
	var ids []string
	var first tenant.APIKey
	for i := range 3 {
		k, err := s.CreateAPIKey(ctx, newKey("acme"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = k
		}
		ids = append(ids, k.ID)
	}
	slices.Sort(ids)
	if _, err := s.CreateAPIKey(ctx, first); !errors.Is(err, tenant.ErrAlreadyExists) {
		t.Fatalf("duplicate key: %v", err)
	}

	raw, err := cli.Get(ctx, s.Key("x")[:len(s.Key("x"))-len("tenants/x")]+"keys/acme/"+first.ID)
	if err != nil || len(raw.Kvs) != 1 {
		t.Fatalf("raw key: %v %v", raw, err)
	}
	var stored map[string]any
	json.Unmarshal(raw.Kvs[0].Value, &stored)
	if stored["hash"] != "$argon2id$stub" || stored["tenant"] != "acme" || stored["capabilities"].([]any)[0] != "publish:sensors/#" {
		t.Fatalf("stored %s", raw.Kvs[0].Value)
	}

	got, err := s.GetAPIKey(ctx, "acme", first.ID)
	if err != nil || got.Revision != first.Revision || got.Hash != first.Hash || !got.CreatedAt.Equal(first.CreatedAt) {
		t.Fatalf("Get = %+v, %v; want %+v", got, err, first)
	}
	var listed []string
	for token := ""; ; {
		page, next, err := s.ListAPIKeys(ctx, "acme", 2, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range page {
			listed = append(listed, k.ID)
		}
		if token = next; token == "" {
			break
		}
	}
	if !slices.Equal(listed, ids) {
		t.Fatalf("listed %v, want %v", listed, ids)
	}
	if _, _, err := s.ListAPIKeys(ctx, "nobody", 0, ""); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("list of a missing tenant: %v", err)
	}

	upd := got
	upd.Capabilities = caps(t, "subscribe:sensors/+")
	v2, err := s.UpdateAPIKey(ctx, upd)
	if err != nil || v2.Revision <= got.Revision {
		t.Fatalf("update: %+v %v", v2, err)
	}
	if _, err := s.UpdateAPIKey(ctx, upd); !errors.Is(err, tenant.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	if err := s.DeleteAPIKey(ctx, "acme", first.ID, got.Revision); !errors.Is(err, tenant.ErrConflict) {
		t.Fatalf("stale delete: %v", err)
	}
	if err := s.DeleteAPIKey(ctx, "acme", first.ID, v2.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAPIKey(ctx, "acme", first.ID); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("Get after revoke: %v", err)
	}
	if err := s.DeleteAPIKey(ctx, "acme", first.ID, 0); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
}

// TestJWTKeyValidate ensures JWT keys need a known algorithm and exactly the key material it takes, and that a JWKS URL is https and names no IP address of the edge itself or its link.
func TestJWTKeyValidate(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	pemKey := ecPEM(t)
	for _, c := range []struct {
		k  tenant.JWTKey
		ok bool
	}{
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "HS256", Secret: secret}, true},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "HS256", Secret: secret[:31]}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "HS256", Secret: secret, PublicKeyPEM: pemKey}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "ES256", PublicKeyPEM: pemKey}, true},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", PublicKeyPEM: pemKey}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "ES256", PublicKeyPEM: pemKey, Secret: secret}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://idp.example/jwks.json"}, true},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "http://idp.example/jwks.json"}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https:///jwks.json"}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://idp.example/" + strings.Repeat("a", tenant.MaxJWKSURL)}, false},
		// IP literals of the edge itself or its link are refused at once;
		// private addresses are the edges' to allow, host names theirs to
		// check once resolved.
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://127.0.0.1:8443/jwks"}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://[::1]/jwks"}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://[::ffff:127.0.0.1]/jwks"}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://169.254.169.254/latest/meta-data/"}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://[fe80::1%25eth0]/jwks"}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://0.0.0.0/jwks"}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://224.0.0.1/jwks"}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://10.1.2.3/jwks"}, true},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256", JWKSURL: "https://localhost:8443/jwks"}, true},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "RS256"}, false},
		{tenant.JWTKey{ID: "k1", Tenant: "acme", Algorithm: "none"}, false},
		{tenant.JWTKey{ID: "a/b", Tenant: "acme", Algorithm: "HS256", Secret: secret}, false},
	} {
		if err := c.k.Validate(); (err == nil) != c.ok {
			t.Errorf("Validate(%s %s %.60s) = %v, want ok=%v", c.k.ID, c.k.Algorithm, c.k.JWKSURL, err, c.ok)
		}
	}
}

// TestEtcdDeleteTenantCascades ensures deleting a tenant removes its keys, JWT keys, certificate identities and scoped admin keys in one step, and leaves other tenants' alone.
func TestEtcdDeleteTenantCascades(t *testing.T) {
	s := newEtcd(t, testserver.EtcdClient(t, testserver.Etcd(t)))
	ctx := t.Context()
	fill := func(id string) (tenant.APIKey, tenant.AdminKey) {
		if _, err := s.Create(ctx, tenant.Tenant{ID: id}); err != nil {
			t.Fatal(err)
		}
		k, err := s.CreateAPIKey(ctx, tenant.APIKey{ID: authz.NewID(), Tenant: id, Hash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateJWTKey(ctx, tenant.JWTKey{ID: "k-" + id, Tenant: id, Algorithm: "ES256", PublicKeyPEM: ecPEM(t)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{ID: authz.NewID(), Tenant: id, Subject: "CN=" + id}); err != nil {
			t.Fatal(err)
		}
		a, err := s.CreateAdminKey(ctx, tenant.AdminKey{ID: authz.NewID(), Tenant: id, Hash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		return k, a
	}
	_, adminA := fill("a")
	keyB, adminB := fill("b")
	op, err := s.CreateAdminKey(ctx, tenant.AdminKey{ID: authz.NewID(), Hash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	t0, _ := s.Get(ctx, "a")
	if err := s.DeleteAt(ctx, "a", t0.Revision-1); !errors.Is(err, tenant.ErrConflict) {
		t.Fatalf("stale delete: %v", err)
	}
	if err := s.DeleteAt(ctx, "a", t0.Revision); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ListAPIKeys(ctx, "a", 0, ""); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("keys of a deleted tenant: %v", err)
	}
	// Until its data is gone (FinishDelete), the id cannot be taken again.
	if deleting, err := s.IsDeleting(ctx, "a"); err != nil || !deleting {
		t.Fatalf("IsDeleting(a) = %v, %v", deleting, err)
	}
	if err := s.Delete(ctx, "a"); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("delete while deleting: %v, want ErrNotFound", err)
	}
	if _, err := s.Create(ctx, tenant.Tenant{ID: "a"}); !errors.Is(err, tenant.ErrDeleting) {
		t.Fatalf("create while deleting: %v, want ErrDeleting", err)
	}
	if _, err := s.Put(ctx, tenant.Tenant{ID: "a"}); !errors.Is(err, tenant.ErrDeleting) {
		t.Fatalf("put while deleting: %v, want ErrDeleting", err)
	}
	if ids, err := s.Deleting(ctx); err != nil || !slices.Equal(ids, []string{"a"}) {
		t.Fatalf("Deleting = %v, %v", ids, err)
	}
	if err := s.FinishDelete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, tenant.Tenant{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]func() int{
		"keys":  func() int { p, _, _ := s.ListAPIKeys(ctx, "a", 0, ""); return len(p) },
		"jwt":   func() int { p, _, _ := s.ListJWTKeys(ctx, "a", 0, ""); return len(p) },
		"mtls":  func() int { p, _, _ := s.ListMTLSIdentities(ctx, "a", 0, ""); return len(p) },
		"admin": func() int { p, _, _ := s.ListAdminKeys(ctx, "a", 0, ""); return len(p) },
	} {
		if got := n(); got != 0 {
			t.Errorf("recreated tenant a inherited %d %s", got, name)
		}
	}
	if _, err := s.GetAdminKey(ctx, adminA.ID); !errors.Is(err, tenant.ErrNotFound) {
		t.Errorf("admin key of a survived: %v", err)
	}
	for _, id := range []string{adminB.ID, op.ID} {
		if _, err := s.GetAdminKey(ctx, id); err != nil {
			t.Errorf("admin key %s: %v", id, err)
		}
	}
	if _, err := s.GetAPIKey(ctx, "b", keyB.ID); err != nil {
		t.Errorf("b's key: %v", err)
	}
	if err := s.Delete(ctx, "zz"); !errors.Is(err, tenant.ErrNotFound) {
		t.Errorf("delete missing: %v", err)
	}
}
