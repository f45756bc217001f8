package message

import (
	"reflect"
	"testing"
)

// TestPositionRoundTrip ensures positions format and parse back, and that
// malformed text is refused.
func TestPositionRoundTrip(t *testing.T) {
	for _, p := range []Position{{Seq: 0}, {Seq: 42}, {Epoch: "m3x9k", Seq: 7}, {Epoch: "a-b", Seq: 1 << 60}} {
		got, err := ParsePosition(p.String())
		if err != nil || got != p {
			t.Errorf("%v -> %q -> %v, %v", p, p.String(), got, err)
		}
	}
	for _, s := range []string{"", "x", "-1", "e-", "e-x", "1.5"} {
		if _, err := ParsePosition(s); err == nil {
			t.Errorf("ParsePosition(%q) accepted", s)
		}
	}
}

// TestCodecRoundTrip ensures a stored message keeps every field.
func TestCodecRoundTrip(t *testing.T) {
	for _, m := range []*Message{fullMessage(), {Tenant: "t", Topic: "only/topic"}} {
		b, err := Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Unmarshal("t", b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip: %+v != %+v", got, m)
		}
	}
}
