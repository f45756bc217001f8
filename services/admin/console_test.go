package admin

import (
	"net/http"
	"strings"
	"testing"

	"github.com/heraldmq/herald/services/admin/console"
)

// TestConsoleMounted ensures the admin listener serves the web console at
// /console/ (and redirects /console there) without a credential, with its
// CSP, while the API beside it still refuses a request without one: the
// console's files carry no data.
func TestConsoleMounted(t *testing.T) {
	f := newFixture(t, Config{})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get("http://" + f.addr + "/console")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != console.Path {
		t.Fatalf("GET /console: %d to %q, want a redirect to %s", resp.StatusCode, resp.Header.Get("Location"), console.Path)
	}
	resp, err = http.Get("http://" + f.addr + console.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		resp.Header.Get("Content-Security-Policy") != console.CSP {
		t.Fatalf("GET %s: %d %q, CSP %q", console.Path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"))
	}
	if code, _ := f.do(t, "GET", "/v1/tenants", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("GET /v1/tenants without a credential beside the console: %d, want 401", code)
	}
}
