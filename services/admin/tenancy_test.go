package admin

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/tenant"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// scopedKey creates an admin key scoped to tenantID and returns its token.
func scopedKey(t *testing.T, f fixture, tenantID string) string {
	t.Helper()
	out := f.must(t, 200, "POST", "/v1/admin-keys", operatorToken, map[string]any{"tenant": tenantID})
	tok, _ := out["token"].(string)
	if !strings.HasPrefix(tok, "hak_") {
		t.Fatalf("admin key for %s: %v", tenantID, out)
	}
	return tok
}

// runDirectory runs an edge-side Directory over the fixture's etcd.
func runDirectory(t *testing.T, f fixture) *tenant.Directory {
	t.Helper()
	d := tenant.NewDirectory(f.store, tenant.DirectoryConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-d.Ready()
	return d
}

// waitUntil polls cond for up to 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}

// TestIdentityTakenAcrossTenants ensures a tenant-scoped admin cannot register another tenant's certificate fingerprint (in any spelling) or subject, nor its JWT key id or issuer: 409 without naming the holder, on both faces; the device's certificate still resolves to its owner at the edges; and the attacker cannot delete the owner's identity.
func TestIdentityTakenAcrossTenants(t *testing.T) {
	f := newFixture(t, Config{})
	for _, id := range []string{"acme", "mallory"} {
		f.must(t, 200, "POST", "/v1/tenants", operatorToken, map[string]any{"id": id})
	}
	acme, mallory := scopedKey(t, f, "acme"), scopedKey(t, f, "mallory")
	fp := strings.Repeat("5a", 32)
	owned := f.must(t, 200, "POST", "/v1/tenants/acme/mtls-identities", acme, map[string]any{"fingerprintSha256": fp, "subject": "CN=meter-7,O=ACME"})
	f.must(t, 200, "POST", "/v1/tenants/acme/jwt-keys", acme, map[string]any{"id": "k-7", "algorithm": "HS256", "issuer": "https://login.example/tenant-7"})

	colons := strings.ToUpper(strings.Join(strings.SplitAfterN(strings.Repeat("5a:", 32), ":", 32), ""))
	for _, c := range []struct {
		path string
		body map[string]any
	}{
		{"/v1/tenants/mallory/mtls-identities", map[string]any{"fingerprintSha256": fp}},
		{"/v1/tenants/mallory/mtls-identities", map[string]any{"fingerprintSha256": strings.TrimSuffix(colons, ":")}},
		{"/v1/tenants/mallory/mtls-identities", map[string]any{"subject": "CN=meter-7,O=ACME"}},
		{"/v1/tenants/mallory/jwt-keys", map[string]any{"id": "k-7", "algorithm": "HS256"}},
		{"/v1/tenants/mallory/jwt-keys", map[string]any{"id": "m1", "algorithm": "HS256", "issuer": "https://login.example/tenant-7"}},
	} {
		out := f.must(t, http.StatusConflict, "POST", c.path, mallory, c.body)
		if msg, _ := out["message"].(string); strings.Contains(msg, "acme") {
			t.Errorf("%v: the refusal names the holder: %s", c.body, msg)
		}
	}
	_, err := f.grpc(t, mallory).creds.CreateMtlsIdentity(t.Context(), &adminv1.CreateMtlsIdentityRequest{
		Identity: &adminv1.MtlsIdentity{Tenant: "mallory", FingerprintSha256: fp}})
	if status.Code(err) != codes.AlreadyExists || strings.Contains(err.Error(), "acme") {
		t.Fatalf("gRPC: %v, want ALREADY_EXISTS not naming the holder", err)
	}

	d := runDirectory(t, f)
	if m, ok := d.MTLSByFingerprint(fp); !ok || m.Tenant != "acme" {
		t.Fatalf("the device's fingerprint resolves to %+v, %v; want acme", m, ok)
	}
	if m, ok := d.MTLSBySubject("CN=meter-7,O=ACME"); !ok || m.Tenant != "acme" {
		t.Fatalf("the device's subject resolves to %+v, %v; want acme", m, ok)
	}
	id := owned["id"].(string)
	f.must(t, http.StatusNotFound, "DELETE", "/v1/tenants/mallory/mtls-identities/"+id, mallory, nil)
	f.must(t, http.StatusForbidden, "DELETE", "/v1/tenants/acme/mtls-identities/"+id, mallory, nil)
	f.must(t, 200, "GET", "/v1/tenants/acme/mtls-identities/"+id, acme, nil)
}

// TestTenantAdminCannotRaiseLimits ensures a tenant-scoped admin key may lower its tenant's limits and change its display name but never raise a limit — a higher value, or 0 (unlimited), or limits left out of a masked update — on both faces, while the operator may.
func TestTenantAdminCannotRaiseLimits(t *testing.T) {
	f := newFixture(t, Config{})
	f.must(t, 200, "POST", "/v1/tenants", operatorToken, map[string]any{"id": "acme",
		"limits": map[string]any{"maxConnections": "10", "maxPayloadBytes": "1000", "replayWindow": "3600s"}})
	tok := scopedKey(t, f, "acme")
	for _, body := range []map[string]any{
		{"limits": map[string]any{"maxConnections": "11"}},
		{"limits": map[string]any{"maxConnections": "0"}},
		{"limits": map[string]any{"replayWindow": "7200s"}},
		{"limits": map[string]any{"maxMessagesPerSecond": "5", "maxPayloadBytes": "2000"}},
		{"limits": nil},
	} {
		out := f.must(t, http.StatusForbidden, "PATCH", "/v1/tenants/acme", tok, body)
		if msg, _ := out["message"].(string); !strings.Contains(msg, "limits.") {
			t.Errorf("%v: the refusal does not name the field: %s", body, msg)
		}
	}
	got := f.must(t, 200, "GET", "/v1/tenants/acme", tok, nil)
	if l := got["limits"].(map[string]any); l["maxConnections"] != "10" || l["maxPayloadBytes"] != "1000" || l["replayWindow"] != "3600s" {
		t.Fatalf("limits after refused raises: %v", l)
	}
	// Lowering, and setting a limit the tenant did not have, is allowed.
	f.must(t, 200, "PATCH", "/v1/tenants/acme", tok, map[string]any{"displayName": "ACME", "limits": map[string]any{"maxConnections": "5", "maxMessagesPerSecond": "50"}})
	_, err := f.grpc(t, tok).tenants.UpdateTenant(t.Context(), &adminv1.UpdateTenantRequest{
		Tenant:     &adminv1.Tenant{Id: "acme", Limits: &adminv1.Limits{MaxConnections: 100}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"limits.max_connections"}},
	})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("gRPC raise: %v, want PERMISSION_DENIED", err)
	}
	f.must(t, 200, "PATCH", "/v1/tenants/acme", operatorToken, map[string]any{"limits": map[string]any{"maxConnections": "100"}})
}

