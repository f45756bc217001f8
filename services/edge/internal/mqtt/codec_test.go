package mqtt

import (
	"bufio"
	"bytes"
	"strconv"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/mochi-mqtt/server/v2/packets"
)

// referencePublish encodes p with the packets codec, as the writer did
// before it had publishEncoder: the wire form publishEncoder must match.
func referencePublish(t testing.TB, p *publishOut, m *message.Message) []byte {
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: p.qos, Retain: p.retain, Dup: p.dup},
		TopicName:       p.topic,
		Payload:         m.Payload,
		PacketID:        p.id,
		ProtocolVersion: p.version,
		Mods:            packets.Mods{AllowResponseInfo: true},
	}
	if p.version == 5 {
		pr := &pk.Properties
		pr.MessageExpiryInterval = p.expiry
		pr.ContentType = m.ContentType
		if m.PayloadUTF8 {
			pr.PayloadFormat, pr.PayloadFormatFlag = 1, true
		}
		pr.ResponseTopic = m.ResponseTopic
		pr.CorrelationData = m.CorrelationData
		for _, u := range m.UserProperties {
			pr.User = append(pr.User, packets.UserProperty{Key: u.Key, Val: u.Value})
		}
		if p.seq && m.Seq > 0 {
			pr.User = append(pr.User, packets.UserProperty{Key: SeqProperty, Val: strconv.FormatUint(m.Seq, 10)})
		}
		pr.User = traceProperty(pr.User, p.traceParent)
		for _, id := range p.ids {
			pr.SubscriptionIdentifier = append(pr.SubscriptionIdentifier, int(id))
		}
		pr.TopicAlias, pr.TopicAliasFlag = p.alias, true
	}
	var b bytes.Buffer
	if err := pk.PublishEncode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestPublishEncoderMatchesCodec(t *testing.T) {
	payload := bytes.Repeat([]byte("p"), 300) // a two-byte remaining length
	full := &message.Message{Topic: "a/b", Payload: payload, Seq: 1234567, ContentType: "text/plain", PayloadUTF8: true,
		ResponseTopic: "reply/here", CorrelationData: []byte{0, 1, 2},
		UserProperties: []message.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}, {Key: telemetry.HeaderTraceParent, Value: "old"}}}
	cases := []struct {
		name string
		p    publishOut
		m    *message.Message
	}{
		{"v3 qos0", publishOut{version: 4, topic: "a/b"}, &message.Message{Topic: "a/b", Payload: []byte("x")}},
		{"v3 qos1 retain dup", publishOut{version: 4, qos: 1, retain: true, dup: true, id: 7, topic: "a/b"}, &message.Message{Topic: "a/b", Payload: payload, Seq: 9}},
		{"v3 qos2 empty payload", publishOut{version: 4, qos: 2, id: 65535, topic: "a"}, &message.Message{Topic: "a"}},
		{"v5 bare", publishOut{version: 5, topic: "a/b"}, &message.Message{Topic: "a/b", Payload: []byte("x")}},
		{"v5 seq not asked", publishOut{version: 5, qos: 1, id: 1, topic: "a/b"}, &message.Message{Topic: "a/b", Payload: []byte("x"), Seq: 42}},
		{"v5 seq", publishOut{version: 5, qos: 1, id: 1, topic: "a/b", seq: true}, &message.Message{Topic: "a/b", Payload: []byte("x"), Seq: 42}},
		{"v5 every property", publishOut{version: 5, qos: 2, id: 300, topic: "a/b", alias: 3, expiry: 70000, ids: []uint32{1, 200, 300000}, traceParent: "00-abc-def-01", seq: true}, full},
		{"v5 known alias", publishOut{version: 5, qos: 1, id: 2, alias: 9}, full},
		{"v5 trace added", publishOut{version: 5, topic: "t", traceParent: "00-x-y-01"}, &message.Message{Topic: "t", Payload: []byte("x"), Seq: 1}},
		{"v5 wildcard response topic dropped", publishOut{version: 5, topic: "t"}, &message.Message{Topic: "t", ResponseTopic: "r/#"}},
	}
	var enc publishEncoder
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := referencePublish(t, &tc.p, tc.m)
			got := append(append([]byte(nil), enc.header(&tc.p, tc.m)...), tc.m.Payload...)
			if !bytes.Equal(got, want) {
				t.Fatalf("encoded\n%x\nwant\n%x", got, want)
			}
			// And it decodes back (with the codec alone: a client may not
			// send subscription identifiers, so readPacket would refuse).
			pk := &packets.Packet{ProtocolVersion: tc.p.version}
			if err := pk.FixedHeader.Decode(got[0]); err != nil {
				t.Fatal(err)
			}
			remaining, n, err := readLength(bytes.NewReader(got[1:]))
			if err != nil || 1+n+remaining != len(got) {
				t.Fatalf("remaining length %d (%d bytes) of %d: %v", remaining, n, len(got), err)
			}
			if err := pk.PublishDecode(got[1+n:]); err != nil {
				t.Fatal(err)
			}
			if pk.TopicName != tc.p.topic || pk.PacketID != tc.p.id || !bytes.Equal(pk.Payload, tc.m.Payload) {
				t.Fatalf("decoded %+v", pk)
			}
		})
	}
}

func benchMessage(version byte) (*publishOut, *message.Message) {
	// seq: the client asked for the sequence, so that the MQTT 5 PUBLISH
	// carries one user property, as these benchmarks always measured.
	return &publishOut{version: version, qos: 1, id: 17, topic: "sensors/kitchen/temp", seq: true},
		&message.Message{Topic: "sensors/kitchen/temp", Payload: make([]byte, 100), QoS: 1, Seq: 123456}
}

// BenchmarkEncodePublish compares the writer's PUBLISH encoder with the
// packets codec for a 100-byte QoS 1 message.
func BenchmarkEncodePublish(b *testing.B) {
	for _, v := range []byte{4, 5} {
		p, m := benchMessage(v)
		b.Run("encoder/v"+strconv.Itoa(int(v)), func(b *testing.B) {
			b.ReportAllocs()
			var enc publishEncoder
			w := bufio.NewWriterSize(discard{}, 4096)
			for b.Loop() {
				_, _ = w.Write(enc.header(p, m))
				_, _ = w.Write(m.Payload)
			}
		})
		b.Run("codec/v"+strconv.Itoa(int(v)), func(b *testing.B) {
			b.ReportAllocs()
			w := bufio.NewWriterSize(discard{}, 4096)
			for b.Loop() {
				_, _ = w.Write(referencePublish(b, p, m))
			}
		})
	}
}

// BenchmarkDecodePublish measures readPacket on a 100-byte QoS 1 PUBLISH
// (the body buffer and, for MQTT 5, the decoded properties allocate).
func BenchmarkDecodePublish(b *testing.B) {
	for _, v := range []byte{4, 5} {
		p, m := benchMessage(v)
		wire := referencePublish(b, p, m)
		b.Run("v"+strconv.Itoa(int(v)), func(b *testing.B) {
			b.ReportAllocs()
			rd := bytes.NewReader(wire)
			br := bufio.NewReader(rd)
			for b.Loop() {
				rd.Reset(wire)
				br.Reset(rd)
				pk, err := readPacket(br, v, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				releasePacket(pk) // as the connection's reader does

			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
