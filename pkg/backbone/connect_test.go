package backbone_test

import (
	"testing"

	"github.com/heraldmq/herald/pkg/backbone"
)

// TestRedacted ensures a NATS URL list loses every password and token, and
// keeps the rest.
func TestRedacted(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                       "nats://127.0.0.1:4222",
		"nats://herald:s3cr:et@a:4222,tls://b:4222":   "nats://herald:xxxxx@a:4222,tls://b:4222",
		"nats://tok3n@a:4222":                         "nats://xxxxx@a:4222",
		"a:4222,u:p@b:4222":                           "a:4222,u:xxxxx@b:4222",
		"tls://u:p@nats-0:4222,tls://u:p@nats-1:4222": "tls://u:xxxxx@nats-0:4222,tls://u:xxxxx@nats-1:4222",
	} {
		if got := backbone.Redacted(in); got != want {
			t.Errorf("Redacted(%q) = %q, want %q", in, got, want)
		}
	}
}
