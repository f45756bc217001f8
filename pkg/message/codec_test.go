package message

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func fullMessage() *Message {
	return &Message{Tenant: "t", Topic: "a/b", Payload: []byte{0, 1, 0xff}, QoS: 1, Retain: true,
		ContentType: "x/y", PayloadUTF8: true, ResponseTopic: "r", CorrelationData: []byte("c"),
		UserProperties: []UserProperty{{"k", "v"}, {"k", "w"}}, ExpiresAt: time.Unix(100, 7).UTC(),
		Origin: "e/c", Seq: 9, Time: time.Unix(5, 6).UTC()}
}

// TestCodecReadsEarlierJSON ensures messages stored as JSON by earlier
// versions still decode, to the same message as the binary encoding.
func TestCodecReadsEarlierJSON(t *testing.T) {
	for _, m := range []*Message{fullMessage(), {Topic: "only/topic"}} {
		old, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		fromJSON, err := Unmarshal("t", old)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Marshal(m)
		fromBinary, err := Unmarshal("t", b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fromJSON, fromBinary) {
			t.Fatalf("JSON %+v, binary %+v", fromJSON, fromBinary)
		}
	}
}

// TestCodecRefusesTruncated ensures every truncation of an encoded message
// is refused, not decoded to something else.
func TestCodecRefusesTruncated(t *testing.T) {
	b, _ := Marshal(fullMessage())
	for i := 1; i < len(b); i++ {
		if m, err := Unmarshal("t", b[:i]); err == nil {
			t.Fatalf("%d of %d bytes decoded to %+v", i, len(b), m)
		}
	}
	if _, err := Unmarshal("t", append(b, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

// BenchmarkCodec compares the stored encoding with the JSON it replaced.
func BenchmarkCodec(b *testing.B) {
	m := &Message{Topic: "bench/topic/1", Payload: make([]byte, 100), QoS: 1, Seq: 123456, Time: time.Now()}
	js, _ := json.Marshal(m)
	bin, _ := Marshal(m)
	b.Run("marshal/binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = Marshal(m)
		}
	})
	b.Run("marshal/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(m)
		}
	})
	b.Run("unmarshal/binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = Unmarshal("t", bin)
		}
	})
	b.Run("unmarshal/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = Unmarshal("t", js)
		}
	})
}
