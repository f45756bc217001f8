package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// operatorToken is the fixture's operator token.
const operatorToken = "operator-secret-for-tests"

// fixture is a running admin server over a fresh etcd.
type fixture struct {
	addr  string
	store *tenant.Etcd
}

func start(t *testing.T, cfg Config, src *tenant.Etcd, opts ...Option) string {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	s, err := New(cfg, src, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	addr := s.Addr()
	if addr == "" {
		t.Fatal("server did not listen")
	}
	return addr
}

func newFixture(t *testing.T, cfg Config, opts ...Option) fixture {
	t.Helper()
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	src, err := tenant.NewEtcd(cli, tenant.EtcdConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminToken == "" && cfg.AdminTokenHash == "" && !cfg.Insecure {
		cfg.AdminToken = operatorToken
	}
	return fixture{addr: start(t, cfg, src, opts...), store: src}
}

// clients are the gRPC stubs of one connection presenting one token.
type clients struct {
	tenants adminv1.TenantServiceClient
	creds   adminv1.CredentialServiceClient
	admin   adminv1.AdminKeyServiceClient
	live    adminv1.LiveServiceClient
}

func (f fixture) grpc(t *testing.T, token string) clients {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), method, req, reply, cc, opts...)
		}))
	}
	conn, err := grpc.NewClient(f.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clients{adminv1.NewTenantServiceClient(conn), adminv1.NewCredentialServiceClient(conn), adminv1.NewAdminKeyServiceClient(conn), adminv1.NewLiveServiceClient(conn)}
}

// do sends one plain HTTP/1.1 request with a JSON body (if not nil) and the
// bearer token (if not empty), and returns the status and decoded body.
func (f fixture) do(t *testing.T, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+f.addr+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	} else {
		out["raw"] = string(raw)
	}
	return resp.StatusCode, out
}

// must is do that fails the test unless the status is want.
func (f fixture) must(t *testing.T, want int, method, path, token string, body any) map[string]any {
	t.Helper()
	code, out := f.do(t, method, path, token, body)
	if code != want {
		t.Fatalf("%s %s: status %d, want %d: %v", method, path, code, want, out)
	}
	if code >= 400 {
		if _, ok := out["code"]; !ok || out["message"] == "" {
			t.Fatalf("%s %s: error body %v is not a JSON status", method, path, out)
		}
	}
	return out
}

