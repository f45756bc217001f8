package mqtt

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// FuzzConnectProperties ensures an MQTT 5 CONNECT with any properties —
// floods of user properties, huge or zero maxima, long strings, a will
// with its own properties — is read within the packet size bound: a
// CONNECT over it is refused as too large (0x95) before its body is read,
// and one under it decodes with every user property, or is refused with a
// failure reason code, never a panic.
func FuzzConnectProperties(f *testing.F) {
	f.Add(uint16(0), "k", "v", uint32(0), uint16(10), uint32(0), uint16(0), "will/t", false)
	f.Add(uint16(20000), "key", "value", uint32(1<<31), uint16(0), uint32(1), uint16(65535), "", true)
	f.Add(uint16(300), strings.Repeat("k", 300), "", uint32(0xffffffff), uint16(65535), uint32(0), uint16(1), "w/#", true)
	f.Add(uint16(3), "\xff", "\x00", uint32(1), uint16(1), uint32(1<<28), uint16(2), "+", false)
	const maxSize = 64 << 10
	f.Fuzz(func(t *testing.T, n uint16, key, value string, expiry uint32, receiveMax uint16, maxPacket uint32,
		aliasMax uint16, willTopic string, will bool) {
		pk := &packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connect},
			ProtocolVersion: 5,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30,
				ClientIdentifier: "fuzz"},
			Properties: packets.Properties{SessionExpiryInterval: expiry, SessionExpiryIntervalFlag: expiry > 0,
				ReceiveMaximum: receiveMax, MaximumPacketSize: maxPacket, TopicAliasMaximum: aliasMax},
		}
		for range n % 20000 {
			pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: key, Val: value})
		}
		if will {
			pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, willTopic, []byte(value)
			pk.Connect.WillProperties.User = pk.Properties.User
		}
		var b bytes.Buffer
		if err := pk.ConnectEncode(&b); err != nil {
			return // the codec refuses to build it; nothing to send
		}
		got, err := readPacket(bufio.NewReader(bytes.NewReader(b.Bytes())), 0, maxSize)
		switch {
		case b.Len() > maxSize:
			if !errors.Is(err, ErrPacketTooLarge) || reasonCode(err) != codePacketTooLarge {
				t.Fatalf("%d-byte CONNECT over a %d-byte bound: err %v, want 0x95", b.Len(), maxSize, err)
			}
		case err != nil:
			if reasonCode(err) < 0x80 {
				t.Fatalf("refused with %v, which maps to success code %#x", err, reasonCode(err))
			}
		case len(got.Properties.User) != len(pk.Properties.User):
			t.Fatalf("%d user properties sent, %d decoded", len(pk.Properties.User), len(got.Properties.User))
		default:
			// What connect checks next: a failure must map to a failure code.
			if code := got.ConnectValidate(); code != packets.CodeSuccess && reasonCode(decodeError(code)) < 0x80 {
				t.Fatalf("ConnectValidate %v maps to success", code)
			}
		}
	})
}
