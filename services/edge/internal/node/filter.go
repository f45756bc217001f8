package node

import (
	"fmt"
	"strings"

	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/hub"
)

// sharedPrefixes start the filters that brokers read as shared
// subscriptions: MQTT 5's "$share/<group>/<filter>" and the
// "$queue/<filter>" some brokers take for a shared subscription of a
// default group.
var sharedPrefixes = []string{"$share/", "$queue/"}

// validateFilter checks a topic filter of an SSE stream, a WebSocket
// subscription or a long-poll: the rules of an MQTT filter (topic.Limits),
// and no shared-subscription prefix. Shared subscriptions are MQTT's (the
// MQTT server balances them across a group); these transports have no
// group to balance, and subscribing "$share/g/a/x" literally would give a
// client whose capabilities cover "a/x" (which is how a shared filter is
// authorized) the messages of the topic "$share/g/a/x", which they do not
// cover. So they are refused here, in the one check all three transports
// apply, with an error wrapping hub.ErrInvalidFilter (HTTP 400
// invalid_topic, WebSocket error frame invalid_topic).
//
// A transport that names shared groups itself (Policy.SharedGroups: MQTT,
// which has parsed "$share/<group>/" off the filter) passes its filters
// as they are.
func validateFilter(filter string, l topic.Limits, sharedGroups bool) error {
	if err := topic.ValidateFilter(filter, l); err != nil {
		return fmt.Errorf("topic filter %q: %w", filter, err)
	}
	if sharedGroups {
		return nil
	}
	for _, p := range sharedPrefixes {
		if strings.HasPrefix(filter, p) {
			return fmt.Errorf("%w: %q: shared subscriptions (%s…) are MQTT only; SSE, WebSocket and long-poll subscribe to plain filters",
				hub.ErrInvalidFilter, filter, p)
		}
	}
	return nil
}