// TestRESTLifecycle ensures a tenant, its limits, API keys, capabilities, JWT keys and certificate identities go through create, get, paged list, masked update with etag conflicts, revoke and delete over plain HTTP.
func TestRESTLifecycle(t *testing.T) {
	f := newFixture(t, Config{}, wired(t)...)
	op := operatorToken

	// Tenants.
	for _, id := range []string{"acme", "beta", "zeta"} {
		created := f.must(t, 200, "POST", "/v1/tenants", op, map[string]any{"id": id, "displayName": "T " + id, "limits": map[string]any{"maxConnections": "10"}})
		if created["id"] != id || created["revision"] == "" || created["createTime"] == nil {
			t.Fatalf("created %v", created)
		}
	}
	f.must(t, 409, "POST", "/v1/tenants", op, map[string]any{"id": "acme"})
	f.must(t, 400, "POST", "/v1/tenants", op, map[string]any{"id": "Bad.Id"})
	f.must(t, 400, "POST", "/v1/tenants", op, map[string]any{"id": "neg", "limits": map[string]any{"maxSessions": "-1"}})
	got := f.must(t, 200, "GET", "/v1/tenants/acme", op, nil)
	if got["displayName"] != "T acme" || got["limits"].(map[string]any)["maxConnections"] != "10" {
		t.Fatalf("got %v", got)
	}
	var ids []string
	for path := "/v1/tenants?page_size=2"; ; {
		page := f.must(t, 200, "GET", path, op, nil)
		for _, tn := range page["tenants"].([]any) {
			ids = append(ids, tn.(map[string]any)["id"].(string))
		}
		next, _ := page["nextPageToken"].(string)
		if next == "" {
			break
		}
		path = "/v1/tenants?page_size=2&page_token=" + next
	}
	if fmt.Sprint(ids) != "[acme beta zeta]" {
		t.Fatalf("listed %v", ids)
	}
	f.must(t, 400, "GET", "/v1/tenants?page_size=-1", op, nil)
	f.must(t, 404, "GET", "/v1/tenants/nobody", op, nil)

	// PATCH: the gateway derives the mask from the body; only the sent
	// limit changes, the rest stays.
	rev := got["revision"].(string)
	upd := f.must(t, 200, "PATCH", "/v1/tenants/acme", op, map[string]any{"limits": map[string]any{"maxPayloadBytes": "4096"}, "revision": rev})
	lim := upd["limits"].(map[string]any)
	if lim["maxPayloadBytes"] != "4096" || lim["maxConnections"] != "10" || upd["displayName"] != "T acme" || upd["revision"] == rev {
		t.Fatalf("after PATCH: %v", upd)
	}
	// The old revision is stale now: 409, and nothing changes.
	f.must(t, 409, "PATCH", "/v1/tenants/acme", op, map[string]any{"displayName": "lost", "revision": rev})
	f.must(t, 400, "PATCH", "/v1/tenants/acme", op, map[string]any{"createTime": "2020-01-01T00:00:00Z"})
	if got := f.must(t, 200, "GET", "/v1/tenants/acme", op, nil); got["displayName"] != "T acme" {
		t.Fatalf("conflicting PATCH changed %v", got)
	}

	// API keys: the token once, capabilities as sent.
	key := f.must(t, 200, "POST", "/v1/tenants/acme/keys", op, map[string]any{
		"description":  "sensor fleet",
		"capabilities": []any{map[string]any{"filter": "sensors/#", "actions": []string{"ACTION_PUBLISH", "ACTION_SUBSCRIBE"}}},
	})
	token := key["token"].(string)
	k := key["key"].(map[string]any)
	keyID := k["id"].(string)
	if id, secret, err := authz.ParseToken(authz.KindAPIKey, token); err != nil || id != keyID || secret == "" {
		t.Fatalf("token %q for key %v: %v", token, k, err)
	}
	_, secret, _ := authz.ParseToken(authz.KindAPIKey, token)
	stored, err := f.store.GetAPIKey(t.Context(), "acme", keyID)
	if err != nil || !strings.HasPrefix(stored.Hash, "$argon2id$") || authz.VerifySecret(secret, stored.Hash) != nil {
		t.Fatalf("stored hash %q does not verify the token: %v", stored.Hash, err)
	}
	f.must(t, 400, "POST", "/v1/tenants/acme/keys", op, map[string]any{"capabilities": []any{map[string]any{"filter": "a/#/b", "actions": []string{"ACTION_PUBLISH"}}}})
	f.must(t, 404, "POST", "/v1/tenants/nobody/keys", op, map[string]any{})
	read := f.must(t, 200, "GET", "/v1/tenants/acme/keys/"+keyID, op, nil)
	if _, leaked := read["token"]; leaked || read["description"] != "sensor fleet" {
		t.Fatalf("get key: %v", read)
	}
	for _, field := range []string{"hash", "secret"} {
		if _, ok := read[field]; ok {
			t.Fatalf("key exposes %s: %v", field, read)
		}
	}
	f.must(t, 200, "POST", "/v1/tenants/acme/keys", op, map[string]any{"description": "second"})
	keys := f.must(t, 200, "GET", "/v1/tenants/acme/keys?page_size=1", op, nil)
	if len(keys["keys"].([]any)) != 1 || keys["nextPageToken"] == nil {
		t.Fatalf("key page: %v", keys)
	}
	kupd := f.must(t, 200, "PATCH", "/v1/tenants/acme/keys/"+keyID, op, map[string]any{
		"capabilities": []any{map[string]any{"filter": "sensors/+/temp", "actions": []string{"ACTION_SUBSCRIBE"}}},
		"revision":     read["revision"],
	})
	if caps := kupd["capabilities"].([]any); len(caps) != 1 || caps[0].(map[string]any)["filter"] != "sensors/+/temp" || kupd["description"] != "sensor fleet" {
		t.Fatalf("updated key: %v", kupd)
	}
	f.must(t, 409, "PATCH", "/v1/tenants/acme/keys/"+keyID, op, map[string]any{"description": "x", "revision": read["revision"]})
	f.must(t, 409, "DELETE", "/v1/tenants/acme/keys/"+keyID+"?revision="+read["revision"].(string), op, nil)
	f.must(t, 200, "DELETE", "/v1/tenants/acme/keys/"+keyID, op, nil)
	f.must(t, 404, "GET", "/v1/tenants/acme/keys/"+keyID, op, nil)

	// JWT keys: a generated HMAC secret is shown once, never read back.
	jk := f.must(t, 200, "POST", "/v1/tenants/acme/jwt-keys", op, map[string]any{"id": "hmac-1", "algorithm": "HS256", "issuer": "https://idp.example"})
	if jk["generatedHmacSecret"] == "" || jk["key"].(map[string]any)["hmacSecret"] != "" {
		t.Fatalf("create JWT key: %v", jk)
	}
	f.must(t, 409, "POST", "/v1/tenants/acme/jwt-keys", op, map[string]any{"id": "hmac-1", "algorithm": "HS256"})
	f.must(t, 400, "POST", "/v1/tenants/acme/jwt-keys", op, map[string]any{"id": "rsa", "algorithm": "RS256"})
	f.must(t, 400, "POST", "/v1/tenants/acme/jwt-keys", op, map[string]any{"id": "short", "algorithm": "HS256", "hmacSecret": "c2hvcnQ="})
	f.must(t, 200, "POST", "/v1/tenants/acme/jwt-keys", op, map[string]any{"id": "jwks", "algorithm": "RS256", "jwksUrl": "https://idp.example/jwks"})
	if list := f.must(t, 200, "GET", "/v1/tenants/acme/jwt-keys", op, nil); len(list["keys"].([]any)) != 2 {
		t.Fatalf("JWT keys: %v", list)
	}
	if g := f.must(t, 200, "GET", "/v1/tenants/acme/jwt-keys/hmac-1", op, nil); g["hmacSecret"] != "" || g["issuer"] != "https://idp.example" {
		t.Fatalf("JWT key: %v", g)
	}
	f.must(t, 200, "DELETE", "/v1/tenants/acme/jwt-keys/hmac-1", op, nil)
	f.must(t, 404, "GET", "/v1/tenants/acme/jwt-keys/hmac-1", op, nil)

	// Certificate identities.
	m := f.must(t, 200, "POST", "/v1/tenants/acme/mtls-identities", op, map[string]any{
		"fingerprintSha256": strings.ToUpper(strings.Repeat("ab:", 31)) + "AB", "subject": "CN=device-1",
		"capabilities": []any{map[string]any{"filter": "devices/1/#", "actions": []string{"ACTION_PUBLISH"}}},
	})
	if m["fingerprintSha256"] != strings.Repeat("ab", 32) {
		t.Fatalf("identity: %v", m)
	}
	f.must(t, 200, "GET", "/v1/tenants/acme/mtls-identities/"+m["id"].(string), op, nil)
	f.must(t, 400, "POST", "/v1/tenants/acme/mtls-identities", op, map[string]any{"description": "matches nothing"})
	f.must(t, 200, "DELETE", "/v1/tenants/acme/mtls-identities/"+m["id"].(string), op, nil)

	// Deleting the tenant takes its credentials along.
	f.must(t, 200, "POST", "/v1/tenants/beta/keys", op, map[string]any{})
	f.must(t, 409, "DELETE", "/v1/tenants/beta?revision=1", op, nil)
	f.must(t, 200, "DELETE", "/v1/tenants/beta", op, nil)
	f.must(t, 404, "GET", "/v1/tenants/beta", op, nil)
	f.must(t, 404, "GET", "/v1/tenants/beta/keys", op, nil)
	f.must(t, 404, "DELETE", "/v1/tenants/beta", op, nil)
}

