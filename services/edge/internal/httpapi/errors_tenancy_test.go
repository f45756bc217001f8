package httpapi

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/limits"
)

// TestClassifyTenancy pins the HTTP statuses of authorization and tenant
// limits, the Retry-After of a 429 and the challenge of a 401: a refused
// or revoked credential is 401 whatever else its error wraps.
func TestClassifyTenancy(t *testing.T) {
	for _, tc := range []struct {
		err        error
		code       string
		status     int
		retryAfter string
	}{
		{fmt.Errorf("x: %w", auth.ErrForbidden), fault.CodeNotAuthorized, 403, ""},
		{auth.ErrRevoked, fault.CodeNotAuthenticated, 401, ""},
		{fmt.Errorf("%w: API key deleted", auth.ErrRevoked), fault.CodeNotAuthenticated, 401, ""},
		{auth.ErrNotAuthorized, fault.CodeNotAuthorized, 403, ""},
		{auth.ErrBadCredentials, fault.CodeNotAuthenticated, 401, ""},
		// A JWT whose capability claim holds a malformed filter.
		{fmt.Errorf("%w: %w", auth.ErrBadCredentials, fmt.Errorf("%w: claim caps: %w", authz.ErrClaims, topic.ErrBadWildcard)),
			fault.CodeNotAuthenticated, 401, ""},
		{&auth.RateLimitError{What: "key", RetryAfter: 2500 * time.Millisecond}, fault.CodeRateLimited, 429, "3"},
		{limits.ErrRateLimited, fault.CodeRateLimited, 429, "1"},
		{limits.ErrConnectionLimit, fault.CodeRateLimited, 429, "1"},
		{limits.ErrSubscriptionLimit, fault.CodeRateLimited, 429, "1"},
		{limits.ErrPayloadTooLarge, fault.CodeTooLarge, 413, ""},
	} {
		w := httptest.NewRecorder()
		WriteError(w, tc.err)
		if code, status := Classify(tc.err); code != tc.code || status != tc.status || w.Code != tc.status {
			t.Errorf("%v: %s %d (written %d), want %s %d", tc.err, code, status, w.Code, tc.code, tc.status)
		}
		if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
			t.Errorf("%v: Retry-After %q, want %q", tc.err, got, tc.retryAfter)
		}
		if got := w.Header().Get("WWW-Authenticate"); (tc.status == 401) != (got == WWWAuthenticate) {
			t.Errorf("%v: WWW-Authenticate %q", tc.err, got)
		}
	}
}
