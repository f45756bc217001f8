package ops

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestReadyReflectsChecks ensures /readyz answers 503 while a check fails and
// 200 once every check passes, and /healthz always answers 200.
func TestReadyReflectsChecks(t *testing.T) {
	s := New()
	failing := errors.New("down")
	s.AddCheck("dep", func(context.Context) error { return failing })
	get := func(path string) int {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	if c := get("/readyz"); c != http.StatusServiceUnavailable {
		t.Fatalf("readyz with failing check = %d", c)
	}
	if c := get("/healthz"); c != http.StatusOK {
		t.Fatalf("healthz = %d", c)
	}
	failing = nil
	s.AddCheck("dep", func(context.Context) error { return nil })
	if c := get("/readyz"); c != http.StatusOK {
		t.Fatalf("readyz with passing check = %d", c)
	}
}
