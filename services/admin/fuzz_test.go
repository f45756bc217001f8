package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
)

// adminRoute is one REST route of the OpenAPI document.
type adminRoute struct{ method, path string }

// openAPIRoutes lists the REST routes of proto/openapi/admin.swagger.json,
// sorted, so that a route index means the same route in every run.
func openAPIRoutes(tb testing.TB) []adminRoute {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "proto", "openapi", "admin.swagger.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		tb.Fatal(err)
	}
	var routes []adminRoute
	for p, methods := range doc.Paths {
		for m := range methods {
			routes = append(routes, adminRoute{strings.ToUpper(m), p})
		}
	}
	slices.SortFunc(routes, func(a, b adminRoute) int { return strings.Compare(a.method+a.path, b.method+b.path) })
	if len(routes) == 0 {
		tb.Fatal("no routes in the OpenAPI document")
	}
	return routes
}

// fillPath replaces every {parameter} of an OpenAPI path with v, escaped.
func fillPath(p, v string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(p, '{')
		j := strings.IndexByte(p, '}')
		if i < 0 || j < i {
			b.WriteString(p)
			return b.String()
		}
		b.WriteString(p[:i])
		b.WriteString(url.PathEscape(v))
		p = p[j+1:]
	}
}

// FuzzREST ensures the admin REST gateway (the JSON of a request decoded
// into its proto message, then the server's validation and its etcd
// writes) answers any body on any route of the OpenAPI document, with any
// value for the path parameters, with a client error or a success: never
// a panic and never an internal error (500), errors in JSON. Live-state routes answer 501
// here (no data plane is attached), which is allowed.
func FuzzREST(f *testing.F) {
	routes := openAPIRoutes(f)
	for i := range routes {
		for _, body := range []string{`{}`, `{"id":"acme","limits":{"max_connections":"5"}}`, `{"description":"d","capabilities":[{"filter":"a/#","actions":["ACTION_PUBLISH"]}]}`,
			`{"id":"` + strings.Repeat("x", 70) + `"}`, `{"limits":{"max_connections":-1}}`, `{"id":"a","display_name":"\ud800"}`, `[`, `{"capabilities":[{"filter":"#/a"}]}`,
			`{"public_key_pem":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----","algorithm":"ES256","kid":"k"}`, `{"fingerprint":"zz"}`,
			`{"payload":"!!","encoding":"base64","topic":"a/+"}`} {
			f.Add(uint8(i), "acme", []byte(body))
		}
		f.Add(uint8(i), "../..", []byte(`{}`))
		f.Add(uint8(i), "", []byte(`{"id":""}`))
	}
	src, err := tenant.NewEtcd(testserver.EtcdClient(f, testserver.Etcd(f)), tenant.EtcdConfig{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{Addr: "127.0.0.1:0", OperatorConfig: OperatorConfig{AdminToken: "operator"}}, src, nil)
	if err != nil {
		f.Fatal(err)
	}
	h := s.http.Handler
	call := func(method, path string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "http://admin"+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer operator")
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := call(http.MethodPost, "/v1/tenants", []byte(`{"id":"acme"}`)); rec.Code != http.StatusOK {
		f.Fatalf("create acme: %d %s", rec.Code, rec.Body)
	}
	f.Fuzz(func(t *testing.T, route uint8, param string, body []byte) {
		r := routes[int(route)%len(routes)]
		path := fillPath(r.path, param)
		if _, err := url.ParseRequestURI("http://admin" + path); err != nil {
			return
		}
		rec := call(r.method, path, body)
		if rec.Code >= 500 && rec.Code != http.StatusNotImplemented {
			t.Fatalf("%s %s %q: %d %s", r.method, path, body, rec.Code, rec.Body)
		}
		// Errors are JSON; a path that is not clean ("//") is redirected
		// by net/http before the gateway.
		if rec.Code >= 400 && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: %d with a body that is not JSON: %q", r.method, path, rec.Code, rec.Body)
		}
	})
}
