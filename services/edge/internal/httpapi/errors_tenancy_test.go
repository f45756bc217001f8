package httpapi

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/limits"
)

// TestClassifyTenancy pins the HTTP statuses of authorization and tenant
// limits, and the Retry-After of a 429.
func TestClassifyTenancy(t *testing.T) {
	for _, tc := range []struct {
		err        error
		code       string
		status     int
		retryAfter string
	}{
		{fmt.Errorf("x: %w", auth.ErrForbidden), CodeNotAuthorized, 403, ""},
		{auth.ErrRevoked, CodeNotAuthorized, 403, ""},
		{auth.ErrBadCredentials, CodeNotAuthenticated, 401, ""},
		{&auth.RateLimitError{What: "key", RetryAfter: 2500 * time.Millisecond}, CodeRateLimited, 429, "3"},
		{limits.ErrRateLimited, CodeRateLimited, 429, "1"},
		{limits.ErrConnectionLimit, CodeRateLimited, 429, "1"},
		{limits.ErrSubscriptionLimit, CodeRateLimited, 429, "1"},
		{limits.ErrPayloadTooLarge, CodeTooLarge, 413, ""},
	} {
		w := httptest.NewRecorder()
		WriteError(w, tc.err)
		if code, status := Classify(tc.err); code != tc.code || status != tc.status || w.Code != tc.status {
			t.Errorf("%v: %s %d (written %d), want %s %d", tc.err, code, status, w.Code, tc.code, tc.status)
		}
		if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
			t.Errorf("%v: Retry-After %q, want %q", tc.err, got, tc.retryAfter)
		}
	}
}
