package ops

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/pkg/tlsconf"
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

// TestServeTLS ensures the ops port given a TLS configuration answers over
// TLS, and a plain-text request gets no health answer.
func TestServeTLS(t *testing.T) {
	pki := testserver.NewPKI(t)
	cfg, err := tlsconf.Files{Cert: pki.ServerCert, Key: pki.ServerKey}.Server(tls.RequireAndVerifyClientCert, tls.NoClientCert)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New().ServeTLS(ctx, addr, cfg) }()
	t.Cleanup(func() { cancel(); <-done })
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.TLS()}}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := client.Get("https://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("healthz over TLS: %s", resp.Status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz over TLS: %v", err)
		}
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("healthz answered in plain text")
		}
	}
}
