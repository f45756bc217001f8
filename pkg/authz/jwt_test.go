package authz_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldmq/herald/pkg/authz"
)

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
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

// TestVerifyJWT ensures HMAC, RSA and ECDSA tokens verify with their tenant's key, and that bad signatures, algorithms, times, issuers, audiences, tenants and capability claims are refused with the right sentinel.
func TestVerifyJWT(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	hmacSecret := []byte("0123456789abcdef0123456789abcdef")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pemOf(t, &rsaKey.PublicKey)
	rsaPub, err := authz.ParsePublicKeyPEM("RS256", rsaPEM)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, err := authz.ParsePublicKeyPEM("ES256", pemOf(t, &ecKey.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	defaults, _ := authz.ParseCapabilities([]string{"subscribe:public/#"})
	keys := []authz.JWTKey{
		{ID: "h1", Tenant: "acme", Algorithm: "HS256", Key: hmacSecret, DefaultCapabilities: defaults},
		{ID: "r1", Tenant: "acme", Algorithm: "RS256", Key: rsaPub, Issuer: "https://idp.example", Audience: "herald"},
		{ID: "e1", Tenant: "acme", Algorithm: "ES256", Key: ecPub, CapabilitiesClaim: "perms"},
	}
	base := func(extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "device-7", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
				continue
			}
			c[k] = v
		}
		return c
	}
	hs := func(extra jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, hmacSecret, "", base(extra)) }
	rs := func(extra jwt.MapClaims) string {
		return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", base(merge(jwt.MapClaims{"iss": "https://idp.example", "aud": "herald"}, extra)))
	}
	es := func(extra jwt.MapClaims) string { return sign(t, jwt.SigningMethodES256, ecKey, "e1", base(extra)) }

	for _, c := range []struct {
		name    string
		token   string
		wantErr error
		wantKey string
		caps    []string
	}{
		{name: "hmac", token: hs(nil), wantKey: "h1", caps: []string{"subscribe:public/#"}},
		{name: "hmac caps claim", token: hs(jwt.MapClaims{"caps": []string{"publish:a/#"}}), wantKey: "h1", caps: []string{"publish:a/#"}},
		{name: "hmac empty caps claim", token: hs(jwt.MapClaims{"caps": []string{}}), wantKey: "h1", caps: []string{}},
		{name: "rsa", token: rs(nil), wantKey: "r1"},
		{name: "ecdsa own caps claim", token: es(jwt.MapClaims{"perms": []string{"sub,hist:x/+"}}), wantKey: "e1", caps: []string{"subscribe,history:x/+"}},
		{name: "tenant claim matches", token: hs(jwt.MapClaims{"tenant": "acme"}), wantKey: "h1", caps: []string{"subscribe:public/#"}},
		{name: "expired within leeway", token: hs(jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()}), wantKey: "h1", caps: []string{"subscribe:public/#"}},
		{name: "wrong hmac secret", token: sign(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two byt"), "", base(nil)), wantErr: authz.ErrBadSecret},
		{name: "unknown kid", token: sign(t, jwt.SigningMethodHS256, hmacSecret, "nope", base(nil)), wantErr: authz.ErrBadSecret},
		{name: "alg confusion", token: sign(t, jwt.SigningMethodHS256, rsaPEM, "r1", base(nil)), wantErr: authz.ErrBadSecret},
		{name: "alg none", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", base(nil)), wantErr: authz.ErrBadToken},
		{name: "garbage", token: "not.a.jwt", wantErr: authz.ErrBadToken},
		{name: "expired", token: hs(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()}), wantErr: authz.ErrExpired},
		{name: "not yet valid", token: hs(jwt.MapClaims{"nbf": now.Add(time.Minute).Unix()}), wantErr: authz.ErrExpired},
		{name: "issued in the future", token: hs(jwt.MapClaims{"iat": now.Add(time.Minute).Unix()}), wantErr: authz.ErrExpired},
		{name: "no exp", token: hs(jwt.MapClaims{"exp": nil}), wantErr: authz.ErrClaims},
		{name: "wrong issuer", token: rs(jwt.MapClaims{"iss": "https://evil.example"}), wantErr: authz.ErrClaims},
		{name: "wrong audience", token: rs(jwt.MapClaims{"aud": "other"}), wantErr: authz.ErrClaims},
		{name: "other tenant", token: hs(jwt.MapClaims{"tenant": "globex"}), wantErr: authz.ErrClaims},
		{name: "caps not strings", token: hs(jwt.MapClaims{"caps": []int{1}}), wantErr: authz.ErrClaims},
		{name: "caps invalid", token: hs(jwt.MapClaims{"caps": []string{"publish:a/#/b"}}), wantErr: authz.ErrClaims},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := authz.VerifyJWT(c.token, keys, authz.JWTOptions{Now: func() time.Time { return now }})
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Tenant != "acme" || id.Subject != "device-7" || id.KeyID != c.wantKey || !id.Expires.Equal(now.Add(time.Hour).Truncate(time.Second)) && c.name != "expired within leeway" {
				t.Fatalf("identity %+v", id)
			}
			var caps []string
			for _, cp := range id.Capabilities {
				caps = append(caps, cp.String())
			}
			if c.caps != nil && !slices.Equal(caps, c.caps) || c.caps == nil && len(caps) != 0 {
				t.Fatalf("capabilities %v, want %v", caps, c.caps)
			}
		})
	}

	if _, err := authz.VerifyJWT(hs(jwt.MapClaims{"exp": nil}), keys, authz.JWTOptions{Now: func() time.Time { return now }, AllowNoExpiry: true}); err != nil {
		t.Errorf("AllowNoExpiry: %v", err)
	}
	kid, tenant, err := authz.PeekJWT(hs(jwt.MapClaims{"tenant": "acme"}), "")
	if err != nil || kid != "" || tenant != "acme" {
		t.Errorf("PeekJWT = %q, %q, %v", kid, tenant, err)
	}
}

