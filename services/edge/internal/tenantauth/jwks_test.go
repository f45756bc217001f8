package tenantauth_test

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/tenantauth"
)

// idp is an identity provider's JWKS endpoint on loopback, over TLS with
// a certificate for localhost, 127.0.0.1 and ::1 that roots trusts
// (testserver.LocalhostTLS).
type idp struct {
	srv      *httptest.Server
	roots    *x509.CertPool
	certPEM  []byte
	requests atomic.Int64

	mu      sync.Mutex
	doc     []byte
	header  http.Header
	handler http.HandlerFunc // replaces serving doc when set
}

func newIdP(t *testing.T) *idp {
	t.Helper()
	p := &idp{roots: x509.NewCertPool(), header: http.Header{}}
	p.srv, p.certPEM = testserver.LocalhostTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		p.mu.Lock()
		h, doc, hdr := p.handler, p.doc, p.header.Clone()
		p.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		for k, v := range hdr {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(doc)
	}))
	p.roots.AppendCertsFromPEM(p.certPEM)
	return p
}

// url returns the JWKS URL of p through host ("127.0.0.1", "localhost").
func (p *idp) url(host string) string {
	_, port, _ := net.SplitHostPort(p.srv.Listener.Addr().String())
	return "https://" + net.JoinHostPort(host, port) + "/jwks"
}

// serve makes p serve a JWK Set of keys.
func (p *idp) serve(keys ...map[string]any) {
	doc, _ := json.Marshal(map[string]any{"keys": keys})
	p.mu.Lock()
	p.doc, p.handler = doc, nil
	p.mu.Unlock()
}

func (p *idp) handle(h http.HandlerFunc) {
	p.mu.Lock()
	p.handler = h
	p.mu.Unlock()
}

var b64 = base64.RawURLEncoding

func rsaJWK(kid, alg string, pub *rsa.PublicKey) map[string]any {
	m := map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "n": b64.EncodeToString(pub.N.Bytes()),
		"e": b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}
	if alg != "" {
		m["alg"] = alg
	}
	return m
}

func ecJWK(kid string, pub *ecdsa.PublicKey) map[string]any {
	pt, _ := pub.Bytes() // 0x04 || X || Y
	n := (len(pt) - 1) / 2
	return map[string]any{"kty": "EC", "kid": kid, "crv": pub.Curve.Params().Name, "alg": "ES256",
		"x": b64.EncodeToString(pt[1 : 1+n]), "y": b64.EncodeToString(pt[1+n:])}
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// rsaKeys are generated once: 2048-bit RSA keys take a while.
var rsaKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	var ks []*rsa.PrivateKey
	for range 3 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		ks = append(ks, k)
	}
	return ks
})

