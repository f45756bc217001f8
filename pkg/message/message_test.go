package message

import (
	"testing"
	"time"
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
	m := &Message{Tenant: "t", Topic: "a/b", Payload: []byte{0, 1, 0xff}, QoS: 1, Retain: true,
		ContentType: "x/y", PayloadUTF8: true, ResponseTopic: "r", CorrelationData: []byte("c"),
		UserProperties: []UserProperty{{"k", "v"}, {"k", "w"}}, ExpiresAt: time.Unix(100, 0).UTC(),
		Origin: "e/c", Seq: 9, Time: time.Unix(5, 6).UTC()}
	b, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal("t", b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Topic != m.Topic || string(got.Payload) != string(m.Payload) || got.QoS != 1 || !got.Retain ||
		got.ContentType != "x/y" || !got.PayloadUTF8 || got.ResponseTopic != "r" || string(got.CorrelationData) != "c" ||
		len(got.UserProperties) != 2 || !got.ExpiresAt.Equal(m.ExpiresAt) || got.Origin != "e/c" || got.Seq != 9 ||
		!got.Time.Equal(m.Time) || got.Tenant != "t" {
		t.Fatalf("round trip: %+v != %+v", got, m)
	}
}
