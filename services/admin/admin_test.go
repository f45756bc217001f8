package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// fixture is a running admin server, with the tenants its source holds.
type fixture struct {
	addr    string
	tenants map[string]tenant.Tenant
}

func start(t *testing.T, src tenant.Source) string {
	t.Helper()
	s, err := New(Config{Addr: "127.0.0.1:0"}, src, nil)
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

func newFixture(t *testing.T) fixture {
	t.Helper()
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	src, err := tenant.NewEtcd(cli, tenant.EtcdConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{tenants: map[string]tenant.Tenant{}}
	for _, tn := range []tenant.Tenant{
		{ID: "dev", DisplayName: "Development", CreatedAt: time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC)},
		{ID: "acme", DisplayName: "ACME Corp."},
		{ID: "zeta"},
	} {
		put, err := src.Put(t.Context(), tn)
		if err != nil {
			t.Fatal(err)
		}
		f.tenants[tn.ID] = put
	}
	f.addr = start(t, src)
	return f
}

func (f fixture) client(t *testing.T) adminv1.TenantServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return adminv1.NewTenantServiceClient(conn)
}

// get fetches path over HTTP/1.1 and returns the status and body.
func (f fixture) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+f.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func checkTenant(t *testing.T, got *adminv1.Tenant, want tenant.Tenant) {
	t.Helper()
	if got.GetId() != want.ID || got.GetDisplayName() != want.DisplayName || got.GetRevision() != want.Revision ||
		!got.GetCreateTime().AsTime().Equal(want.CreatedAt) {
		t.Fatalf("tenant %v, want %+v", got, want)
	}
}