func signJWT(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jwksFixture is a tenant "acme" with one JWKS key "idp-rs" (RS256) at an
// identity provider on loopback that the edge may reach.
type jwksFixture struct {
	dir   *fakeDir
	idp   *idp
	clock *clock
	auth  *tenantauth.Authenticator
	key   *rsa.PrivateKey
}

func newJWKSFixture(t *testing.T, cfg tenantauth.JWKSConfig) *jwksFixture {
	t.Helper()
	f := &jwksFixture{dir: newFakeDir("acme", "beta"), idp: newIdP(t), clock: newClock(), key: rsaKeys()[0]}
	f.dir.jwks["acme"] = []tenant.JWTKey{{ID: "idp-rs", Tenant: "acme", Algorithm: "RS256", JWKSURL: f.idp.url("127.0.0.1")}}
	f.idp.serve(rsaJWK("kid-2026", "RS256", &f.key.PublicKey))
	if cfg.RootCAs == nil {
		cfg.RootCAs = f.idp.roots
	} else {
		cfg.RootCAs.AppendCertsFromPEM(f.idp.certPEM)
	}
	if cfg.AllowNetworks == nil {
		cfg.AllowNetworks = []string{"127.0.0.1/32"}
	}
	f.auth = newAuth(t, tenantauth.Config{Directory: f.dir, JWKS: cfg, Now: f.clock.Now, Log: slog.New(slog.DiscardHandler)})
	return f
}

func (f *jwksFixture) claims() jwt.MapClaims {
	return jwt.MapClaims{"tenant": "acme", "sub": "device-1", "exp": f.clock.Now().Add(time.Hour).Unix(), "caps": []string{"publish:a/#"}}
}

// token returns an RS256 token of f's key with kid.
func (f *jwksFixture) token(t *testing.T, kid string) string {
	t.Helper()
	return signJWT(t, jwt.SigningMethodRS256, f.key, kid, f.claims())
}

func (f *jwksFixture) authenticate(t *testing.T, token string) (auth.Identity, error) {
	t.Helper()
	return f.auth.Authenticate(t.Context(), auth.Credentials{Token: token})
}

// TestJWKSToken ensures a token signed by a key of the JWKS document a
// tenant's JWT key names verifies, as MQTT password and bearer token,
// into that tenant with the Herald key as its credential; that the
// document is fetched once for many tokens; and that deleting the Herald
// key revokes the identity.
func TestJWKSToken(t *testing.T) {
	f := newJWKSFixture(t, tenantauth.JWKSConfig{})
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecIdP := newIdP(t)
	ecIdP.serve(ecJWK("ec-1", &ec.PublicKey), rsaJWK("kid-2026", "RS256", &f.key.PublicKey))
	f.dir.jwks["acme"] = append(f.dir.jwks["acme"], tenant.JWTKey{ID: "idp-es", Tenant: "acme", Algorithm: "ES256", JWKSURL: ecIdP.url("127.0.0.1")})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(f.idp.certPEM)
	pool.AppendCertsFromPEM(ecIdP.certPEM)
	f.auth = newAuth(t, tenantauth.Config{Directory: f.dir, Now: f.clock.Now, Log: slog.New(slog.DiscardHandler),
		JWKS: tenantauth.JWKSConfig{RootCAs: pool, AllowNetworks: []string{"127.0.0.1"}}})

	rs := f.token(t, "kid-2026")
	for _, cr := range []auth.Credentials{{Token: rs}, {Username: "acme", Password: []byte(rs)}} {
		id, err := f.auth.Authenticate(t.Context(), cr)
		if err != nil || id.Tenant != "acme" || id.Credential != "jwt:idp-rs" || id.Subject != "device-1" || !id.Capabilities.CanPublish("a/b") {
			t.Fatalf("RS256 token: %+v, %v", id, err)
		}
		if err := f.auth.Check(id); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	es := signJWT(t, jwt.SigningMethodES256, ec, "ec-1", f.claims())
	id, err := f.authenticate(t, es)
	if err != nil || id.Credential != "jwt:idp-es" {
		t.Fatalf("ES256 token: %+v, %v", id, err)
	}
	if n := f.idp.requests.Load(); n != 1 {
		t.Fatalf("RS256 document fetched %d times for 2 tokens, want 1", n)
	}
	if n := ecIdP.requests.Load(); n != 1 {
		t.Fatalf("ES256 document fetched %d times, want 1 (its RSA key is not the ES256 key's)", n)
	}
	// A token signed by the right key naming the Herald key id as kid is
	// no token of the document.
	if _, err := f.authenticate(t, f.token(t, "idp-rs")); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("kid of the Herald key: %v, want ErrBadCredentials", err)
	}
	// Another tenant's token is never verified with acme's documents.
	other := f.claims()
	other["tenant"] = "beta"
	if _, err := f.authenticate(t, signJWT(t, jwt.SigningMethodRS256, f.key, "kid-2026", other)); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("tenant beta: %v, want ErrBadCredentials", err)
	}

	f.dir.jwks["acme"] = f.dir.jwks["acme"][1:]
	if err := f.auth.Check(auth.Identity{Tenant: "acme", Credential: "jwt:idp-rs", Expires: f.clock.Now().Add(time.Hour)}); !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("Check after the key's deletion: %v, want ErrRevoked", err)
	}
	if _, err := f.authenticate(t, rs); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("token after the key's deletion: %v, want ErrBadCredentials", err)
	}
}

