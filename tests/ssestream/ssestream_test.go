package ssestream

import (
	"strings"
	"testing"
	"time"
)

// TestRead ensures Read collects message events with their sequence, keeps
// the last id and the server's retry delay, and reports undecodable data
// and gap events.
func TestRead(t *testing.T) {
	stream := "retry: 1500\n\n" +
		"id: a-1\ndata: {\"seq\":1,\"payload\":\"x\"}\n\n" +
		": heartbeat\n\n" +
		"id: a-2\ndata: {\"seq\":2,\"payload\":\"y\"}\n\n" +
		"data: not json\n\n" +
		"event: gap\ndata: {}\n\n"
	var events []Event
	var errs []error
	last, retry := Read(strings.NewReader(stream), "", time.Second, func(e Event) { events = append(events, e) }, func(err error) { errs = append(errs, err) })
	if last != "a-2" || retry != 1500*time.Millisecond {
		t.Errorf("last id %q, retry %v; want a-2, 1.5s", last, retry)
	}
	if len(events) != 3 || events[0] != (Event{1, "x"}) || events[1] != (Event{2, "y"}) {
		t.Errorf("events %v", events)
	}
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "bad event data") || !strings.Contains(errs[1].Error(), "gap") {
		t.Errorf("errors %v, want bad data then gap", errs)
	}
}

// TestExact ensures Exact counts missing payloads and, when none is
// missing, refuses a skipped or repeated sequence number.
func TestExact(t *testing.T) {
	for _, tc := range []struct {
		name    string
		events  []Event
		missing int
		bad     bool
	}{
		{"exact", []Event{{5, "a"}, {6, "b"}, {7, "c"}}, 0, false},
		{"missing", []Event{{5, "a"}, {6, "b"}}, 1, false},
		{"skipped", []Event{{5, "a"}, {7, "b"}, {8, "c"}}, 0, true},
		{"repeated", []Event{{5, "a"}, {6, "b"}, {6, "b"}, {7, "c"}}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			missing, err := Exact(tc.events, []string{"a", "b", "c"})
			if missing != tc.missing || (err != nil) != tc.bad {
				t.Errorf("missing %d, err %v; want %d, error %v", missing, err, tc.missing, tc.bad)
			}
		})
	}
}