// TestGRPCGetTenant ensures GetTenant over gRPC returns the stored tenant, NotFound for a missing one and InvalidArgument for a bad id.
func TestGRPCGetTenant(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	got, err := c.GetTenant(t.Context(), &adminv1.GetTenantRequest{Id: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	checkTenant(t, got, f.tenants["dev"])

	for id, want := range map[string]codes.Code{"nobody": codes.NotFound, "Not.Valid": codes.InvalidArgument, "": codes.InvalidArgument} {
		_, err := c.GetTenant(t.Context(), &adminv1.GetTenantRequest{Id: id})
		if status.Code(err) != want {
			t.Errorf("GetTenant(%q) = %v, want %v", id, err, want)
		}
	}
}

// TestGRPCListTenants ensures ListTenants over gRPC pages through every tenant in id order, and rejects a bad token.
func TestGRPCListTenants(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	var ids []string
	token := ""
	for pages := 1; ; pages++ {
		resp, err := c.ListTenants(t.Context(), &adminv1.ListTenantsRequest{PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetTenants()) != 1 {
			t.Fatalf("page %d holds %d tenants, want 1", pages, len(resp.GetTenants()))
		}
		tn := resp.GetTenants()[0]
		checkTenant(t, tn, f.tenants[tn.GetId()])
		ids = append(ids, tn.GetId())
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if want := []string{"acme", "dev", "zeta"}; !slices.Equal(ids, want) {
		t.Fatalf("listed %v, want %v", ids, want)
	}
	all, err := c.ListTenants(t.Context(), &adminv1.ListTenantsRequest{})
	if err != nil || len(all.GetTenants()) != 3 || all.GetNextPageToken() != "" {
		t.Fatalf("default page = %v, %v; want all three, no token", all, err)
	}
	if _, err := c.ListTenants(t.Context(), &adminv1.ListTenantsRequest{PageToken: "junk!"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad token: %v, want InvalidArgument", err)
	}
}

// TestRESTGetTenant ensures GET /v1/tenants/{id} returns the tenant as JSON, 404 with a JSON status body for a missing one and 400 for a bad id.
func TestRESTGetTenant(t *testing.T) {
	f := newFixture(t)
	code, body := f.get(t, "/v1/tenants/dev")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var got adminv1.Tenant
	if err := protojson.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	checkTenant(t, &got, f.tenants["dev"])
	// The JSON names are the proto's lowerCamelCase ones; int64 is a string.
	for _, field := range []string{`"displayName":"Development"`, `"createTime":"2026-11-24T09:30:00Z"`, fmt.Sprintf(`"revision":"%d"`, f.tenants["dev"].Revision)} {
		if !strings.Contains(string(body), field) {
			t.Errorf("body %s lacks %s", body, field)
		}
	}

	for path, want := range map[string]int{
		"/v1/tenants/nobody": http.StatusNotFound,
		"/v1/tenants/BAD":    http.StatusBadRequest,
	} {
		code, body := f.get(t, path)
		if code != want {
			t.Errorf("GET %s: status %d, want %d: %s", path, code, want, body)
			continue
		}
		var st struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(body, &st); err != nil || st.Code == 0 || st.Message == "" {
			t.Errorf("GET %s: body %s is not a JSON status (%v)", path, body, err)
		}
	}
}

// TestRESTListTenants ensures GET /v1/tenants pages with page_size and page_token, and rejects a negative page size with 400.
func TestRESTListTenants(t *testing.T) {
	f := newFixture(t)
	var ids []string
	path := "/v1/tenants?page_size=1"
	for pages := 1; pages <= 3; pages++ {
		code, body := f.get(t, path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: status %d: %s", path, code, body)
		}
		var page adminv1.ListTenantsResponse
		if err := protojson.Unmarshal(body, &page); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		if len(page.GetTenants()) != 1 {
			t.Fatalf("page %d: %s", pages, body)
		}
		ids = append(ids, page.GetTenants()[0].GetId())
		if pages < 3 && page.GetNextPageToken() == "" || pages == 3 && page.GetNextPageToken() != "" {
			t.Fatalf("page %d has next token %q", pages, page.GetNextPageToken())
		}
		path = "/v1/tenants?page_size=1&page_token=" + page.GetNextPageToken()
	}
	if want := []string{"acme", "dev", "zeta"}; !slices.Equal(ids, want) {
		t.Fatalf("listed %v, want %v", ids, want)
	}
	if code, body := f.get(t, "/v1/tenants?page_size=-1"); code != http.StatusBadRequest {
		t.Fatalf("negative page size: status %d: %s", code, body)
	}
}

// TestOpenAPIAndHealth ensures /openapi.json serves the API's OpenAPI document and /healthz and /readyz answer 200.
func TestOpenAPIAndHealth(t *testing.T) {
	f := newFixture(t)
	code, body := f.get(t, "/openapi.json")
	if code != http.StatusOK {
		t.Fatalf("openapi status %d", code)
	}
	var doc struct {
		Swagger string                     `json:"swagger"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Swagger != "2.0" || doc.Paths["/v1/tenants"] == nil || doc.Paths["/v1/tenants/{id}"] == nil {
		t.Fatalf("openapi document: swagger %q, paths %v", doc.Swagger, doc.Paths)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := f.get(t, path); code != http.StatusOK {
			t.Errorf("GET %s: status %d: %s", path, code, body)
		}
	}
}

// failingSource is a tenant.Source whose store is down.
type failingSource struct{ tenant.Source }

var errDown = status.Error(codes.Unavailable, "etcd down")

func (failingSource) Get(context.Context, string) (tenant.Tenant, error) {
	return tenant.Tenant{}, errDown
}
func (failingSource) List(context.Context, int, string) ([]tenant.Tenant, string, error) {
	return nil, "", fmt.Errorf("tenant: list: %w", errDown)
}

// TestStoreDown ensures /readyz answers 503 and requests Unavailable (HTTP 503) while the tenant store is down, and /healthz still 200.
func TestStoreDown(t *testing.T) {
	f := fixture{addr: start(t, failingSource{})}
	if code, _ := f.get(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("readyz %d, want 503", code)
	}
	if code, _ := f.get(t, "/healthz"); code != http.StatusOK {
		t.Errorf("healthz %d, want 200", code)
	}
	if code, body := f.get(t, "/v1/tenants"); code != http.StatusServiceUnavailable || strings.Contains(string(body), "etcd") {
		t.Errorf("list: status %d body %s, want 503 without detail", code, body)
	}
	_, err := f.client(t).GetTenant(t.Context(), &adminv1.GetTenantRequest{Id: "dev"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetTenant: %v, want Unavailable", err)
	}
}

// TestGRPCError ensures each tenant error maps to its gRPC code.
func TestGRPCError(t *testing.T) {
	for err, want := range map[error]codes.Code{
		tenant.ErrNotFound:                              codes.NotFound,
		fmt.Errorf("x: %w", tenant.ErrInvalidID):        codes.InvalidArgument,
		tenant.ErrInvalidPage:                           codes.InvalidArgument,
		tenant.ErrConflict:                              codes.Aborted,
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

// TestConfig ensures Validate rejects bad values and defaults fill the rest.
func TestConfig(t *testing.T) {
	for _, c := range []Config{{Addr: "8081"}, {ShutdownTimeout: -1}, {ReadyTimeout: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
		if _, err := New(c, failingSource{}, nil); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
	if _, err := New(Config{}, nil, nil); err == nil {
		t.Error("New accepted a nil source")
	}
	d := Config{}.withDefaults()
	if d.Addr != DefaultAddr || d.ShutdownTimeout != 10*time.Second || d.ReadyTimeout != 2*time.Second {
		t.Errorf("defaults %+v", d)
	}
}

// TestRunListenError ensures Run reports an address it cannot listen on, and Addr then returns "".
func TestRunListenError(t *testing.T) {
	taken := start(t, failingSource{})
	s, err := New(Config{Addr: taken}, failingSource{}, nil)
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