// TestJWKSRotation ensures a token naming a kid the cached document lacks
// makes one refetch, once the refetch interval since the last fetch has
// passed, and the rotated key is then accepted.
func TestJWKSRotation(t *testing.T) {
	f := newJWKSFixture(t, tenantauth.JWKSConfig{RefetchInterval: time.Minute})
	if _, err := f.authenticate(t, f.token(t, "kid-2026")); err != nil {
		t.Fatal(err)
	}
	next := rsaKeys()[1]
	f.idp.serve(rsaJWK("kid-2026", "RS256", &f.key.PublicKey), rsaJWK("kid-2027", "RS256", &next.PublicKey))
	rotated := signJWT(t, jwt.SigningMethodRS256, next, "kid-2027", f.claims())

	f.clock.Add(30 * time.Second)
	if _, err := f.authenticate(t, rotated); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("new kid within the refetch interval: %v, want ErrBadCredentials", err)
	}
	if n := f.idp.requests.Load(); n != 1 {
		t.Fatalf("%d fetches within the refetch interval, want 1", n)
	}
	f.clock.Add(31 * time.Second)
	id, err := f.authenticate(t, rotated)
	if err != nil || id.Credential != "jwt:idp-rs" {
		t.Fatalf("new kid after the refetch interval: %+v, %v", id, err)
	}
	if n := f.idp.requests.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	if _, err := f.authenticate(t, f.token(t, "kid-2026")); err != nil {
		t.Fatalf("old kid still in the document: %v", err)
	}
}

// TestJWKSKidFlood ensures a flood of tokens with random kids, at once
// and then one after the other, makes at most one fetch per refetch
// interval, and none of them is admitted.
func TestJWKSKidFlood(t *testing.T) {
	f := newJWKSFixture(t, tenantauth.JWKSConfig{RefetchInterval: time.Minute})
	flood := func(n int, parallel bool) {
		var wg sync.WaitGroup
		var admitted atomic.Int64
		for i := range n {
			tok := f.token(t, fmt.Sprintf("random-%d-%d", f.idp.requests.Load(), i))
			run := func() {
				if _, err := f.authenticate(t, tok); err == nil {
					admitted.Add(1)
				}
			}
			if parallel {
				wg.Go(run)
			} else {
				run()
			}
		}
		wg.Wait()
		if admitted.Load() != 0 {
			t.Fatalf("%d tokens with random kids admitted", admitted.Load())
		}
	}
	flood(200, true)
	if n := f.idp.requests.Load(); n != 1 {
		t.Fatalf("200 simultaneous random kids: %d fetches, want 1", n)
	}
	f.clock.Add(59 * time.Second)
	flood(200, false)
	if n := f.idp.requests.Load(); n != 1 {
		t.Fatalf("200 more within the interval: %d fetches, want 1", n)
	}
	f.clock.Add(time.Second)
	flood(200, true)
	if n := f.idp.requests.Load(); n != 2 {
		t.Fatalf("200 more in the next interval: %d fetches, want 2", n)
	}
	if _, err := f.authenticate(t, f.token(t, "kid-2026")); err != nil {
		t.Fatalf("the real kid after the flood: %v", err)
	}
}

// TestJWKSTenantBudget ensures a tenant naming one URL in many JWKS keys
// cannot multiply the edge's fetches of it past the tenant's budget.
func TestJWKSTenantBudget(t *testing.T) {
	f := newJWKSFixture(t, tenantauth.JWKSConfig{RefetchInterval: time.Minute, TenantFetches: 4})
	for i := range 20 {
		f.dir.jwks["acme"] = append(f.dir.jwks["acme"], tenant.JWTKey{ID: fmt.Sprintf("copy-%02d", i), Tenant: "acme", Algorithm: "RS256", JWKSURL: f.idp.url("127.0.0.1")})
	}
	for i := range 50 {
		_, _ = f.authenticate(t, f.token(t, fmt.Sprintf("random-%d", i)))
	}
	if n := f.idp.requests.Load(); n != 4 {
		t.Fatalf("21 keys naming one URL, 50 random kids: %d fetches, want the budget of 4", n)
	}
}

