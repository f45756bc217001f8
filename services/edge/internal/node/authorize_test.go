package node_test

import (
	"errors"
	"testing"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// TestAuthorize ensures publishes need a matching publish capability, subscriptions and history reads a capability covering the whole filter (shared subscriptions judged by their filter), refusals wrap auth.ErrForbidden and auth.ErrNotAuthorized, and anonymous identities may do everything.
func TestAuthorize(t *testing.T) {
	caps, err := authz.ParseCapabilities([]string{"publish:sensors/+/temp", "subscribe:sensors/#", "history:alerts/+"})
	if err != nil {
		t.Fatal(err)
	}
	id := auth.Identity{Tenant: "acme", Credential: "key:x", Capabilities: caps}
	anon := auth.Identity{Tenant: "dev", Anonymous: true}
	type check func(auth.Identity, string) error
	for _, tc := range []struct {
		name  string
		f     check
		topic string
		ok    bool
	}{
		{"publish matching", node.AuthorizePublish, "sensors/a/temp", true},
		{"publish other level", node.AuthorizePublish, "sensors/a/hum", false},
		{"publish outside", node.AuthorizePublish, "other", false},
		{"subscribe covered", node.AuthorizeSubscribe, "sensors/+", true},
		{"subscribe same", node.AuthorizeSubscribe, "sensors/#", true},
		{"subscribe parent", node.AuthorizeSubscribe, "sensors", true},
		{"subscribe everything", node.AuthorizeSubscribe, "#", false},
		{"subscribe wider", node.AuthorizeSubscribe, "+/temp", false},
		{"subscribe shared covered", node.AuthorizeSubscribe, "$share/g/sensors/a", true},
		{"subscribe shared outside", node.AuthorizeSubscribe, "$share/g/#", false},
		{"subscribe shared malformed", node.AuthorizeSubscribe, "$share/g", false},
		{"subscribe without subscribe action", node.AuthorizeSubscribe, "alerts/x", false},
		{"history covered", node.AuthorizeHistory, "alerts/x", true},
		{"history wider", node.AuthorizeHistory, "alerts/#", false},
		{"history without history action", node.AuthorizeHistory, "sensors/x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f(id, tc.topic)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if err != nil && (!errors.Is(err, auth.ErrForbidden) || !errors.Is(err, auth.ErrNotAuthorized)) {
				t.Fatalf("err = %v does not wrap ErrForbidden and ErrNotAuthorized", err)
			}
			if err := tc.f(anon, tc.topic); err != nil {
				t.Fatalf("anonymous: %v", err)
			}
		})
	}
	if err := node.AuthorizePublish(auth.Identity{Tenant: "acme"}, "a"); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("no capabilities: %v", err)
	}
}
