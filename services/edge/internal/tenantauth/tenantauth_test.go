package tenantauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/tenantauth"
)

// cheap hashes keep unit tests fast; parameters live in each hash.
var cheap = authz.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// fakeDir is a Directory held in maps.
type fakeDir struct {
	tenants map[string]tenant.Tenant
	keys    map[string]tenant.APIKey
	jwt     map[string][]authz.JWTKey
	jwks    map[string][]tenant.JWTKey
	byFP    map[string]tenant.MTLSIdentity
	bySubj  map[string]tenant.MTLSIdentity
}

func newFakeDir(tenants ...string) *fakeDir {
	d := &fakeDir{tenants: map[string]tenant.Tenant{}, keys: map[string]tenant.APIKey{}, jwt: map[string][]authz.JWTKey{},
		jwks: map[string][]tenant.JWTKey{}, byFP: map[string]tenant.MTLSIdentity{}, bySubj: map[string]tenant.MTLSIdentity{}}
	for _, t := range tenants {
		d.tenants[t] = tenant.Tenant{ID: t}
	}
	return d
}

func (d *fakeDir) Tenant(id string) (tenant.Tenant, bool) { t, ok := d.tenants[id]; return t, ok }
func (d *fakeDir) APIKey(id string) (tenant.APIKey, bool) { k, ok := d.keys[id]; return k, ok }
func (d *fakeDir) JWTVerifiers(tid string) []authz.JWTKey { return d.jwt[tid] }
func (d *fakeDir) JWKSKeys(tid string) []tenant.JWTKey    { return d.jwks[tid] }
func (d *fakeDir) MTLSByFingerprint(fp string) (tenant.MTLSIdentity, bool) {
	m, ok := d.byFP[fp]
	return m, ok
}
func (d *fakeDir) MTLSBySubject(s string) (tenant.MTLSIdentity, bool) {
	m, ok := d.bySubj[s]
	return m, ok
}

// addKey stores a key of the tenant and returns its token.
func (d *fakeDir) addKey(t *testing.T, tenantID string, caps ...string) (token string, k tenant.APIKey) {
	t.Helper()
	token, id, secret := authz.NewToken(authz.KindAPIKey)
	cs, err := authz.ParseCapabilities(caps)
	if err != nil {
		t.Fatal(err)
	}
	k = tenant.APIKey{ID: id, Tenant: tenantID, Hash: authz.HashSecret(secret, cheap), Capabilities: cs}
	d.keys[id] = k
	return token, k
}