// TestJWKSIssuer ensures a JWKS key whose issuer is not the token's is
// not fetched for it.
func TestJWKSIssuer(t *testing.T) {
	f := newJWKSFixture(t, tenantauth.JWKSConfig{})
	f.dir.jwks["acme"][0].Issuer = "https://idp.example"
	if _, err := f.authenticate(t, f.token(t, "kid-2026")); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("token without the key's issuer: %v", err)
	}
	if n := f.idp.requests.Load(); n != 0 {
		t.Fatalf("%d fetches for a token of another issuer, want 0", n)
	}
	c := f.claims()
	c["iss"] = "https://idp.example"
	if _, err := f.authenticate(t, signJWT(t, jwt.SigningMethodRS256, f.key, "kid-2026", c)); err != nil {
		t.Fatalf("token of the key's issuer: %v", err)
	}
}

// TestJWKSRefusedDocuments ensures documents that are too large (declared,
// streamed, or compressed), have too many keys, come too slowly, redirect,
// or hold no key suiting the Herald key's algorithm are refused, and the
// token with them.
func TestJWKSRefusedDocuments(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub := &rsaKeys()[0].PublicKey
	other := newIdP(t)
	other.serve(rsaJWK("kid-2026", "RS256", pub))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	// Documents over a bound hold the right key: refused for the bound,
	// they would otherwise admit the token.
	good, _ := json.Marshal(map[string]any{"keys": []map[string]any{rsaJWK("kid-2026", "RS256", pub)}})
	padded := func(n int) []byte {
		return append(append(good[:len(good)-1:len(good)-1], bytes.Repeat([]byte(" "), n)...), '}')
	}
	big := padded(300 << 10)
	with := func(m map[string]any, k string, v any) map[string]any { m[k] = v; return m }
	keys := func(ks ...map[string]any) http.HandlerFunc {
		doc, _ := json.Marshal(map[string]any{"keys": ks})
		return func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(doc) }
	}
	many := make([]map[string]any, 65)
	for i := range many {
		many[i] = rsaJWK(fmt.Sprintf("kid-%d", 2026-i), "RS256", pub)
	}
	for _, c := range []struct {
		name    string
		handler http.HandlerFunc
		want    error
		says    string // in the fetch error
	}{
		{"declared 300 KiB", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			_, _ = w.Write(big)
		}, tenantauth.ErrJWKSDocument, "at most 262144"},
		{"streamed 300 KiB", func(w http.ResponseWriter, _ *http.Request) {
			for i := 0; i < len(big); i += 16 << 10 {
				_, _ = w.Write(big[i:min(i+16<<10, len(big))])
				w.(http.Flusher).Flush()
			}
		}, tenantauth.ErrJWKSDocument, "over 262144 bytes"},
		{"8 MiB gzip bomb", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write(padded(8 << 20))
			_ = zw.Close()
		}, tenantauth.ErrJWKSDocument, "over 262144 bytes"},
		{"65 keys", keys(many...), tenantauth.ErrJWKSDocument, "65 keys, at most 64"},
		{"no answer", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}, errTimeout, ""},
		{"body never finished", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte(`{"keys":[`))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}, errTimeout, ""},
		{"redirect to another allowed server", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.url("127.0.0.1"), http.StatusFound)
		}, tenantauth.ErrJWKSRedirect, ""},
		{"status 404", http.NotFound, tenantauth.ErrJWKSDocument, "status 404"},
		{"not JSON", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) }, tenantauth.ErrJWKSDocument, "not a JWK Set"},
		{"JWK alg RS512 for an RS256 key", keys(rsaJWK("kid-2026", "RS512", pub)), tenantauth.ErrJWKSDocument, "none of its 1 keys can verify RS256"},
		{"JWK kty EC for an RS256 key", keys(with(ecJWK("kid-2026", &ec.PublicKey), "alg", nil)), tenantauth.ErrJWKSDocument, "none of its 1 keys can verify RS256"},
		{"JWK use enc", keys(with(rsaJWK("kid-2026", "RS256", pub), "use", "enc")), tenantauth.ErrJWKSDocument, "none of its 1 keys can verify RS256"},
		{"JWK key_ops encrypt", keys(with(rsaJWK("kid-2026", "RS256", pub), "key_ops", []string{"encrypt"})), tenantauth.ErrJWKSDocument, "none of its 1 keys can verify RS256"},
		{"RSA of 1024 bits", keys(rsaJWK("kid-2026", "RS256", &weak.PublicKey)), tenantauth.ErrJWKSDocument, "none of its 1 keys can verify RS256"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The redirect's target is trusted and allowed: following the
			// redirect would admit the token.
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(other.certPEM)
			f := newJWKSFixture(t, tenantauth.JWKSConfig{FetchTimeout: 500 * time.Millisecond, RootCAs: roots})
			f.idp.handle(c.handler)
			start := time.Now()
			if _, err := f.authenticate(t, f.token(t, "kid-2026")); !errors.Is(err, auth.ErrBadCredentials) {
				t.Fatalf("token: %v, want ErrBadCredentials", err)
			}
			err := tenantauth.JWKSFetchErr(f.auth, "acme", "idp-rs")
			if c.want == errTimeout {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("fetch error %v, want a timeout", err)
				}
			} else if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("fetch error %v, want %v saying %q", err, c.want, c.says)
			}
			t.Logf("refused in %v: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
	if n := other.requests.Load(); n != 0 {
		t.Fatalf("the redirect's target got %d requests, want 0", n)
	}

	// A token of another algorithm than the key's fetches nothing.
	f := newJWKSFixture(t, tenantauth.JWKSConfig{})
	if _, err := f.authenticate(t, signJWT(t, jwt.SigningMethodPS256, f.key, "kid-2026", f.claims())); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("PS256 token for an RS256 key: %v", err)
	}
	if n := f.idp.requests.Load(); n != 0 {
		t.Fatalf("PS256 token for an RS256 key: %d fetches, want 0", n)
	}
}