// TestPresentedCredentialMustVerify ensures that in development mode (requests without a credential are the operator's) a presented token that does not verify is still 401, and that every 401 of the REST face carries the WWW-Authenticate challenge (error="invalid_token" when a token was presented).
func TestPresentedCredentialMustVerify(t *testing.T) {
	dev := newFixture(t, Config{Insecure: true})
	dev.must(t, 200, "GET", "/v1/tenants", "", nil)
	for _, auth := range []string{"Bearer nonsense", "Bearer hak_aaaaaaaaaaaaaaaa_nope", "Basic YTpi", "Bearer "} {
		req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+dev.addr+"/v1/tenants", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := `Bearer realm="herald-admin", error="invalid_token"`
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != want {
			t.Errorf("%q in development mode: %d, WWW-Authenticate %q; want 401 and %q", auth, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
		}
	}
	if _, err := dev.grpc(t, "nonsense").tenants.ListTenants(t.Context(), &adminv1.ListTenantsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC with a wrong token in development mode: %v", err)
	}

	f := newFixture(t, Config{})
	resp, err := http.Get("http://" + f.addr + "/v1/tenants")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer realm="herald-admin"` {
		t.Fatalf("no credential: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// TestPublishPayloadLimit ensures a server-side publish obeys the tenant's payload limit as a client's publish does (and the edges' default bound when the tenant sets none): refused, and nothing stored.
func TestPublishPayloadLimit(t *testing.T) {
	f := newLiveFixture(t)
	f.must(t, 200, "PATCH", "/v1/tenants/acme", operatorToken, map[string]any{"limits": map[string]any{"maxPayloadBytes": "100"}})
	payload := func(n int) string { return base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", n))) }
	f.must(t, 400, "POST", "/v1/tenants/acme/publish", operatorToken, map[string]any{"topic": "a", "payload": payload(101)})
	f.must(t, 400, "POST", "/v1/tenants/beta/publish", operatorToken, map[string]any{"topic": "a", "payload": payload(DefaultMaxPayload + 1)})
	f.must(t, 200, "POST", "/v1/tenants/acme/publish", operatorToken, map[string]any{"topic": "a", "payload": payload(100)})
	if st, err := f.bb.State(t.Context(), "acme"); err != nil || st.LastSeq != 1 {
		t.Fatalf("acme's stream after one accepted publish: %+v, %v", st, err)
	}
	if _, err := f.bb.State(t.Context(), "beta"); !errors.Is(err, backbone.ErrNoStream) {
		t.Fatalf("beta's stream after a refused publish: %v", err)
	}
}

// flakyStore fails DeleteTenant while failing is set, as a Redis that is
// down would.
type flakyStore struct {
	store.Store
	failing atomic.Bool
}

func (s *flakyStore) DeleteTenant(ctx context.Context, tenantID string) error {
	if s.failing.Load() {
		return errors.New("store unreachable")
	}
	return s.Store.DeleteTenant(ctx, tenantID)
}

// TestDeleteTenantDeletesData ensures deleting a tenant removes its stream, retained messages, replay buffer and sessions and leaves other tenants' alone; that a failed step leaves the tenant marked as being deleted (gone, and not creatable again: 409) until a retry — DeleteTenant again, or the background — finishes it; and that the tenant created again starts empty, under a new epoch.
func TestDeleteTenantDeletesData(t *testing.T) {
	st, bb, nc := dataPlaneConn(t)
	flaky := &flakyStore{Store: st}
	f := liveFixture{newFixture(t, Config{DeletionRetry: 100 * time.Millisecond}, WithStore(flaky), WithBackbone(bb)), st, bb, nc}
	ctx := t.Context()
	for _, id := range []string{"acme", "beta"} {
		f.must(t, 200, "POST", "/v1/tenants", operatorToken, map[string]any{"id": id})
		f.must(t, 200, "POST", "/v1/tenants/"+id+"/publish", operatorToken, map[string]any{"topic": "r", "payload": "c2VjcmV0", "retain": true})
		f.applyStream(t, id)
		if err := st.SaveSession(ctx, id, &store.Session{ClientID: "device"}, store.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	old, err := bb.Epoch(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}

	// A failing step: the tenant is gone and cannot be created again
	// until its data is.
	flaky.failing.Store(true)
	f.must(t, http.StatusServiceUnavailable, "DELETE", "/v1/tenants/acme", operatorToken, nil)
	f.must(t, http.StatusNotFound, "GET", "/v1/tenants/acme", operatorToken, nil)
	out := f.must(t, http.StatusConflict, "POST", "/v1/tenants", operatorToken, map[string]any{"id": "acme"})
	if msg, _ := out["message"].(string); !strings.Contains(msg, "being deleted") {
		t.Fatalf("create while deleting: %s", msg)
	}
	f.must(t, http.StatusServiceUnavailable, "DELETE", "/v1/tenants/acme", operatorToken, nil)
	// The background retry finishes it once the store is back.
	flaky.failing.Store(false)
	waitUntil(t, "deletion finished", func() bool {
		deleting, err := f.store.IsDeleting(ctx, "acme")
		return err == nil && !deleting
	})
	f.must(t, http.StatusNotFound, "DELETE", "/v1/tenants/acme", operatorToken, nil)

	if _, err := bb.State(ctx, "acme"); !errors.Is(err, backbone.ErrNoStream) {
		t.Fatalf("acme's stream after delete: %v", err)
	}
	if rs, err := st.State(ctx, "acme"); err != nil || rs != (store.ReplayState{}) {
		t.Fatalf("acme's state after delete: %+v, %v", rs, err)
	}
	if msgs, err := st.Retained(ctx, "acme", "#"); err != nil || len(msgs) != 0 {
		t.Fatalf("acme's retained after delete: %d, %v", len(msgs), err)
	}
	if n, err := st.CountSessions(ctx, "acme"); err != nil || n != 0 {
		t.Fatalf("acme's sessions after delete: %d, %v", n, err)
	}
	if msgs, err := st.Retained(ctx, "beta", "#"); err != nil || len(msgs) != 1 {
		t.Fatalf("beta's retained after deleting acme: %d, %v", len(msgs), err)
	}
	if n, _ := st.CountSessions(ctx, "beta"); n != 1 {
		t.Fatalf("beta's sessions after deleting acme: %d", n)
	}

	// Created again: empty, a new epoch.
	f.must(t, 200, "POST", "/v1/tenants", operatorToken, map[string]any{"id": "acme"})
	f.must(t, http.StatusNotFound, "GET", "/v1/tenants/acme/retained/r", operatorToken, nil)
	pos := f.must(t, 200, "POST", "/v1/tenants/acme/publish", operatorToken, map[string]any{"topic": "n", "payload": "bmV3"})
	p, err := message.ParsePosition(pos["position"].(string))
	if err != nil || p.Seq != 1 || p.Epoch == old {
		t.Fatalf("first position of the new acme %v (%v); the old epoch was %s", p, err, old)
	}
	usage := f.must(t, 200, "GET", "/v1/tenants/acme/usage", operatorToken, nil)
	if fmt.Sprint(usage["sessions"]) != "0" || fmt.Sprint(usage["retainedMessages"]) != "0" {
		t.Fatalf("usage of the new acme: %v", usage)
	}
}
