package mqtt

import (
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/mochi-mqtt/server/v2/packets"
)

// traceProperty makes a sampled message's delivery name the edge's deliver
// span as its parent, in the traceparent user property of MQTT 5: it
// replaces a traceparent the publisher sent (as a W3C intermediary does)
// or adds one. An unsampled message (traceparent "") is left alone.
func traceProperty(user []packets.UserProperty, traceparent string) []packets.UserProperty {
	if traceparent == "" {
		return user
	}
	for i := range user {
		if user[i].Key == telemetry.HeaderTraceParent {
			user[i].Val = traceparent
			return user
		}
	}
	return append(user, packets.UserProperty{Key: telemetry.HeaderTraceParent, Val: traceparent})
}