// errTimeout stands for "a net.Error that timed out" in tables.
var errTimeout = errors.New("timeout")

// TestJWKSAddressRefused ensures that, without an allowed network, a JWKS
// URL reaching the edge's own loopback — by IP, by [::1], or by a host
// name that resolves to 127.0.0.1 — is refused before any request, and
// that allowing 127.0.0.1/32 admits exactly that address.
func TestJWKSAddressRefused(t *testing.T) {
	for _, c := range []struct {
		host  string
		allow []string
		ok    bool
	}{
		{"127.0.0.1", []string{}, false},
		{"localhost", []string{}, false},
		{"::1", []string{}, false},
		{"127.0.0.1", []string{"10.0.0.0/8"}, false},
		{"::1", []string{"127.0.0.1/32"}, false},
		{"127.0.0.1", []string{"127.0.0.1/32"}, true},
		{"localhost", []string{"127.0.0.1"}, true},
	} {
		t.Run(fmt.Sprintf("%s allow %v", c.host, c.allow), func(t *testing.T) {
			f := newJWKSFixture(t, tenantauth.JWKSConfig{AllowNetworks: c.allow})
			f.dir.jwks["acme"][0].JWKSURL = f.idp.url(c.host)
			_, err := f.authenticate(t, f.token(t, "kid-2026"))
			if c.ok {
				if err != nil || f.idp.requests.Load() != 1 {
					t.Fatalf("allowed: %v after %d requests", err, f.idp.requests.Load())
				}
				return
			}
			if !errors.Is(err, auth.ErrBadCredentials) {
				t.Fatalf("token: %v, want ErrBadCredentials", err)
			}
			if ferr := tenantauth.JWKSFetchErr(f.auth, "acme", "idp-rs"); !errors.Is(ferr, tenantauth.ErrAddressRefused) {
				t.Fatalf("fetch error %v, want ErrAddressRefused", ferr)
			}
			if n := f.idp.requests.Load(); n != 0 {
				t.Fatalf("the server got %d requests, want 0", n)
			}
		})
	}
}

