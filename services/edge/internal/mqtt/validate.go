package mqtt

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The validating layer over the packets codec.
//
// The codec decodes a packet into a struct and checks what that struct
// can still tell: a property that appears twice has simply overwritten the
// first, so "at most once" cannot be checked after decoding, and the codec
// does not check it before. Neither does it check the values the
// specification restricts (Receive Maximum 0, Maximum Packet Size 0,
// Request Problem / Response Information other than 0 or 1), the reserved
// bits of SUBSCRIBE's options, or the CONNECT flags that depend on one
// another; and it refuses an empty password, which MQTT allows (the
// password flag set with a zero-length password is a password, checked
// by the authenticator). validate runs on every packet the codec decoded,
// on the packet's own bytes, so that a handler only ever sees a packet the
// specification allows; the rules are in one place, with the statement
// each enforces. It walks each property block once (a PUBLISH without
// properties costs one byte read): BenchmarkDecodePublish measures it.

// validate checks the packet pk that the codec decoded from buf, its
// remaining bytes, for what the codec leaves unchecked. Errors wrap
// ErrMalformed or ErrProtocol.
func validate(pk *packets.Packet, buf []byte) error {
	v5 := pk.ProtocolVersion == 5
	switch pk.FixedHeader.Type {
	case packets.Connect:
		return validateConnect(pk, buf)
	case packets.Publish:
		if !v5 {
			return nil
		}
		at := 2 + len(pk.TopicName)
		if pk.FixedHeader.Qos > 0 {
			at += 2
		}
		_, err := checkProperties(buf, at, pk.FixedHeader.Type)
		return err
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		if v5 && !pk.ReasonCodeValid() {
			return fmt.Errorf("%w: reason code %#x in %s", ErrMalformed, pk.ReasonCode, packets.PacketNames[pk.FixedHeader.Type])
		}
		if v5 && len(buf) > 3 {
			_, err := checkProperties(buf, 3, pk.FixedHeader.Type)
			return err
		}
	case packets.Subscribe:
		return validateSubscribe(pk, buf)
	case packets.Unsubscribe:
		if v5 {
			_, err := checkProperties(buf, 2, pk.FixedHeader.Type)
			return err
		}
	case packets.Disconnect, packets.Auth:
		if v5 && len(buf) > 1 {
			_, err := checkProperties(buf, 1, pk.FixedHeader.Type)
			return err
		}
	}
	return nil
}

// validateConnect checks a CONNECT of MQTT 3.1.1 or 5 (other protocol
// levels are refused by connect with their own return code) in place of
// the codec's ConnectValidate, which refuses an empty password.
func validateConnect(pk *packets.Packet, buf []byte) error {
	v := pk.ProtocolVersion
	if string(pk.Connect.ProtocolName) != "MQTT" || (v != 4 && v != 5) {
		return nil
	}
	cp := &pk.Connect
	switch {
	case pk.ReservedBit != 0:
		return fmt.Errorf("%w: CONNECT reserved flag set", ErrMalformed) // [MQTT-3.1.2-3]
	case cp.WillFlag && cp.WillQos > 2:
		return fmt.Errorf("%w: will QoS 3", ErrMalformed) // [MQTT-3.1.2-12]
	case !cp.WillFlag && cp.WillQos != 0:
		return fmt.Errorf("%w: will QoS set without a will", ErrProtocol) // [MQTT-3.1.2-11]
	case !cp.WillFlag && cp.WillRetain:
		return fmt.Errorf("%w: will retain set without a will", ErrProtocol) // [MQTT-3.1.2-13], 3.1.1 [MQTT-3.1.2-15]
	case v == 4 && cp.PasswordFlag && !cp.UsernameFlag:
		// MQTT 5 allows a password without a user name; 3.1.1 does not.
		return fmt.Errorf("%w: password without a user name", ErrProtocol) // 3.1.1 [MQTT-3.1.2-22]
	}
	if v != 5 {
		return nil
	}
	// Variable header: protocol name, level, flags, keep alive; then the
	// properties, the client identifier and, with a will, its properties.
	at := 2 + len(cp.ProtocolName) + 4
	n, err := checkProperties(buf, at, packets.Connect)
	if err != nil {
		return err
	}
	if !cp.WillFlag {
		return nil
	}
	at += n + 2 + len(cp.ClientIdentifier)
	_, err = checkProperties(buf, at, packets.WillProperties)
	return err
}

