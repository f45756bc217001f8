package wire

import "testing"

// TestPayload ensures payload encoding round-trips text and binary.
func TestPayload(t *testing.T) {
	for _, p := range [][]byte{nil, []byte("héllo\n"), {0xff, 0}} {
		text, enc := EncodePayload(p)
		back, err := DecodePayload(text, enc)
		if err != nil || string(back) != string(p) {
			t.Errorf("%q: got %q %v", p, back, err)
		}
	}
	if _, err := DecodePayload("x", "hex"); err == nil {
		t.Error("unknown encoding accepted")
	}
}
