package hostile

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/testserver"
)

// identityProvider serves one RSA key as a JWK Set over TLS on 127.0.0.1,
// with a certificate for localhost (in certFile), and counts requests.
type identityProvider struct {
	srv      *httptest.Server
	certFile string
	key      *rsa.PrivateKey
	kid      string
	requests atomic.Int64
}

func newIdentityProvider(t *testing.T) *identityProvider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &identityProvider{key: key, kid: "idp-2026"}
	b64 := base64.RawURLEncoding
	doc, _ := json.Marshal(map[string]any{"keys": []map[string]any{{"kty": "RSA", "kid": p.kid, "use": "sig", "alg": "RS256",
		"n": b64.EncodeToString(key.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(key.E)).Bytes())}}})
	var certPEM []byte
	p.srv, certPEM = testserver.LocalhostTLS(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.requests.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(doc)
	}))
	p.certFile = filepath.Join(t.TempDir(), "idp.pem")
	if err := os.WriteFile(p.certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// url returns the provider's JWKS URL through host.
func (p *identityProvider) url(host string) string {
	_, port, _ := net.SplitHostPort(p.srv.Listener.Addr().String())
	return "https://" + net.JoinHostPort(host, port) + "/jwks.json"
}

// token returns an RS256 token of the provider's key for tenant.
func (p *identityProvider) token(t *testing.T, tenant string) string {
	t.Helper()
	b64 := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]any{"alg": "RS256", "typ": "JWT", "kid": p.kid})
	c, _ := json.Marshal(map[string]any{"tenant": tenant, "sub": "device-9", "exp": time.Now().Add(time.Hour).Unix(),
		"caps": []string{"publish,subscribe:#"}})
	s := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	sum := sha256.Sum256([]byte(s))
	sig, err := rsa.SignPKCS1v15(rand.Reader, p.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return s + "." + b64.EncodeToString(sig)
}

// adminOf calls h's admin REST API with the operator token and fails the
// test unless the answer is want.
func adminOf(t *testing.T, h *herald, want int, method, path string, body any) {
	t.Helper()
	status, b, err := adminCall(h.Admin, method, path, operatorToken, body)
	if err != nil || status != want {
		t.Fatalf("%s %s: %d %s (%v), want %d", method, path, status, b, err, want)
	}
}

// TestJWKSKey ensures a token signed by an identity provider's key is
// admitted on MQTT and SSE by a bin/herald whose tenant has a JWT key
// naming the provider's JWKS URL (created through the admin API), when
// the operator allows the provider's network; and that the herald
// attacked by this package, which allows no internal network, refuses
// the same URL before any request reaches it, as it refuses the URLs
// naming loopback or the cloud metadata address at creation.
func TestJWKSKey(t *testing.T) {
	p := newIdentityProvider(t)
	key := map[string]any{"id": "idp-rs", "algorithm": "RS256", "jwksUrl": p.url("localhost")}

	t.Run("admitted where the operator allows the provider", func(t *testing.T) {
		h, err := startHerald(t.TempDir(), "HERALD_JWKS_ALLOW_NETWORKS=127.0.0.1/32", "SSL_CERT_FILE="+p.certFile)
		if err != nil {
			t.Fatal(err)
		}
		defer h.stop()
		adminOf(t, h, http.StatusOK, http.MethodPost, "/v1/tenants", map[string]any{"id": "idp"})
		adminOf(t, h, http.StatusOK, http.MethodPost, "/v1/tenants/idp/jwt-keys", key)
		tok := p.token(t, "idp")
		// The edge's Directory follows etcd by a watch: the first tries
		// may come before it has the key.
		var code byte
		for deadline := time.Now().Add(10 * time.Second); ; {
			c, err := connectV5From(h.MQTT, "127.0.6.1", "jwks-device", "", tok, nil)
			if err != nil {
				t.Fatal(err)
			}
			code = c.code
			c.Close()
			if code == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if code != 0 {
			h.dump(os.Stderr)
			t.Fatalf("MQTT CONNACK %#x with the provider's token, want 0", code)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		status, _, body, err := httpGet(ctx, clientFrom(t, "127.0.6.2"), h.HTTP+"/sse?topic=a", tok)
		if err != nil || status != http.StatusOK {
			t.Fatalf("GET /sse: %d %s %v, want 200", status, body, err)
		}
		if n := p.requests.Load(); n != 1 {
			t.Fatalf("the provider got %d requests, want 1", n)
		}
		t.Logf("CONNACK 0, GET /sse 200, %d fetch", p.requests.Load())
	})

	t.Run("refused where no internal network is allowed", func(t *testing.T) {
		before := p.requests.Load()
		adminOf(t, srv, http.StatusOK, http.MethodPost, "/v1/tenants", map[string]any{"id": "ssrf"})
		for _, u := range []string{p.url("127.0.0.1"), p.url("::1"), p.url("::ffff:127.0.0.1"),
			"https://169.254.169.254/latest/meta-data/", "https://[fe80::1]/jwks", "https://0.0.0.0/jwks"} {
			status, b, err := adminCall(srv.Admin, http.MethodPost, "/v1/tenants/ssrf/jwt-keys", operatorToken,
				map[string]any{"id": "lit", "algorithm": "RS256", "jwksUrl": u})
			if err != nil || status != http.StatusBadRequest {
				t.Errorf("JWKS key at %s: %d %s (%v), want 400", u, status, b, err)
			}
		}
		// A host name passes creation: the edge checks the address it
		// resolves to when it connects.
		adminOf(t, srv, http.StatusOK, http.MethodPost, "/v1/tenants/ssrf/jwt-keys", key)
		tok := p.token(t, "ssrf")
		// Every try is refused; once the edge's Directory has the key,
		// the refusal is the dial-time check's, which the log says.
		for i := 0; ; i++ {
			c, err := connectV5From(srv.MQTT, fmt.Sprintf("127.0.6.%d", 10+i), "jwks-device", "", tok, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if c.code != 0x86 {
				t.Fatalf("MQTT CONNACK %#x, want 0x86", c.code)
			}
			log, _ := os.ReadFile(srv.log)
			if bytes.Contains(log, []byte("JWKS address refused: 127.0.0.1 is loopback")) {
				break
			}
			if i == 50 {
				t.Fatal("no refused JWKS fetch in the log after 50 tries")
			}
			time.Sleep(200 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		status, _, body, err := httpGet(ctx, clientFrom(t, "127.0.6.4"), srv.HTTP+"/sse?topic=a", tok)
		if err != nil || status != http.StatusUnauthorized {
			t.Fatalf("GET /sse: %d %s %v, want 401", status, body, err)
		}
		if n := p.requests.Load() - before; n != 0 {
			t.Fatalf("the provider on loopback got %d requests from the herald that allows no internal network", n)
		}
		if err := srv.alive(); err != nil {
			t.Fatal(err)
		}
	})
}
