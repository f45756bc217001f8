package authz_test

import (
	"errors"
	"testing"

	"github.com/heraldmq/herald/pkg/authz"
)

// TestParseCapability ensures capability strings parse into actions and filter, and malformed ones are ErrInvalidCapability.
func TestParseCapability(t *testing.T) {
	for s, want := range map[string]authz.Capability{
		"publish:sensors/#":             {Filter: "sensors/#", Actions: authz.Publish},
		"pub,sub:a/+":                   {Filter: "a/+", Actions: authz.Publish | authz.Subscribe},
		"subscribe,history:a:b/c":       {Filter: "a:b/c", Actions: authz.Subscribe | authz.History},
		"all:#":                         {Filter: "#", Actions: authz.AllActions},
		" Publish , HISTORY :x":         {Filter: "x", Actions: authz.Publish | authz.History},
		"publish,subscribe,history:a/b": {Filter: "a/b", Actions: authz.AllActions},
	} {
		got, err := authz.ParseCapability(s)
		if err != nil || got != want {
			t.Errorf("ParseCapability(%q) = %+v, %v; want %+v", s, got, err, want)
		}
		if again, err := authz.ParseCapability(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q via %q = %+v, %v", s, got.String(), again, err)
		}
	}
	for _, s := range []string{"", "sensors/#", "publish:", "fly:a", ":a", "publish:a/#/b", "publish:a+", "sub:a\x00"} {
		if _, err := authz.ParseCapability(s); !errors.Is(err, authz.ErrInvalidCapability) {
			t.Errorf("ParseCapability(%q) = %v, want ErrInvalidCapability", s, err)
		}
	}
	if err := (authz.Capability{Filter: "a", Actions: 1 << 6}).Validate(); !errors.Is(err, authz.ErrInvalidCapability) {
		t.Errorf("unknown action bit accepted: %v", err)
	}
}

// TestCapabilitiesAllows ensures publish uses matching, subscribe and history use coverage, each only with its own action, and nothing is allowed by default.
func TestCapabilitiesAllows(t *testing.T) {
	caps, err := authz.ParseCapabilities([]string{"publish:sensors/#", "subscribe:sensors/+/temp", "subscribe,history:alerts/#"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		action authz.Action
		topic  string
		want   bool
	}{
		{authz.Publish, "sensors/a", true},
		{authz.Publish, "sensors", true},
		{authz.Publish, "alerts/a", false},
		{authz.Subscribe, "sensors/+/temp", true},
		{authz.Subscribe, "sensors/x/temp", true},
		{authz.Subscribe, "sensors/#", false},
		{authz.Subscribe, "#", false},
		{authz.Subscribe, "alerts/+", true},
		{authz.History, "alerts/x", true},
		{authz.History, "sensors/x/temp", false},
		{authz.Subscribe | authz.History, "alerts/#", true},
		{authz.Subscribe | authz.History, "sensors/a/temp", false},
		{0, "sensors/a", false},
		{1 << 5, "sensors/a", false},
	} {
		if got := caps.Allows(c.action, c.topic); got != c.want {
			t.Errorf("Allows(%v, %q) = %v, want %v", c.action, c.topic, got, c.want)
		}
	}
	var none authz.Capabilities
	if none.CanPublish("a") || none.CanSubscribe("a") || none.CanReadHistory("a") {
		t.Error("empty capabilities allowed something")
	}
}

// TestTokens ensures NewToken's tokens parse back into their id and secret, and other strings are ErrBadToken.
func TestTokens(t *testing.T) {
	tok, id, secret := authz.NewToken(authz.KindAPIKey)
	if !authz.ValidKeyID(id) || len(secret) != 43 {
		t.Fatalf("token %q: id %q secret %q", tok, id, secret)
	}
	gotID, gotSecret, err := authz.ParseToken(authz.KindAPIKey, tok)
	if err != nil || gotID != id || gotSecret != secret {
		t.Fatalf("ParseToken = %q, %q, %v", gotID, gotSecret, err)
	}
	if _, _, err := authz.ParseToken(authz.KindAdminKey, tok); !errors.Is(err, authz.ErrBadToken) {
		t.Errorf("API key parsed as admin key: %v", err)
	}
	for _, s := range []string{"", "hk_", "hk_short_x", "hk_ABCDEFGHIJKLMNOP_x", "hk_abcdefghijklmnop_", "hk_abcdefghijklmnopx", "xx_abcdefghijklmnop_s"} {
		if _, _, err := authz.ParseToken(authz.KindAPIKey, s); !errors.Is(err, authz.ErrBadToken) {
			t.Errorf("ParseToken(%q) = %v, want ErrBadToken", s, err)
		}
	}
	if a, b := authz.NewID(), authz.NewID(); a == b {
		t.Error("two ids alike")
	}
}

// TestHashSecret ensures an argon2id hash verifies its secret only, records its parameters, and unreadable or abusive hashes are refused.
func TestHashSecret(t *testing.T) {
	h := authz.HashSecret("s3cret", authz.DefaultArgon2)
	if want := "$argon2id$v=19$m=19456,t=2,p=1$"; h[:len(want)] != want {
		t.Fatalf("hash %q lacks the parameters %q", h, want)
	}
	if err := authz.VerifySecret("s3cret", h); err != nil {
		t.Fatal(err)
	}
	if err := authz.VerifySecret("s3creT", h); !errors.Is(err, authz.ErrBadSecret) {
		t.Fatalf("wrong secret: %v", err)
	}
	if h2 := authz.HashSecret("s3cret", authz.DefaultArgon2); h2 == h {
		t.Fatal("two hashes of one secret alike: no salt")
	}
	cheap := authz.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	if err := authz.VerifySecret("x", authz.HashSecret("x", cheap)); err != nil {
		t.Fatalf("other parameters: %v", err)
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA"} {
		if err := authz.VerifySecret("x", bad); !errors.Is(err, authz.ErrBadToken) {
			t.Errorf("VerifySecret with hash %q = %v, want ErrBadToken", bad, err)
		}
	}
}

// TestVerifyCache ensures the cache answers repeated successes, never caches a failure, and forgets a pair when the hash changes.
func TestVerifyCache(t *testing.T) {
	p := authz.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	c := authz.NewVerifyCache(2)
	h := authz.HashSecret("a", p)
	for range 3 {
		if err := c.Verify("a", h); err != nil {
			t.Fatal(err)
		}
		if err := c.Verify("b", h); !errors.Is(err, authz.ErrBadSecret) {
			t.Fatalf("wrong secret: %v", err)
		}
	}
	if err := c.Verify("a", authz.HashSecret("other", p)); !errors.Is(err, authz.ErrBadSecret) {
		t.Fatalf("cached success leaked to another hash: %v", err)
	}
	for _, s := range []string{"x", "y", "z"} { // overflow starts over
		if err := c.Verify(s, authz.HashSecret(s, p)); err != nil {
			t.Fatal(err)
		}
	}
}
