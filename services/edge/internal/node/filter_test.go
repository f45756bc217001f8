package node

import (
	"errors"
	"testing"

	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/hub"
)

// TestValidateStreamFilter ensures the streaming transports' filter check
// refuses shared-subscription prefixes as invalid filters, refuses what
// MQTT refuses, and passes plain filters, "$" topics and levels merely
// named like the prefixes.
func TestValidateStreamFilter(t *testing.T) {
	for _, tc := range []struct {
		filter  string
		ok      bool
		invalid bool // wraps hub.ErrInvalidFilter
	}{
		{"a/b", true, false},
		{"a/+/#", true, false},
		{"$SYS/broker", true, false},
		{"$share", true, false},
		{"$queue", true, false},
		{"a/$share/g/x", true, false},
		{"$share/g/a/x", false, true},
		{"$share/g/#", false, true},
		{"$share/g", false, true},
		{"$queue/a/x", false, true},
		{"$queue/#", false, true},
		{"a/#/b", false, false},
		{"", false, false},
	} {
		err := validateFilter(tc.filter, topic.Limits{}, false)
		if (err == nil) != tc.ok || errors.Is(err, hub.ErrInvalidFilter) != tc.invalid {
			t.Errorf("%q: %v (ok %v, invalid filter %v)", tc.filter, err, tc.ok, tc.invalid)
		}
	}
}