func newAuth(t *testing.T, cfg tenantauth.Config) *tenantauth.Authenticator {
	t.Helper()
	a, err := tenantauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAPIKey ensures API key tokens authenticate into their tenant with their capabilities, as the MQTT password or a bearer token, and that wrong, unknown, malformed and expired keys and keys of a deleted tenant are refused as bad credentials.
func TestAPIKey(t *testing.T) {
	d := newFakeDir("acme", "gone")
	good, gk := d.addKey(t, "acme", "publish:a/#")
	expired, ek := d.addKey(t, "acme", "publish:a/#")
	ek.ExpiresAt = time.Now().Add(-time.Minute)
	d.keys[ek.ID] = ek
	orphan, _ := d.addKey(t, "gone", "publish:a/#")
	delete(d.tenants, "gone")
	unknown, _, _ := authz.NewToken(authz.KindAPIKey)
	a := newAuth(t, tenantauth.Config{Directory: d, FailureBurst: 100})

	for _, tc := range []struct {
		name string
		c    auth.Credentials
		want error
	}{
		{"password", auth.Credentials{Username: "whatever", Password: []byte(good)}, nil},
		{"bearer", auth.Credentials{Token: good}, nil},
		{"wrong secret", auth.Credentials{Token: good[:len(good)-2] + "xx"}, auth.ErrBadCredentials},
		{"unknown key", auth.Credentials{Token: unknown}, auth.ErrBadCredentials},
		{"malformed", auth.Credentials{Token: "hk_short"}, auth.ErrBadCredentials},
		{"garbage", auth.Credentials{Token: "hello"}, auth.ErrBadCredentials},
		{"expired", auth.Credentials{Token: expired}, authz.ErrExpired},
		{"tenant deleted", auth.Credentials{Token: orphan}, auth.ErrBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authenticate(t.Context(), tc.c)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			if id.Tenant != "acme" || id.Subject != gk.ID || id.Credential != "key:"+gk.ID || id.Anonymous ||
				!slices.Equal(id.Capabilities, gk.Capabilities) {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
}

// TestAnonymous ensures clients without credentials land in the anonymous tenant when one is configured, and are refused as not authorized otherwise.
func TestAnonymous(t *testing.T) {
	d := newFakeDir("acme")
	id, err := newAuth(t, tenantauth.Config{Directory: d, AnonymousTenant: "dev"}).Authenticate(t.Context(), auth.Credentials{Username: "u"})
	if err != nil || id.Tenant != "dev" || !id.Anonymous || id.Subject != "u" {
		t.Fatalf("anonymous: %+v, %v", id, err)
	}
	_, err = newAuth(t, tenantauth.Config{Directory: d}).Authenticate(t.Context(), auth.Credentials{Username: "u"})
	if !errors.Is(err, auth.ErrNotAuthorized) {
		t.Fatalf("no anonymous tenant: err = %v", err)
	}
}

// TestEmptyPasswordIsAPassword ensures a client that sent a zero-length
// password is refused as bad credentials, never admitted as anonymous.
func TestEmptyPasswordIsAPassword(t *testing.T) {
	a := newAuth(t, tenantauth.Config{Directory: newFakeDir("acme"), AnonymousTenant: "dev"})
	_, err := a.Authenticate(t.Context(), auth.Credentials{Username: "u", Password: []byte{}, HasPassword: true})
	if !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("empty password: err = %v, want bad credentials", err)
	}
}

var hmacSecret = []byte("0123456789abcdef0123456789abcdef")

func signHS(t *testing.T, kid string, claims jwt.MapClaims) string {
	t.Helper()
	return signJWT(t, jwt.SigningMethodHS256, hmacSecret, kid, claims)
}

// TestJWT ensures JWTs verify with the keys of the tenant they name (claim or MQTT username), take capabilities from the claim or the key's defaults, and that expired, foreign, unsigned-for and replayed tokens are refused.
func TestJWT(t *testing.T) {
	d := newFakeDir("acme", "other")
	def, _ := authz.ParseCapabilities([]string{"subscribe:news/#"})
	d.jwt["acme"] = []authz.JWTKey{{ID: "k1", Tenant: "acme", Algorithm: "HS256", Key: hmacSecret, DefaultCapabilities: def}}
	a := newAuth(t, tenantauth.Config{Directory: d, FailureBurst: 100})
	exp := time.Now().Add(time.Hour).Unix()

	withCaps := signHS(t, "k1", jwt.MapClaims{"tenant": "acme", "sub": "alice", "exp": exp, "caps": []string{"publish:a/#"}})
	id, err := a.Authenticate(t.Context(), auth.Credentials{Token: withCaps})
	if err != nil || id.Tenant != "acme" || id.Subject != "alice" || id.Credential != "jwt:k1" ||
		!id.Capabilities.CanPublish("a/b") || id.Capabilities.CanSubscribe("news/x") || id.Expires.Unix() != exp {
		t.Fatalf("with caps: %+v, %v", id, err)
	}
	byUsername := signHS(t, "k1", jwt.MapClaims{"sub": "bob", "exp": exp})
	id, err = a.Authenticate(t.Context(), auth.Credentials{Username: "acme", Password: []byte(byUsername)})
	if err != nil || id.Tenant != "acme" || !id.Capabilities.CanSubscribe("news/x") || id.Capabilities.CanPublish("a/b") {
		t.Fatalf("defaults, tenant from username: %+v, %v", id, err)
	}

	for _, tc := range []struct {
		name string
		c    auth.Credentials
		want error
	}{
		{"expired", auth.Credentials{Token: signHS(t, "k1", jwt.MapClaims{"tenant": "acme", "exp": time.Now().Add(-time.Hour).Unix()})}, authz.ErrExpired},
		{"no exp", auth.Credentials{Token: signHS(t, "k1", jwt.MapClaims{"tenant": "acme"})}, auth.ErrBadCredentials},
		{"no tenant", auth.Credentials{Token: byUsername}, auth.ErrBadCredentials},
		{"other tenant's keys", auth.Credentials{Token: signHS(t, "k1", jwt.MapClaims{"tenant": "other", "exp": exp})}, auth.ErrBadCredentials},
		{"unknown tenant", auth.Credentials{Token: signHS(t, "k1", jwt.MapClaims{"tenant": "nope", "exp": exp})}, auth.ErrBadCredentials},
		{"username says other tenant", auth.Credentials{Username: "other", Password: []byte(byUsername)}, auth.ErrBadCredentials},
		{"bad signature", auth.Credentials{Token: withCaps[:len(withCaps)-3] + "abc"}, auth.ErrBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := a.Authenticate(t.Context(), tc.c); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("single use", func(t *testing.T) {
		a := newAuth(t, tenantauth.Config{Directory: d, Replay: tenantauth.NewMemoryReplay(10, nil)})
		once := signHS(t, "k1", jwt.MapClaims{"tenant": "acme", "exp": exp, "jti": "j1"})
		if _, err := a.Authenticate(t.Context(), auth.Credentials{Token: once}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(t.Context(), auth.Credentials{Token: once}); !errors.Is(err, auth.ErrBadCredentials) {
			t.Fatalf("replay: err = %v", err)
		}
		if _, err := a.Authenticate(t.Context(), auth.Credentials{Token: withCaps}); !errors.Is(err, authz.ErrClaims) {
			t.Fatalf("no jti: err = %v", err)
		}
	})
}

func certificate(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"acme"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCertificate ensures a client certificate maps to its identity by fingerprint, by subject only when its chain was verified, and that an unknown certificate falls back to the anonymous rule.
func TestCertificate(t *testing.T) {
	d := newFakeDir("acme")
	pinned, bySubject, unknown := certificate(t, "pinned"), certificate(t, "dn"), certificate(t, "stranger")
	caps, _ := authz.ParseCapabilities([]string{"publish:dev/#"})
	d.byFP[tenant.Fingerprint(pinned)] = tenant.MTLSIdentity{ID: "m1", Tenant: "acme", FingerprintSHA256: tenant.Fingerprint(pinned), Capabilities: caps}
	d.bySubj[bySubject.Subject.String()] = tenant.MTLSIdentity{ID: "m2", Tenant: "acme", Subject: bySubject.Subject.String(), Capabilities: caps}
	a := newAuth(t, tenantauth.Config{Directory: d})

	id, err := a.Authenticate(t.Context(), auth.Credentials{Certificate: pinned})
	if err != nil || id.Credential != "mtls:m1" || id.Tenant != "acme" || !id.Capabilities.CanPublish("dev/x") {
		t.Fatalf("pinned: %+v, %v", id, err)
	}
	if err := a.Check(id); err != nil {
		t.Fatalf("Check(pinned) = %v", err)
	}
	if _, err := a.Authenticate(t.Context(), auth.Credentials{Certificate: bySubject}); !errors.Is(err, auth.ErrNotAuthorized) {
		t.Fatalf("subject, chain not verified: err = %v", err)
	}
	id, err = a.Authenticate(t.Context(), auth.Credentials{Certificate: bySubject, CertificateVerified: true})
	if err != nil || id.Credential != "mtls:m2" {
		t.Fatalf("subject: %+v, %v", id, err)
	}
	if err := a.Check(id); err != nil {
		t.Fatalf("Check(subject) = %v", err)
	}
	if _, err := a.Authenticate(t.Context(), auth.Credentials{Certificate: unknown, CertificateVerified: true}); !errors.Is(err, auth.ErrNotAuthorized) {
		t.Fatalf("unknown: err = %v", err)
	}
}

// TestFailureRateLimit ensures failed attempts are limited per source address and per key id: past the burst, even the right key is refused with ErrRateLimited and a retry hint, other sources and keys are unaffected, and the bucket refills.
func TestFailureRateLimit(t *testing.T) {
	d := newFakeDir("acme")
	good, _ := d.addKey(t, "acme", "publish:a/#")
	other, _ := d.addKey(t, "acme", "publish:a/#")
	now := time.Now()
	a := newAuth(t, tenantauth.Config{Directory: d, FailuresPerSecond: 1, FailureBurst: 3, Now: func() time.Time { return now }})
	ctx := context.Background()
	bad := good[:len(good)-2] + "xx"

	for i := range 3 {
		if _, err := a.Authenticate(ctx, auth.Credentials{Token: bad, RemoteAddr: "192.0.2.1:1000"}); !errors.Is(err, auth.ErrBadCredentials) {
			t.Fatalf("failure %d: err = %v", i, err)
		}
	}
	_, err := a.Authenticate(ctx, auth.Credentials{Token: other, RemoteAddr: "192.0.2.1:2000"})
	if !errors.Is(err, auth.ErrRateLimited) || errors.Is(err, auth.ErrBadCredentials) || auth.RetryAfter(err) <= 0 {
		t.Fatalf("address over its burst: err = %v, retry after %v", err, auth.RetryAfter(err))
	}
	// The key id is limited too, from any address.
	if _, err := a.Authenticate(ctx, auth.Credentials{Token: good, RemoteAddr: "198.51.100.7:1"}); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("key over its burst: err = %v", err)
	}
	if _, err := a.Authenticate(ctx, auth.Credentials{Token: other, RemoteAddr: "198.51.100.7:1"}); err != nil {
		t.Fatalf("another key from another address: %v", err)
	}
	// IPv6 addresses count by /64.
	for range 3 {
		a.Authenticate(ctx, auth.Credentials{Token: "hk_garbage", RemoteAddr: "[2001:db8::1]:1"})
	}
	if _, err := a.Authenticate(ctx, auth.Credentials{Token: other, RemoteAddr: "[2001:db8::2]:1"}); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("same /64: err = %v", err)
	}
	now = now.Add(1100 * time.Millisecond)
	if _, err := a.Authenticate(ctx, auth.Credentials{Token: good, RemoteAddr: "192.0.2.1:3000"}); err != nil {
		t.Fatalf("after a refill: %v", err)
	}
}

// TestFailureLimitConcurrent ensures simultaneous wrong guesses from one
// address are limited like sequential ones: each attempt takes its token
// before the secret is hashed, so no more than the burst are verified
// however many arrive at once, and successes give their token back.
func TestFailureLimitConcurrent(t *testing.T) {
	d := newFakeDir("acme")
	good, _ := d.addKey(t, "acme", "publish:a/#")
	now := time.Now()
	a := newAuth(t, tenantauth.Config{Directory: d, FailuresPerSecond: 1, FailureBurst: 5, Now: func() time.Time { return now }})
	// Successes first: they must not consume the address's tokens.
	for range 20 {
		if _, err := a.Authenticate(context.Background(), auth.Credentials{Token: good, RemoteAddr: "192.0.2.9:1"}); err != nil {
			t.Fatalf("right key: %v", err)
		}
	}
	if n := tenantauth.Tracked(a); n != 0 {
		t.Fatalf("%d buckets tracked after successes only, want 0", n)
	}
	var wg sync.WaitGroup
	var bad, limited atomic.Int32
	for i := range 40 {
		wg.Go(func() {
			guess := good[:len(good)-4] + fmt.Sprintf("%04d", i)
			_, err := a.Authenticate(context.Background(), auth.Credentials{Token: guess, RemoteAddr: "192.0.2.9:2"})
			switch {
			case errors.Is(err, auth.ErrRateLimited):
				limited.Add(1)
			case errors.Is(err, auth.ErrBadCredentials):
				bad.Add(1)
			default:
				t.Errorf("guess %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if bad.Load() != 5 || limited.Load() != 35 {
		t.Fatalf("%d guesses verified, %d limited; want 5 and 35", bad.Load(), limited.Load())
	}
}

// TestFailureMapBounded ensures the failure map stays bounded under a flood of distinct addresses, and still limits the latest ones.
func TestFailureMapBounded(t *testing.T) {
	d := newFakeDir("acme")
	good, _ := d.addKey(t, "acme", "publish:a/#")
	a := newAuth(t, tenantauth.Config{Directory: d, FailureBurst: 1, MaxTracked: 1000})
	for i := range 5000 {
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		a.Authenticate(context.Background(), auth.Credentials{Token: "garbage", RemoteAddr: addr})
		if n := tenantauth.Tracked(a); n > 1000 {
			t.Fatalf("tracking %d keys, max 1000", n)
		}
	}
	if _, err := a.Authenticate(context.Background(), auth.Credentials{Token: good, RemoteAddr: "10.0.19.135"}); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("latest address: err = %v", err)
	}
}

// TestCheck ensures Check holds an identity while its credential is unchanged, and refuses it with ErrRevoked once the key is deleted or changed, the tenant deleted, or the anonymous tenant is another.
func TestCheck(t *testing.T) {
	d := newFakeDir("acme")
	token, k := d.addKey(t, "acme", "publish:a/#")
	a := newAuth(t, tenantauth.Config{Directory: d, AnonymousTenant: "dev"})
	id, err := a.Authenticate(t.Context(), auth.Credentials{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Check(id); err != nil {
		t.Fatalf("unchanged: %v", err)
	}
	if err := a.Check(auth.Identity{Tenant: "dev", Anonymous: true}); err != nil {
		t.Fatalf("anonymous: %v", err)
	}
	if err := a.Check(auth.Identity{Tenant: "acme", Anonymous: true}); !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("anonymous elsewhere: %v", err)
	}
	changed := k
	changed.Capabilities, _ = authz.ParseCapabilities([]string{"publish:b/#"})
	d.keys[k.ID] = changed
	if err := a.Check(id); !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("capabilities changed: %v", err)
	}
	d.keys[k.ID] = k
	delete(d.tenants, "acme")
	if err := a.Check(id); !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("tenant deleted: %v", err)
	}
	d.tenants["acme"] = tenant.Tenant{ID: "acme"}
	delete(d.keys, k.ID)
	if err := a.Check(id); !errors.Is(err, auth.ErrRevoked) || !errors.Is(err, auth.ErrNotAuthorized) {
		t.Fatalf("key deleted: %v", err)
	}
}
