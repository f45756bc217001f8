package tenant_test

import (
	"strings"
	"testing"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/tenant"
)

// TestValidIDMatchesBackbone ensures tenant IDs and backbone tenant names share one alphabet.
func TestValidIDMatchesBackbone(t *testing.T) {
	for _, id := range []string{
		"", "a", "0", "dev", "a-b", "a_b", "-a", "_a", "A", "a.b", "a b", "a/b", "a*", "a>", "é",
		strings.Repeat("a", 63), strings.Repeat("a", 64),
	} {
		if got, want := tenant.ValidID(id), backbone.ValidTenant(id); got != want {
			t.Errorf("ValidID(%q) = %v, backbone.ValidTenant = %v", id, got, want)
		}
	}
}

// TestEventTypeString ensures event types print by name.
func TestEventTypeString(t *testing.T) {
	for typ, want := range map[tenant.EventType]string{
		tenant.EventReset: "reset", tenant.EventPut: "put", tenant.EventDelete: "delete", 0: "unknown",
	} {
		if got := typ.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", typ, got, want)
		}
	}
}
