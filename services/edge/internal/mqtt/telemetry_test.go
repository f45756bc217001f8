package mqtt

import (
	"slices"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestTraceProperty ensures a sampled delivery names its parent in exactly
// one traceparent user property, replacing the publisher's, and that an
// unsampled one is left as it was.
func TestTraceProperty(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	up := func(kv ...string) []packets.UserProperty {
		var out []packets.UserProperty
		for i := 0; i < len(kv); i += 2 {
			out = append(out, packets.UserProperty{Key: kv[i], Val: kv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		in          []packets.UserProperty
		traceparent string
		want        []packets.UserProperty
	}{
		{"unsampled", up("a", "1"), "", up("a", "1")},
		{"added", up("a", "1"), tp, up("a", "1", "traceparent", tp)},
		{"added to none", nil, tp, up("traceparent", tp)},
		{"replaced", up("traceparent", "00-old-old-01", "a", "1"), tp, up("traceparent", tp, "a", "1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := traceProperty(slices.Clone(tc.in), tc.traceparent); !slices.Equal(got, tc.want) {
				t.Errorf("traceProperty = %v, want %v", got, tc.want)
			}
		})
	}
}