// TestGRPCLifecycle ensures the same lifecycle through the gRPC face: codes for conflicts, field masks, pagination and revocation.
func TestGRPCLifecycle(t *testing.T) {
	f := newFixture(t, Config{}, wired(t)...)
	c := f.grpc(t, operatorToken)
	ctx := t.Context()
	tn, err := c.tenants.CreateTenant(ctx, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Id: "acme", DisplayName: "ACME"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.tenants.CreateTenant(ctx, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Id: "acme"}}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := c.tenants.CreateTenant(ctx, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Id: "other"}}); err != nil {
		t.Fatal(err)
	}
	page, err := c.tenants.ListTenants(ctx, &adminv1.ListTenantsRequest{PageSize: 1})
	if err != nil || len(page.GetTenants()) != 1 || page.GetTenants()[0].GetId() != "acme" || page.GetNextPageToken() == "" {
		t.Fatalf("page 1: %v %v", page, err)
	}
	page, err = c.tenants.ListTenants(ctx, &adminv1.ListTenantsRequest{PageSize: 1, PageToken: page.GetNextPageToken()})
	if err != nil || len(page.GetTenants()) != 1 || page.GetTenants()[0].GetId() != "other" || page.GetNextPageToken() != "" {
		t.Fatalf("page 2: %v %v", page, err)
	}

	// A masked update changes only the named limit, even though the
	// request carries other values.
	up, err := c.tenants.UpdateTenant(ctx, &adminv1.UpdateTenantRequest{
		Tenant:     &adminv1.Tenant{Id: "acme", DisplayName: "ignored", Revision: tn.GetRevision(), Limits: &adminv1.Limits{MaxConnections: 3, MaxSessions: 99}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"limits.max_connections"}},
	})
	if err != nil || up.GetLimits().GetMaxConnections() != 3 || up.GetLimits().GetMaxSessions() != 0 || up.GetDisplayName() != "ACME" {
		t.Fatalf("update: %v %v", up, err)
	}
	if _, err := c.tenants.UpdateTenant(ctx, &adminv1.UpdateTenantRequest{Tenant: &adminv1.Tenant{Id: "acme", DisplayName: "x", Revision: tn.GetRevision()}}); status.Code(err) != codes.Aborted {
		t.Fatalf("stale update: %v", err)
	}
	if _, err := c.tenants.UpdateTenant(ctx, &adminv1.UpdateTenantRequest{Tenant: &adminv1.Tenant{Id: "acme"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"create_time"}}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("masking an output-only field: %v", err)
	}
	// An empty mask replaces every mutable field.
	full, err := c.tenants.UpdateTenant(ctx, &adminv1.UpdateTenantRequest{Tenant: &adminv1.Tenant{Id: "acme", DisplayName: "Acme", Limits: &adminv1.Limits{ReplayWindow: durationpb.New(time.Hour)}}})
	if err != nil || full.GetDisplayName() != "Acme" || full.GetLimits().GetMaxConnections() != 0 || full.GetLimits().GetReplayWindow().AsDuration() != time.Hour {
		t.Fatalf("full update: %v %v", full, err)
	}

	created, err := c.creds.CreateApiKey(ctx, &adminv1.CreateApiKeyRequest{Tenant: "acme", Capabilities: []*adminv1.Capability{{Filter: "a/#", Actions: []adminv1.Action{adminv1.Action_ACTION_PUBLISH}}}})
	if err != nil || !strings.HasPrefix(created.GetToken(), "hk_"+created.GetKey().GetId()+"_") {
		t.Fatalf("create key: %v %v", created, err)
	}
	if _, err := c.creds.CreateApiKey(ctx, &adminv1.CreateApiKeyRequest{Tenant: "acme", Capabilities: []*adminv1.Capability{{Filter: "a/#"}}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("capability without actions: %v", err)
	}
	k, err := c.creds.UpdateApiKey(ctx, &adminv1.UpdateApiKeyRequest{
		Key:        &adminv1.ApiKey{Tenant: "acme", Id: created.GetKey().GetId(), Description: "renamed"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}},
	})
	if err != nil || k.GetDescription() != "renamed" || len(k.GetCapabilities()) != 1 {
		t.Fatalf("update key: %v %v", k, err)
	}
	list, err := c.creds.ListApiKeys(ctx, &adminv1.ListApiKeysRequest{Tenant: "acme"})
	if err != nil || len(list.GetKeys()) != 1 {
		t.Fatalf("list keys: %v %v", list, err)
	}
	if _, err := c.creds.RevokeApiKey(ctx, &adminv1.RevokeApiKeyRequest{Tenant: "acme", Id: k.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.creds.GetApiKey(ctx, &adminv1.GetApiKeyRequest{Tenant: "acme", Id: k.GetId()}); status.Code(err) != codes.NotFound {
		t.Fatalf("revoked key: %v", err)
	}
	if _, err := c.tenants.DeleteTenant(ctx, &adminv1.DeleteTenantRequest{Id: "acme", Revision: tn.GetRevision()}); status.Code(err) != codes.Aborted {
		t.Fatalf("stale delete: %v", err)
	}
	if _, err := c.tenants.DeleteTenant(ctx, &adminv1.DeleteTenantRequest{Id: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.tenants.GetTenant(ctx, &adminv1.GetTenantRequest{Id: "acme"}); status.Code(err) != codes.NotFound {
		t.Fatalf("deleted tenant: %v", err)
	}
}

// TestAuthentication ensures requests without a valid credential get 401 / UNAUTHENTICATED, that operator tokens work plain or as an argon2id hash, and that insecure mode admits anonymous requests.
func TestAuthentication(t *testing.T) {
	f := newFixture(t, Config{})
	code, body := f.do(t, "GET", "/v1/tenants", "", nil)
	if code != http.StatusUnauthorized || body["code"] != float64(codes.Unauthenticated) {
		t.Fatalf("no token: %d %v", code, body)
	}
	f.must(t, 401, "GET", "/v1/tenants", "wrong", nil)
	f.must(t, 401, "GET", "/v1/tenants", "hak_aaaaaaaaaaaaaaaa_nope", nil)
	f.must(t, 401, "GET", "/v1/tenants", "hak_garbage", nil)
	f.must(t, 200, "GET", "/v1/tenants", operatorToken, nil)
	if _, err := f.grpc(t, "").tenants.ListTenants(t.Context(), &adminv1.ListTenantsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC without token: %v", err)
	}
	if _, err := f.grpc(t, "wrong").tenants.ListTenants(t.Context(), &adminv1.ListTenantsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC with a wrong token: %v", err)
	}
	// Health and the API description stay open.
	for _, path := range []string{"/healthz", "/readyz", "/openapi.json"} {
		f.must(t, 200, "GET", path, "", nil)
	}

	hashed := newFixture(t, Config{OperatorConfig: OperatorConfig{AdminTokenHash: authz.HashSecret("from-hash", authz.DefaultArgon2)}})
	hashed.must(t, 200, "GET", "/v1/tenants", "from-hash", nil)
	hashed.must(t, 401, "GET", "/v1/tenants", "from-hasH", nil)

	dev := newFixture(t, Config{Insecure: true})
	dev.must(t, 200, "POST", "/v1/tenants", "", map[string]any{"id": "dev"})
	if _, err := dev.grpc(t, "").tenants.GetTenant(t.Context(), &adminv1.GetTenantRequest{Id: "dev"}); err != nil {
		t.Fatalf("insecure gRPC: %v", err)
	}
}

// TestTenantScopedAdminKeys ensures an admin key scoped to tenant A reads and changes A only: B answers 403 / PERMISSION_DENIED on both faces, operator-only calls are refused, and a revoked admin key stops working at once.
func TestTenantScopedAdminKeys(t *testing.T) {
	f := newFixture(t, Config{})
	op := f.grpc(t, operatorToken)
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if _, err := op.tenants.CreateTenant(ctx, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Id: id}}); err != nil {
			t.Fatal(err)
		}
	}
	bKey, err := op.creds.CreateApiKey(ctx, &adminv1.CreateApiKeyRequest{Tenant: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.admin.CreateAdminKey(ctx, &adminv1.CreateAdminKeyRequest{Tenant: "nobody"}); status.Code(err) != codes.NotFound {
		t.Fatalf("admin key for a missing tenant: %v", err)
	}
	ak, err := op.admin.CreateAdminKey(ctx, &adminv1.CreateAdminKeyRequest{Tenant: "a", Description: "team a"})
	if err != nil || !strings.HasPrefix(ak.GetToken(), "hak_") {
		t.Fatalf("admin key: %v %v", ak, err)
	}
	aTok := ak.GetToken()

	// REST: own tenant yes, other tenant 403.
	f.must(t, 200, "GET", "/v1/tenants/a", aTok, nil)
	f.must(t, 200, "PATCH", "/v1/tenants/a", aTok, map[string]any{"displayName": "Team A"})
	f.must(t, 200, "POST", "/v1/tenants/a/keys", aTok, map[string]any{})
	for _, req := range []struct{ method, path string }{
		{"GET", "/v1/tenants/b"},
		{"PATCH", "/v1/tenants/b"},
		{"DELETE", "/v1/tenants/b"},
		{"GET", "/v1/tenants/b/keys"},
		{"GET", "/v1/tenants/b/keys/" + bKey.GetKey().GetId()},
		{"DELETE", "/v1/tenants/b/keys/" + bKey.GetKey().GetId()},
		{"POST", "/v1/tenants/b/keys"},
		{"GET", "/v1/tenants/b/jwt-keys"},
		{"GET", "/v1/tenants/b/mtls-identities"},
		{"GET", "/v1/tenants/b/connections"},
		{"POST", "/v1/tenants/b/publish"},
		{"POST", "/v1/tenants"},
		{"DELETE", "/v1/tenants/a"},
		{"GET", "/v1/admin-keys"},
		{"POST", "/v1/admin-keys"},
	} {
		var body any
		if req.method == "POST" || req.method == "PATCH" {
			body = map[string]any{"id": "c"}
		}
		f.must(t, http.StatusForbidden, req.method, req.path, aTok, body)
	}
	list := f.must(t, 200, "GET", "/v1/tenants", aTok, nil)
	if ts := list["tenants"].([]any); len(ts) != 1 || ts[0].(map[string]any)["id"] != "a" {
		t.Fatalf("scoped list: %v", list)
	}

	// gRPC: the same.
	a := f.grpc(t, aTok)
	if _, err := a.tenants.GetTenant(ctx, &adminv1.GetTenantRequest{Id: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.tenants.GetTenant(ctx, &adminv1.GetTenantRequest{Id: "b"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("gRPC read of b: %v", err)
	}
	if _, err := a.creds.RevokeApiKey(ctx, &adminv1.RevokeApiKeyRequest{Tenant: "b", Id: bKey.GetKey().GetId()}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("gRPC revoke in b: %v", err)
	}
	if _, err := op.creds.GetApiKey(ctx, &adminv1.GetApiKeyRequest{Tenant: "b", Id: bKey.GetKey().GetId()}); err != nil {
		t.Fatalf("b's key after the refused revoke: %v", err)
	}

	keys, err := op.admin.ListAdminKeys(ctx, &adminv1.ListAdminKeysRequest{Tenant: "a"})
	if err != nil || len(keys.GetKeys()) != 1 || keys.GetKeys()[0].GetDescription() != "team a" {
		t.Fatalf("admin keys: %v %v", keys, err)
	}
	if _, err := op.admin.DeleteAdminKey(ctx, &adminv1.DeleteAdminKeyRequest{Id: ak.GetKey().GetId()}); err != nil {
		t.Fatal(err)
	}
	f.must(t, http.StatusUnauthorized, "GET", "/v1/tenants/a", aTok, nil)
}

// TestRevokeReachesDirectory ensures a key revoked through the REST API is gone from an edge-side tenant.Directory within 2 s, and a key created through gRPC appears there with its capabilities.
func TestRevokeReachesDirectory(t *testing.T) {
	f := newFixture(t, Config{})
	d := runDirectory(t, f)

	c := f.grpc(t, operatorToken)
	if _, err := c.tenants.CreateTenant(t.Context(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Id: "acme"}}); err != nil {
		t.Fatal(err)
	}
	created, err := c.creds.CreateApiKey(t.Context(), &adminv1.CreateApiKeyRequest{Tenant: "acme", Capabilities: []*adminv1.Capability{
		{Filter: "sensors/#", Actions: []adminv1.Action{adminv1.Action_ACTION_SUBSCRIBE}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetKey().GetId()
	waitUntil := func(what string, cond func() bool) time.Duration {
		start := time.Now()
		for !cond() {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("%s: not within 2 s", what)
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(start)
	}
	waitUntil("created key", func() bool { _, ok := d.APIKey(id); return ok })
	k, _ := d.APIKey(id)
	_, secret, _ := authz.ParseToken(authz.KindAPIKey, created.GetToken())
	if authz.VerifySecret(secret, k.Hash) != nil || !k.Capabilities.CanSubscribe("sensors/+") || k.Capabilities.CanSubscribe("#") {
		t.Fatalf("directory key %+v", k)
	}

	start := time.Now()
	f.must(t, 200, "DELETE", "/v1/tenants/acme/keys/"+id, operatorToken, nil)
	waitUntil("revoked key", func() bool { _, ok := d.APIKey(id); return !ok })
	t.Logf("revoked through REST; gone from the directory after %v", time.Since(start))
}

// TestLiveUnimplemented ensures the live-state calls check tenant access first, then answer UNIMPLEMENTED (HTTP 501) with a message saying what they need.
func TestLiveUnimplemented(t *testing.T) {
	f := newFixture(t, Config{})
	op := operatorToken
	for _, req := range []struct{ method, path string }{
		{"GET", "/v1/tenants/a/connections"},
		{"DELETE", "/v1/tenants/a/connections/c1"},
		{"GET", "/v1/tenants/a/sessions"},
		{"GET", "/v1/tenants/a/sessions/client-1"},
		{"DELETE", "/v1/tenants/a/sessions/client-1"},
		{"GET", "/v1/tenants/a/retained?filter=a/%23"},
		{"GET", "/v1/tenants/a/retained/sensors/x/temp"},
		{"DELETE", "/v1/tenants/a/retained/sensors/x"},
		{"POST", "/v1/tenants/a/publish"},
		{"GET", "/v1/tenants/a/usage"},
	} {
		var body any
		if req.method == "POST" {
			body = map[string]any{"topic": "a", "payload": "aGk="}
		}
		out := f.must(t, http.StatusNotImplemented, req.method, req.path, op, body)
		if !strings.Contains(out["message"].(string), "needs") {
			t.Errorf("%s %s: message %q", req.method, req.path, out["message"])
		}
	}
	if _, err := f.grpc(t, op).live.Publish(t.Context(), &adminv1.PublishRequest{Tenant: "a", Topic: "x"}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("gRPC Publish: %v", err)
	}
}

// TestOpenAPI ensures /openapi.json serves a Swagger 2.0 document listing the tenant, credential, admin-key and live routes.
func TestOpenAPI(t *testing.T) {
	f := newFixture(t, Config{})
	code, body := f.do(t, "GET", "/openapi.json", "", nil)
	if code != http.StatusOK || body["swagger"] != "2.0" {
		t.Fatalf("openapi: %d %v", code, body["swagger"])
	}
	paths := body["paths"].(map[string]any)
	for _, p := range []string{"/v1/tenants", "/v1/tenants/{id}", "/v1/tenants/{tenant.id}", "/v1/tenants/{tenant}/keys", "/v1/tenants/{key.tenant}/keys/{key.id}",
		"/v1/tenants/{key.tenant}/jwt-keys", "/v1/tenants/{identity.tenant}/mtls-identities", "/v1/admin-keys", "/v1/tenants/{tenant}/publish"} {
		if paths[p] == nil {
			t.Errorf("openapi lacks %s", p)
		}
	}
}

// unreachableEtcd returns a tenant store over an etcd nobody listens for.
func unreachableEtcd(t *testing.T) *tenant.Etcd {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	src, err := tenant.NewEtcd(cli, tenant.EtcdConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// TestStoreDown ensures /readyz answers 503 and requests fail Unavailable or DeadlineExceeded while etcd is unreachable, and /healthz still 200.
func TestStoreDown(t *testing.T) {
	src := unreachableEtcd(t)
	f := fixture{addr: start(t, Config{ReadyTimeout: 300 * time.Millisecond, OperatorConfig: OperatorConfig{AdminToken: operatorToken}}, src)}
	if code, _ := f.do(t, "GET", "/readyz", "", nil); code != http.StatusServiceUnavailable {
		t.Errorf("readyz %d, want 503", code)
	}
	f.must(t, http.StatusOK, "GET", "/healthz", "", nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := f.grpc(t, operatorToken).tenants.GetTenant(ctx, &adminv1.GetTenantRequest{Id: "dev"})
	if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
		t.Errorf("GetTenant: %v, want Unavailable or DeadlineExceeded", err)
	}
}

// TestGRPCError ensures each store and authz error maps to its gRPC code.
func TestGRPCError(t *testing.T) {
	errDown := status.Error(codes.Unavailable, "etcd down")
	for err, want := range map[error]codes.Code{
		tenant.ErrNotFound:                              codes.NotFound,
		fmt.Errorf("x: %w", tenant.ErrInvalidID):        codes.InvalidArgument,
		tenant.ErrInvalidPage:                           codes.InvalidArgument,
		tenant.ErrInvalid:                               codes.InvalidArgument,
		authz.ErrInvalidCapability:                      codes.InvalidArgument,
		tenant.ErrConflict:                              codes.Aborted,
		tenant.ErrAlreadyExists:                         codes.AlreadyExists,
		context.Canceled:                                codes.Canceled,
		fmt.Errorf("x: %w", context.DeadlineExceeded):   codes.DeadlineExceeded,
		fmt.Errorf("x: %w", errDown):                    codes.Unavailable,
		errors.New("disk on fire"):                      codes.Internal,
		status.Error(codes.PermissionDenied, "private"): codes.Internal,
	} {
		got := grpcError(slog.New(slog.DiscardHandler), err)
		if status.Code(got) != want {
			t.Errorf("grpcError(%v) = %v, want %v", err, got, want)
		}
	}
}

// TestApplyMask ensures masks copy named fields, nested ones included, clear absent ones, and refuse output-only or unknown paths.
func TestApplyMask(t *testing.T) {
	dst := &adminv1.Tenant{Id: "a", DisplayName: "old", Limits: &adminv1.Limits{MaxConnections: 1, MaxSessions: 2}}
	src := &adminv1.Tenant{Id: "zzz", Limits: &adminv1.Limits{MaxSessions: 5}}
	if err := applyMask(dst, src, []string{"id", "display_name", "limits.max_sessions"}, tenantMutable, []string{"id"}); err != nil {
		t.Fatal(err)
	}
	if dst.GetId() != "a" || dst.GetDisplayName() != "" || dst.GetLimits().GetMaxConnections() != 1 || dst.GetLimits().GetMaxSessions() != 5 {
		t.Fatalf("masked: %v", dst)
	}
	for _, paths := range [][]string{{"id"}, {"revision"}, {"limits.nope"}, {"display_name.x"}, {"create_time"}} {
		if err := applyMask(dst, src, paths, tenantMutable, nil); status.Code(err) != codes.InvalidArgument {
			t.Errorf("paths %v: %v", paths, err)
		}
	}
}

// TestConfig ensures Validate rejects bad values and defaults fill the rest.
func TestConfig(t *testing.T) {
	for _, c := range []Config{{Addr: "8081"}, {ShutdownTimeout: -1}, {ReadyTimeout: -1},
		{OperatorConfig: OperatorConfig{AdminToken: "a", AdminTokenHash: authz.HashSecret("a", authz.DefaultArgon2)}}, {OperatorConfig: OperatorConfig{AdminTokenHash: "plain"}}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
		if _, err := New(c, &tenant.Etcd{}, nil); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
	if _, err := New(Config{}, nil, nil); err == nil {
		t.Error("New accepted a nil store")
	}
	d := Config{}.withDefaults()
	if d.Addr != DefaultAddr || d.ShutdownTimeout != 10*time.Second || d.ReadyTimeout != 2*time.Second {
		t.Errorf("defaults %+v", d)
	}
}

// TestRunListenError ensures Run reports an address it cannot listen on, and Addr then returns "".
func TestRunListenError(t *testing.T) {
	src := unreachableEtcd(t)
	taken := start(t, Config{ReadyTimeout: 100 * time.Millisecond}, src)
	s, err := New(Config{Addr: taken}, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); err == nil {
		t.Fatal("Run on a taken address succeeded")
	}
	if s.Addr() != "" {
		t.Fatalf("Addr = %q after a failed Run", s.Addr())
	}
	if err := s.Run(t.Context()); err == nil {
		t.Fatal("second Run succeeded")
	}
}
