package auth_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldmq/herald/services/edge/internal/auth"
)

// TestAnonymous ensures the first-cut authenticator still admits everyone into its tenant, and refuses everyone without one.
func TestAnonymous(t *testing.T) {
	id, err := auth.Anonymous{Tenant: "dev"}.Authenticate(t.Context(), auth.Credentials{Username: "u"})
	if err != nil || id.Tenant != "dev" || id.Subject != "u" || !id.Anonymous || id.Credential != "" {
		t.Fatalf("%+v, %v", id, err)
	}
	if _, err := (auth.Anonymous{}).Authenticate(t.Context(), auth.Credentials{}); !errors.Is(err, auth.ErrNotAuthorized) {
		t.Fatalf("no tenant: %v", err)
	}
}

// TestSentinels ensures the refusals transports already map keep mapping: ErrForbidden and ErrRevoked are ErrNotAuthorized, ErrRateLimited is neither that nor ErrBadCredentials, and RetryAfter reads a wrapped RateLimitError.
func TestSentinels(t *testing.T) {
	for _, err := range []error{auth.ErrForbidden, auth.ErrRevoked} {
		if !errors.Is(err, auth.ErrNotAuthorized) {
			t.Errorf("%v is not ErrNotAuthorized", err)
		}
	}
	rl := fmt.Errorf("connect: %w", &auth.RateLimitError{What: "address", RetryAfter: 1500 * time.Millisecond})
	if !errors.Is(rl, auth.ErrRateLimited) || errors.Is(rl, auth.ErrBadCredentials) || errors.Is(rl, auth.ErrNotAuthorized) {
		t.Fatalf("%v maps wrongly", rl)
	}
	if d := auth.RetryAfter(rl); d != 1500*time.Millisecond {
		t.Fatalf("RetryAfter = %v", d)
	}
	if d := auth.RetryAfter(auth.ErrBadCredentials); d != 0 {
		t.Fatalf("RetryAfter(other) = %v", d)
	}
}

// TestSourceKey ensures per-source bounds count an IPv4 address as itself
// and an IPv6 address by its /64, with or without a port.
func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"192.0.2.7:4321":        "192.0.2.7",
		"192.0.2.7":             "192.0.2.7",
		"[2001:db8:1:2:3::9]:1": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":  "2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:80": "192.0.2.7",
		"pipe":                  "pipe",
	} {
		if got := auth.SourceKey(in); got != want {
			t.Errorf("SourceKey(%q) = %q, want %q", in, got, want)
		}
	}
}
