package cors

import (
	"errors"
	"net/http/httptest"
	"testing"
)

// TestCheckOrigin ensures a request's Origin may act when it is absent,
// names the request's own host, or matches an allowed host pattern (with
// or without a scheme), and is refused with ErrCrossSite otherwise — the
// rule of coder/websocket's origin check.
func TestCheckOrigin(t *testing.T) {
	hosts := []string{"app.example.com", "*.trusted.example", "https://secure.example"}
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://edge.example:8080", true}, // the request's own host
		{"http://EDGE.example:8080", true},
		{"https://app.example.com", true},
		{"http://app.example.com", true},
		{"https://a.trusted.example", true},
		{"https://secure.example", true},
		{"http://secure.example", false},
		{"https://evil.example", false},
		{"http://edge.example:9090", false}, // another port is another origin
		{"https://app.example.com.evil.example", false},
		{"null", false},
		{"not a url", false},
	} {
		r := httptest.NewRequest("POST", "http://edge.example:8080/publish", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		err := CheckOrigin(r, hosts)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrCrossSite)) {
			t.Errorf("Origin %q: %v, want ok %v", tc.origin, err, tc.ok)
		}
	}
}

// TestCheckCookieWrite ensures a write with the cookie credential needs
// an allowed origin and a content type that a cross-origin page cannot
// send without a preflight.
func TestCheckCookieWrite(t *testing.T) {
	for _, tc := range []struct {
		origin, contentType string
		ok                  bool
	}{
		{"", "application/octet-stream", true},
		{"", "application/json", true},
		{"http://edge.example", "application/json; charset=utf-8", true},
		{"http://edge.example", "image/png", true},
		{"", "", false},
		{"", "text/plain", false},
		{"", "Text/Plain; charset=utf-8", false},
		{"", "application/x-www-form-urlencoded", false},
		{"", "multipart/form-data; boundary=x", false},
		{"", "text/plain;;", false}, // does not parse
		{"https://evil.example", "application/octet-stream", false},
	} {
		r := httptest.NewRequest("POST", "http://edge.example/publish", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.contentType != "" {
			r.Header.Set("Content-Type", tc.contentType)
		}
		err := CheckCookieWrite(r, nil)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrCrossSite)) {
			t.Errorf("Origin %q, Content-Type %q: %v, want ok %v", tc.origin, tc.contentType, err, tc.ok)
		}
	}
}