// validateSubscribe checks SUBSCRIBE's properties and the reserved bits
// and values of each filter's options, which the codec decodes by masking
// the bits it knows.
func validateSubscribe(pk *packets.Packet, buf []byte) error {
	v5 := pk.ProtocolVersion == 5
	at := 2
	if v5 {
		n, err := checkProperties(buf, at, packets.Subscribe)
		if err != nil {
			return err
		}
		at += n
	}
	reserved := byte(0xfc) // 3.1.1: all but the QoS bits [MQTT-3.8.3-4]
	if v5 {
		reserved = 0xc0 // [MQTT-3.8.3-5]
	}
	for _, f := range pk.Filters {
		at += 2 + len(f.Filter)
		if at >= len(buf) {
			return fmt.Errorf("%w: SUBSCRIBE filter without options", ErrMalformed)
		}
		opts := buf[at]
		at++
		switch {
		case opts&reserved != 0:
			return fmt.Errorf("%w: reserved subscription option bits %#x set", ErrMalformed, opts&reserved)
		case v5 && f.RetainHandling > 2:
			return fmt.Errorf("%w: retain handling 3", ErrProtocol)
		case v5 && f.NoLocal && strings.HasPrefix(f.Filter, sharePrefix):
			return fmt.Errorf("%w: no local on a shared subscription", ErrProtocol) // [MQTT-3.8.3-4]
		}
	}
	return nil
}

// Property value types (MQTT 5 §2.2.2.2).
const (
	propByte = iota + 1
	propUint16
	propUint32
	propVarInt
	propString // a UTF-8 string or binary data: a two-byte length, then the bytes
	propPair   // a user property: two strings
)

// propTypes are the types of the properties MQTT 5 defines, by identifier.
var propTypes = [...]byte{
	packets.PropPayloadFormat: propByte, packets.PropMessageExpiryInterval: propUint32,
	packets.PropContentType: propString, packets.PropResponseTopic: propString,
	packets.PropCorrelationData: propString, packets.PropSubscriptionIdentifier: propVarInt,
	packets.PropSessionExpiryInterval: propUint32, packets.PropAssignedClientID: propString,
	packets.PropServerKeepAlive: propUint16, packets.PropAuthenticationMethod: propString,
	packets.PropAuthenticationData: propString, packets.PropRequestProblemInfo: propByte,
	packets.PropWillDelayInterval: propUint32, packets.PropRequestResponseInfo: propByte,
	packets.PropResponseInfo: propString, packets.PropServerReference: propString,
	packets.PropReasonString: propString, packets.PropReceiveMaximum: propUint16,
	packets.PropTopicAliasMaximum: propUint16, packets.PropTopicAlias: propUint16,
	packets.PropMaximumQos: propByte, packets.PropRetainAvailable: propByte,
	packets.PropUser: propPair, packets.PropMaximumPacketSize: propUint32,
	packets.PropWildcardSubAvailable: propByte, packets.PropSubIDAvailable: propByte,
	packets.PropSharedSubAvailable: propByte,
}

// errPropertyTruncated reports a property block that ends inside a value.
var errPropertyTruncated = fmt.Errorf("%w: property value truncated", ErrMalformed)

