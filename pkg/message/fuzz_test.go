package message

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParsePosition ensures ParsePosition, which reads client input (SSE
// Last-Event-ID and lastEventId, the WebSocket "from", the poll cursor),
// never panics, refuses with ErrBadPosition only, and that what it accepts
// formats back to a position it parses identically.
func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"", "0", "42", "kx3f2a-17", "a-b-3", "-1", "x-", " 7 ", "x-18446744073709551615",
		"x-18446744073709551616", "x--1", "\x00-1", "é-1", "1e3", "+3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePosition(s)
		if err != nil {
			if !errors.Is(err, ErrBadPosition) {
				t.Fatalf("ParsePosition(%q): %v does not wrap ErrBadPosition", s, err)
			}
			return
		}
		q, err := ParsePosition(p.String())
		if err != nil || q != p {
			t.Fatalf("ParsePosition(%q) = %+v, which formats as %q and parses back as %+v, %v", s, p, p.String(), q, err)
		}
	})
}

// FuzzUnmarshal ensures a stored message that does not decode is refused
// without a panic, and that one that decodes is re-encoded to the same
// message.
func FuzzUnmarshal(f *testing.F) {
	m := &Message{Topic: "a/b", Payload: []byte("x"), QoS: 1, Retain: true, ContentType: "text/plain",
		UserProperties: []UserProperty{{Key: "k", Value: "v"}}}
	b, err := Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	if full, err := Marshal(fullMessage()); err == nil {
		f.Add(full)
	}
	if js, err := json.Marshal(fullMessage()); err == nil {
		f.Add(js)
	}
	f.Add([]byte{codecV1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte(`{"topic":1}`))
	f.Add([]byte(`{"payload":"!!"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Unmarshal("t", b)
		if err != nil {
			return
		}
		if m.Tenant != "t" {
			t.Fatalf("tenant %q, want t", m.Tenant)
		}
		again, err := Marshal(m)
		if err != nil {
			t.Fatalf("a decoded message does not encode: %v", err)
		}
		m2, err := Unmarshal("t", again)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v: %s", err, again)
		}
		if again2, _ := Marshal(m2); string(again2) != string(again) {
			t.Fatalf("encoding not stable: %s then %s", again, again2)
		}
	})
}