// TestParsePublicKeyPEM ensures public keys are accepted only for algorithms they suit, and weak or foreign keys are refused.
func TestParsePublicKeyPEM(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, c := range []struct {
		alg string
		pem []byte
		ok  bool
	}{
		{"RS256", pemOf(t, &rsaKey.PublicKey), true},
		{"PS512", pemOf(t, &rsaKey.PublicKey), true},
		{"ES256", pemOf(t, &rsaKey.PublicKey), false},
		{"RS256", pemOf(t, &weak.PublicKey), false},
		{"ES256", pemOf(t, &p256.PublicKey), true},
		{"ES384", pemOf(t, &p256.PublicKey), false},
		{"ES384", pemOf(t, &p384.PublicKey), true},
		{"HS256", pemOf(t, &p256.PublicKey), false},
		{"RS256", []byte("junk"), false},
		{"RS256", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), false},
		{"RS256", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)}), true},
	} {
		_, err := authz.ParsePublicKeyPEM(c.alg, c.pem)
		if (err == nil) != c.ok {
			t.Errorf("ParsePublicKeyPEM(%s, %.30q) = %v, want ok=%v", c.alg, c.pem, err, c.ok)
		}
	}
}

// TestVerifyJWTByKID ensures a key with a KID (a JWK read from a JWKS
// document) is found by that kid, never by its Herald ID, and that the
// identity names the Herald key.
func TestVerifyJWTByKID(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys := []authz.JWTKey{{ID: "herald-key", KID: "idp-2026", Tenant: "acme", Algorithm: "RS256", Key: &rsaKey.PublicKey}}
	claims := jwt.MapClaims{"sub": "d", "exp": now.Add(time.Hour).Unix()}
	opts := authz.JWTOptions{Now: func() time.Time { return now }}
	for _, c := range []struct {
		kid string
		ok  bool
	}{{"idp-2026", true}, {"", true}, {"herald-key", false}, {"idp-2025", false}} {
		id, err := authz.VerifyJWT(sign(t, jwt.SigningMethodRS256, rsaKey, c.kid, claims), keys, opts)
		if c.ok && (err != nil || id.KeyID != "herald-key") {
			t.Errorf("kid %q: %+v, %v; want key herald-key", c.kid, id, err)
		}
		if !c.ok && !errors.Is(err, authz.ErrBadSecret) {
			t.Errorf("kid %q: %v, want ErrBadSecret", c.kid, err)
		}
	}
}

// TestPeekToken ensures PeekToken reads the algorithm, kid, tenant claim
// and issuer of a token without verifying it, and refuses what does not
// parse.
func TestPeekToken(t *testing.T) {
	tok := sign(t, jwt.SigningMethodHS256, []byte("any secret will do, it is unread"), "k9",
		jwt.MapClaims{"org": "acme", "iss": "https://idp.example", "tenant": "other"})
	p, err := authz.PeekToken(tok, "org")
	if err != nil || p != (authz.JWTPeek{Alg: "HS256", KID: "k9", Tenant: "acme", Issuer: "https://idp.example"}) {
		t.Errorf("PeekToken = %+v, %v", p, err)
	}
	if _, err := authz.PeekToken("a.b", ""); !errors.Is(err, authz.ErrBadToken) {
		t.Errorf("PeekToken(garbage) = %v, want ErrBadToken", err)
	}
}

// TestCheckPublicKey ensures keys of a type Herald does not verify with
// (Ed25519, HMAC secrets) are refused whatever the algorithm.
func TestCheckPublicKey(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		if err := authz.CheckPublicKey(alg, edPub); err == nil {
			t.Errorf("CheckPublicKey(%s, ed25519) accepted", alg)
		}
	}
	if err := authz.CheckPublicKey("RS256", []byte("a secret")); err == nil {
		t.Error("CheckPublicKey(RS256, []byte) accepted")
	}
}

func merge(a, b jwt.MapClaims) jwt.MapClaims {
	for k, v := range b {
		a[k] = v
	}
	return a
}