// TestJWKSAddressGuard ensures the dial-time check refuses every internal
// address — loopback, private, link-local with the cloud metadata
// addresses, unspecified, multicast, reserved, and IPv4 ones hidden in
// IPv6 forms — unless an allowed network holds it, and lets public
// addresses through. It runs the dialer's check on the address alone:
// nothing is sent anywhere.
func TestJWKSAddressGuard(t *testing.T) {
	for _, c := range []struct {
		addr  string
		allow []string
		ok    bool
	}{
		{"127.0.0.1", nil, false},
		{"127.9.9.9", nil, false},
		{"[::1]", nil, false},
		{"10.1.2.3", nil, false},
		{"172.16.0.1", nil, false},
		{"192.168.1.1", nil, false},
		{"[fc00::1]", nil, false},
		{"169.254.169.254", nil, false},
		{"[fd00:ec2::254]", nil, false},
		{"100.100.100.200", nil, false},
		{"[fe80::1%eth0]", nil, false},
		{"0.0.0.0", nil, false},
		{"[::]", nil, false},
		{"224.0.0.1", nil, false},
		{"[ff02::1]", nil, false},
		{"255.255.255.255", nil, false},
		{"198.18.0.1", nil, false},
		{"[::ffff:127.0.0.1]", nil, false},
		{"[::ffff:169.254.169.254]", nil, false},
		{"[::127.0.0.1]", nil, false},
		{"[64:ff9b::a9fe:a9fe]", nil, false}, // NAT64 of 169.254.169.254
		{"[2002:7f00:1::1]", nil, false},     // 6to4 of 127.0.0.1
		{"[fec0::1]", nil, false},
		{"10.1.2.3", []string{"10.0.0.0/8"}, true},
		{"127.0.0.1", []string{"10.0.0.0/8"}, false},
		{"169.254.169.254", []string{"10.0.0.0/8"}, false},
		{"203.0.114.10", nil, true},
		{"[2001:db9::1]", nil, true},
		{"[64:ff9b::cb00:720a]", nil, true}, // NAT64 of 203.0.114.10
	} {
		err := tenantauth.CheckJWKSAddress(c.allow, c.addr+":443")
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, tenantauth.ErrAddressRefused)) {
			t.Errorf("%s (allow %v): %v, want ok=%v", c.addr, c.allow, err, c.ok)
		}
	}
	if err := tenantauth.CheckJWKSAddress([]string{"not-a-network"}, "10.0.0.1:443"); err == nil {
		t.Error("an allowed network that does not parse was accepted")
	}
}

// TestJWKSCacheControl ensures a document is used for its Cache-Control
// max-age, bounded by the refetch interval below and the maximum above,
// and for the refresh interval without one; and that a due document is
// fetched again.
func TestJWKSCacheControl(t *testing.T) {
	f := newJWKSFixture(t, tenantauth.JWKSConfig{})
	for _, c := range []struct {
		header string
		want   time.Duration
	}{
		{"", tenantauth.DefaultJWKSRefreshInterval},
		{"max-age=3600", time.Hour},
		{"public, max-age=120, must-revalidate", 2 * time.Minute},
		{"max-age=0", tenantauth.DefaultJWKSRefetchInterval},
		{"no-store", tenantauth.DefaultJWKSRefetchInterval},
		{"no-cache, max-age=600", tenantauth.DefaultJWKSRefetchInterval},
		{"max-age=99999999999999999999", tenantauth.DefaultJWKSMaxRefreshInterval},
		{"max-age=31536000", tenantauth.DefaultJWKSMaxRefreshInterval},
		{"max-age=soon", tenantauth.DefaultJWKSRefreshInterval},
	} {
		if got := tenantauth.JWKSTTL(f.auth, c.header); got != c.want {
			t.Errorf("Cache-Control %q: %v, want %v", c.header, got, c.want)
		}
	}

	f.idp.mu.Lock()
	f.idp.header.Set("Cache-Control", "max-age=120")
	f.idp.mu.Unlock()
	tok := f.token(t, "kid-2026")
	for _, step := range []struct {
		advance time.Duration
		fetches int64
	}{{0, 1}, {119 * time.Second, 1}, {time.Second, 2}, {time.Minute, 2}} {
		f.clock.Add(step.advance)
		if _, err := f.authenticate(t, tok); err != nil {
			t.Fatal(err)
		}
		if n := f.idp.requests.Load(); n != step.fetches {
			t.Fatalf("after +%v: %d fetches, want %d", step.advance, n, step.fetches)
		}
	}
}

