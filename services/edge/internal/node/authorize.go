package node

import (
	"fmt"
	"strings"

	"github.com/heraldmq/herald/services/edge/internal/auth"
)

// sharePrefix starts an MQTT 5 shared subscription's filter,
// "$share/<group>/<filter>".
const sharePrefix = "$share/"

// AuthorizePublish reports whether id may publish to the topic name (which
// the caller has validated, as Publish does): nil, or an error wrapping
// auth.ErrForbidden. Anonymous identities may do everything in their
// tenant; others need a publish capability whose filter matches the name.
func AuthorizePublish(id auth.Identity, topic string) error {
	if id.Anonymous || id.Capabilities.CanPublish(topic) {
		return nil
	}
	return fmt.Errorf("%w: publish to %q", auth.ErrForbidden, topic)
}

// AuthorizeSubscribe reports whether id may subscribe to the filter: nil,
// or an error wrapping auth.ErrForbidden. A subscribe capability must
// cover the whole filter (authz.Covers): "sensors/#" allows "sensors/+",
// never "#". A shared subscription "$share/<group>/<filter>" is judged by
// its filter; a malformed one is refused.
func AuthorizeSubscribe(id auth.Identity, filter string) error {
	if id.Anonymous {
		return nil
	}
	f, ok := unshare(filter)
	if ok && id.Capabilities.CanSubscribe(f) {
		return nil
	}
	return fmt.Errorf("%w: subscribe to %q", auth.ErrForbidden, filter)
}

// AuthorizeHistory reports whether id may read the stored messages of the
// filter — resume an SSE or WebSocket stream from a position, or replay:
// nil, or an error wrapping auth.ErrForbidden. Like AuthorizeSubscribe, a
// history capability must cover the whole filter. A resume needs both:
// the live part is a subscription.
func AuthorizeHistory(id auth.Identity, filter string) error {
	if id.Anonymous {
		return nil
	}
	f, ok := unshare(filter)
	if ok && id.Capabilities.CanReadHistory(f) {
		return nil
	}
	return fmt.Errorf("%w: read history of %q", auth.ErrForbidden, filter)
}

// unshare strips a shared-subscription prefix; ok is false for a malformed
// one, which no capability allows.
func unshare(filter string) (string, bool) {
	rest, shared := strings.CutPrefix(filter, sharePrefix)
	if !shared {
		return filter, true
	}
	group, f, ok := strings.Cut(rest, "/")
	if !ok || group == "" || f == "" || strings.ContainsAny(group, "+#") {
		return "", false
	}
	return f, true
}
