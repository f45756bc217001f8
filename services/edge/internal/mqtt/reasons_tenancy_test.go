package mqtt

import (
	"errors"
	"fmt"
	"testing"

	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/limits"
)

// TestTenancyReasonCodes pins the MQTT 5 reason codes of authentication,
// authorization and tenant limits, and their MQTT 3.1.1 CONNACK codes.
func TestTenancyReasonCodes(t *testing.T) {
	for _, tc := range []struct {
		err      error
		code, v3 byte
	}{
		{auth.ErrBadCredentials, 0x86, 4},
		{auth.ErrNotAuthorized, 0x87, 5},
		{fmt.Errorf("x: %w", auth.ErrForbidden), 0x87, 5},
		{auth.ErrRevoked, 0x87, 5},
		{&auth.RateLimitError{What: "address"}, 0x9F, 3},
		{fmt.Errorf("x: %w", limits.ErrConnectionLimit), 0x97, 3},
		{limits.ErrRateLimited, 0x97, 3},
		{limits.ErrPayloadTooLarge, 0x97, 3},
		{limits.ErrSubscriptionLimit, 0x97, 3},
		{errors.Join(errQoS0RateTooHigh, limits.ErrRateLimited), 0x96, 3},
		{errors.Join(ErrPacketTooLarge, limits.ErrPayloadTooLarge), 0x95, 3},
	} {
		if got := reasonCode(tc.err); got != tc.code {
			t.Errorf("reasonCode(%v) = 0x%02X, want 0x%02X", tc.err, got, tc.code)
		}
		if got := connackCodeV3(reasonCode(tc.err)); got != tc.v3 {
			t.Errorf("3.1.1 CONNACK of %v = %d, want %d", tc.err, got, tc.v3)
		}
	}
}
