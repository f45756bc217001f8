package authz_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/authz"
)

// FuzzVerifyJWT ensures VerifyJWT and PeekJWT never panic on any token:
// raw text, or a header and claims of any JSON correctly signed with the
// tenant's HS256 key (so claim handling is reached). A refusal wraps
// one of authz's sentinel errors (what the edge maps to 0x86/401); an accepted token names the key's tenant and has an expiry
// (none was allowed) not before now minus the leeway.
func FuzzVerifyJWT(f *testing.F) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	exp := `,"exp":1795600000`
	for _, s := range [][2]string{
		{`{"alg":"HS256","typ":"JWT"}`, `{"sub":"d"` + exp + `}`},
		{`{"alg":"HS256","kid":"h1"}`, `{"sub":"d","tenant":"beta"` + exp + `}`},
		{`{"alg":"none"}`, `{"sub":"d"` + exp + `}`},
		{`{"alg":"HS256"}`, `{"sub":7,"exp":"soon"}`},
		{`{"alg":"HS256"}`, `{"caps":["publish:#","x"],"aud":[1,2]` + exp + `}`},
		{`{"alg":"HS256"}`, `{"exp":1e400}`},
		{`{"alg":"RS256","kid":"h1"}`, `{}`},
		{`[`, `]`},
	} {
		f.Add(s[0], s[1], "", true)
	}
	f.Add("", "", "eyJhbGciOiJIUzI1NiJ9.e30.", false)
	f.Add("", "", "a.b.c.d", false)
	keys := []authz.JWTKey{{ID: "h1", Tenant: "acme", Algorithm: "HS256", Key: secret}}
	opts := authz.JWTOptions{Now: func() time.Time { return now }}
	f.Fuzz(func(t *testing.T, header, claims, raw string, signed bool) {
		token := raw
		if signed {
			b64 := base64.RawURLEncoding
			token = b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(claims))
			mac := hmac.New(sha256.New, secret)
			mac.Write([]byte(token))
			token += "." + b64.EncodeToString(mac.Sum(nil))
		}
		_, _, _ = authz.PeekJWT(token, "")
		_, _ = authz.PeekToken(token, "")
		id, err := authz.VerifyJWT(token, keys, opts)
		if err != nil {
			if !errors.Is(err, authz.ErrBadToken) && !errors.Is(err, authz.ErrBadSecret) &&
				!errors.Is(err, authz.ErrExpired) && !errors.Is(err, authz.ErrClaims) {
				t.Fatalf("refusal %v wraps none of authz's sentinels", err)
			}
			return
		}
		if id.Tenant != "acme" || id.KeyID != "h1" {
			t.Fatalf("accepted into tenant %q by key %q", id.Tenant, id.KeyID)
		}
		if id.Expires.IsZero() || id.Expires.Before(now.Add(-authz.DefaultJWTLeeway)) {
			t.Fatalf("accepted a token expiring %v at %v", id.Expires, now)
		}
	})
}