// checkProperties checks the MQTT 5 property block of a packet of type
// pkt that starts at buf[at] (its length, then the properties) and
// returns its size. Every property a client may send appears at most once
// except User Property (each property's "It is a Protocol Error to include
// ... more than once"; a client never sends the one other exception, a
// PUBLISH's repeated Subscription Identifier), and the values MQTT 5
// restricts are in range. The codec has already refused identifiers that
// are unknown or not allowed in pkt.
func checkProperties(buf []byte, at int, pkt byte) (int, error) {
	if at > len(buf) {
		return 0, errPropertyTruncated
	}
	b := buf[at:]
	size, n, err := varInt(b)
	if err != nil {
		return 0, err
	}
	end := n + size
	if end > len(b) {
		return 0, errPropertyTruncated
	}
	var seen uint64
	for i := n; i < end; {
		id := b[i]
		i++
		if int(id) >= len(propTypes) || propTypes[id] == 0 {
			return 0, fmt.Errorf("%w: unknown property %d", ErrMalformed, id)
		}
		if id != packets.PropUser {
			if seen&(1<<id) != 0 {
				return 0, fmt.Errorf("%w: property %d more than once in %s", ErrProtocol, id, packetName(pkt))
			}
			seen |= 1 << id
		}
		var val uint32
		switch propTypes[id] {
		case propByte:
			if i+1 > end {
				return 0, errPropertyTruncated
			}
			val = uint32(b[i])
			i++
		case propUint16:
			if i+2 > end {
				return 0, errPropertyTruncated
			}
			val = uint32(binary.BigEndian.Uint16(b[i:]))
			i += 2
		case propUint32:
			if i+4 > end {
				return 0, errPropertyTruncated
			}
			val = binary.BigEndian.Uint32(b[i:])
			i += 4
		case propVarInt:
			v, vn, err := varInt(b[i:end])
			if err != nil {
				return 0, err
			}
			val, i = uint32(v), i+vn
		case propString:
			if i, err = skipString(b, i, end); err != nil {
				return 0, err
			}
		case propPair:
			if i, err = skipString(b, i, end); err != nil {
				return 0, err
			}
			if i, err = skipString(b, i, end); err != nil {
				return 0, err
			}
		}
		if err := checkPropertyValue(id, val); err != nil {
			return 0, err
		}
	}
	return end, nil
}

// skipString returns the offset after the string or binary data at b[i],
// which must end by end.
func skipString(b []byte, i, end int) (int, error) {
	if i+2 > end {
		return 0, errPropertyTruncated
	}
	i += 2 + int(binary.BigEndian.Uint16(b[i:]))
	if i > end {
		return 0, errPropertyTruncated
	}
	return i, nil
}

// checkPropertyValue checks the value of a numeric property the
// specification restricts.
func checkPropertyValue(id byte, v uint32) error {
	switch id {
	case packets.PropReceiveMaximum, packets.PropMaximumPacketSize, packets.PropSubscriptionIdentifier:
		if v == 0 {
			// "It is a Protocol Error ... for it to have the value 0"
			// (MQTT 5 §3.1.2.11.3, §3.1.2.11.4, §3.8.2.1.2).
			return fmt.Errorf("%w: property %d is 0", ErrProtocol, id)
		}
	case packets.PropRequestProblemInfo, packets.PropRequestResponseInfo:
		if v > 1 { // §3.1.2.11.6, §3.1.2.11.7
			return fmt.Errorf("%w: property %d is %d, not 0 or 1", ErrProtocol, id, v)
		}
	}
	return nil
}

// varInt reads a variable byte integer (MQTT §1.5.5) from the start of b
// and returns it and its size.
func varInt(b []byte) (value, n int, err error) {
	shift := 0
	for n < len(b) && n < 4 {
		c := b[n]
		n++
		value |= int(c&0x7f) << shift
		if c&0x80 == 0 {
			return value, n, nil
		}
		shift += 7
	}
	if n == 4 {
		return 0, n, fmt.Errorf("%w: variable byte integer longer than 4 bytes", ErrMalformed)
	}
	return 0, n, errPropertyTruncated
}

// packetName names a packet type for a reason string; the will's
// properties are a block of CONNECT.
func packetName(pkt byte) string {
	if pkt == packets.WillProperties {
		return "the will properties"
	}
	return packets.PacketNames[pkt]
}