// TestJWKSStale ensures a failing refresh keeps the last good keys until
// they are MaxStale past their refresh time, then refuses their tokens,
// and admits them again once a fetch succeeds.
func TestJWKSStale(t *testing.T) {
	f := newJWKSFixture(t, tenantauth.JWKSConfig{RefreshInterval: 10 * time.Minute, MaxStale: time.Hour, RefetchInterval: time.Minute})
	// Each token is signed at the clock's time: the clock moves past
	// their expiry.
	tok := func() string { return f.token(t, "kid-2026") }
	if _, err := f.authenticate(t, tok()); err != nil {
		t.Fatal(err)
	}
	f.idp.handle(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	f.clock.Add(10 * time.Minute)
	if _, err := f.authenticate(t, tok()); err != nil {
		t.Fatalf("refresh failed, keys 0s past their refresh time: %v", err)
	}
	if err := tenantauth.JWKSFetchErr(f.auth, "acme", "idp-rs"); !errors.Is(err, tenantauth.ErrJWKSDocument) {
		t.Fatalf("fetch error %v, want the 503", err)
	}
	f.clock.Add(59 * time.Minute)
	if _, err := f.authenticate(t, tok()); err != nil {
		t.Fatalf("keys 59m past their refresh time: %v", err)
	}
	f.clock.Add(time.Minute)
	if _, err := f.authenticate(t, tok()); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("keys MaxStale past their refresh time: %v, want ErrBadCredentials", err)
	}
	f.idp.serve(rsaJWK("kid-2026", "RS256", &f.key.PublicKey))
	f.clock.Add(time.Minute)
	if _, err := f.authenticate(t, tok()); err != nil {
		t.Fatalf("identity provider back: %v", err)
	}
}

// TestJWKSDocumentsBounded ensures the cache holds no more documents than
// the Directory has JWKS keys: a deleted or changed key's document goes.
func TestJWKSDocumentsBounded(t *testing.T) {
	f := newJWKSFixture(t, tenantauth.JWKSConfig{})
	for i := range 5 {
		f.dir.jwks["acme"] = append(f.dir.jwks["acme"], tenant.JWTKey{ID: fmt.Sprintf("k%d", i), Tenant: "acme", Algorithm: "RS256", JWKSURL: f.idp.url("127.0.0.1")})
	}
	if _, err := f.authenticate(t, f.token(t, "kid-2026")); err != nil {
		t.Fatal(err)
	}
	if n := tenantauth.JWKSDocuments(f.auth); n != 6 {
		t.Fatalf("%d documents for 6 keys", n)
	}
	f.dir.jwks["acme"] = f.dir.jwks["acme"][:2]
	f.dir.jwks["acme"][1].JWKSURL = f.idp.url("localhost")
	if _, err := f.authenticate(t, f.token(t, "kid-2026")); err != nil {
		t.Fatal(err)
	}
	if n := tenantauth.JWKSDocuments(f.auth); n != 2 {
		t.Fatalf("%d documents for 2 keys after deleting 4 and changing 1", n)
	}
}

// TestJWKSConfigValidate ensures negative bounds and unparsable networks
// are configuration errors.
func TestJWKSConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg tenantauth.JWKSConfig
		ok  bool
	}{
		{tenantauth.JWKSConfig{}, true},
		{tenantauth.JWKSConfig{AllowNetworks: []string{"10.0.0.0/8", "192.168.1.5", "fd00::/8"}}, true},
		{tenantauth.JWKSConfig{AllowNetworks: []string{"idp.internal"}}, false},
		{tenantauth.JWKSConfig{FetchTimeout: -1}, false},
		{tenantauth.JWKSConfig{RefetchInterval: time.Hour, MaxRefreshInterval: time.Minute}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v, want ok=%v", c.cfg, err, c.ok)
		}
	}
}
