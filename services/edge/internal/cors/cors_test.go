package cors_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/heraldmq/herald/services/edge/internal/cors"
)

// TestMiddleware ensures allowed origins get CORS headers on answers and
// preflights, other origins and same-origin requests none, and that the
// wrapped handler never sees a preflight.
func TestMiddleware(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       cors.Config
		method    string
		origin    string
		preflight bool
		allow     string // Access-Control-Allow-Origin wanted
		creds     bool
		reached   bool
	}{
		{"no origin", cors.Config{AllowedOrigins: []string{"https://a.example"}}, "GET", "", false, "", false, true},
		{"allowed", cors.Config{AllowedOrigins: []string{"https://a.example"}}, "GET", "https://a.example", false, "https://a.example", false, true},
		{"other", cors.Config{AllowedOrigins: []string{"https://a.example"}}, "GET", "https://b.example", false, "", false, true},
		{"pattern", cors.Config{AllowedOrigins: []string{"https://*.example"}}, "GET", "https://x.example", false, "https://x.example", false, true},
		{"any", cors.Config{AllowedOrigins: []string{"*"}}, "GET", "https://b.example", false, "*", false, true},
		{"credentials", cors.Config{AllowedOrigins: []string{"https://a.example"}, AllowCredentials: true}, "POST", "https://a.example", false, "https://a.example", true, true},
		{"preflight", cors.Config{AllowedOrigins: []string{"https://a.example"}}, "OPTIONS", "https://a.example", true, "https://a.example", false, false},
		{"preflight other", cors.Config{AllowedOrigins: []string{"https://a.example"}}, "OPTIONS", "https://b.example", true, "", false, false},
		{"disabled", cors.Config{}, "GET", "https://a.example", false, "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reached := false
			h := cors.Middleware(tc.cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
			req := httptest.NewRequest(tc.method, "/publish", nil)
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.preflight {
				req.Header.Set("Access-Control-Request-Method", "POST")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			hdr := rec.Result().Header
			if got := hdr.Get("Access-Control-Allow-Origin"); got != tc.allow {
				t.Errorf("allow-origin %q, want %q", got, tc.allow)
			}
			if got := hdr.Get("Access-Control-Allow-Credentials") == "true"; got != tc.creds {
				t.Errorf("credentials %v, want %v", got, tc.creds)
			}
			if reached != tc.reached {
				t.Errorf("handler reached %v, want %v", reached, tc.reached)
			}
			if tc.preflight && (rec.Code != http.StatusNoContent || (tc.allow != "") != (hdr.Get("Access-Control-Allow-Methods") != "")) {
				t.Errorf("preflight: %d %v", rec.Code, hdr)
			}
			if len(tc.cfg.AllowedOrigins) > 0 && !slices.Contains(hdr.Values("Vary"), "Origin") {
				t.Errorf("no Vary: Origin: %v", hdr)
			}
		})
	}
}

// TestValidateAndHosts ensures malformed origins and "*" with credentials
// are refused, and origins map to WebSocket host patterns.
func TestValidateAndHosts(t *testing.T) {
	for _, c := range []cors.Config{
		{AllowedOrigins: []string{"*"}, AllowCredentials: true},
		{AllowedOrigins: []string{"a.example"}},
		{AllowedOrigins: []string{"https://a.example/path"}},
		{AllowedOrigins: []string{"https://[a"}},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	c := cors.Config{AllowedOrigins: []string{"https://a.example", "http://127.0.0.1:8080", "https://*.b.example", "*"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Hosts(), []string{"a.example", "127.0.0.1:8080", "*.b.example", "*"}; !slices.Equal(got, want) {
		t.Fatalf("hosts %v, want %v", got, want)
	}
}
