package mqtt

import (
	"bytes"
	"fmt"
	"io"

	"github.com/mochi-mqtt/server/v2/packets"
)

// byteReader is what readPacket reads from: a *bufio.Reader, or a
// connection's reader that holds a buffer only while a packet is arriving.
type byteReader interface {
	io.Reader
	io.ByteReader
}

// readPacket reads one control packet sent by a client. version is the
// connection's protocol level (4 or 5; before CONNECT, any: a CONNECT
// carries its own). It reads the fixed header, refuses a packet longer
// than maxSize before allocating its body, and decodes and validates the
// body with the packets codec.
//
// The body buffer is allocated per packet and never reused: the decoded
// strings and payload alias it.
func readPacket(r byteReader, version byte, maxSize int) (*packets.Packet, error) {
	hb, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	remaining, lenBytes, err := readLength(r)
	if err != nil {
		return nil, err
	}
	if 1+lenBytes+remaining > maxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrPacketTooLarge, 1+lenBytes+remaining)
	}
	pk := &packets.Packet{ProtocolVersion: version}
	if hb>>4 == packets.Publish && hb&0x06 == 0x06 {
		return nil, fmt.Errorf("%w: PUBLISH with QoS 3", ErrMalformed) // [MQTT-3.3.1-4]
	}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return nil, decodeError(err)
	}
	pk.FixedHeader.Remaining = remaining
	switch pk.FixedHeader.Type {
	case packets.Connect, packets.Publish, packets.Puback, packets.Pubrec, packets.Pubrel,
		packets.Pubcomp, packets.Subscribe, packets.Unsubscribe, packets.Pingreq, packets.Disconnect:
	case packets.Auth:
		if version != 5 {
			return nil, fmt.Errorf("%w: reserved packet type 15", ErrMalformed)
		}
	default:
		return nil, fmt.Errorf("%w: a client may not send packet type %d", ErrProtocol, pk.FixedHeader.Type)
	}
	buf := make([]byte, remaining)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if err := decodeBody(pk, buf); err != nil {
		return nil, err
	}
	return pk, nil
}

// readLength reads a variable byte integer (MQTT §1.5.5): at most four
// bytes, the last without its continuation bit.
func readLength(r io.ByteReader) (value, n int, err error) {
	shift := 0
	for n < 4 {
		b, err := r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, n, err
		}
		n++
		value |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			return value, n, nil
		}
		shift += 7
	}
	return 0, n, fmt.Errorf("%w: remaining length longer than 4 bytes", ErrMalformed)
}

// decodeBody decodes and validates the variable header and payload of pk.
// A panic of the codec on hostile input is reported as a malformed packet.
func decodeBody(pk *packets.Packet, buf []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: decoder panic: %v", ErrMalformed, r)
		}
	}()
	switch pk.FixedHeader.Type {
	case packets.Connect:
		if err := pk.ConnectDecode(buf); err != nil {
			if pk.ProtocolVersion != 4 && pk.ProtocolVersion != 5 && len(pk.Connect.ProtocolName) > 0 {
				return fmt.Errorf("%w: %d", ErrUnsupportedVersion, pk.ProtocolVersion)
			}
			return decodeError(err)
		}
	case packets.Publish:
		if err := pk.PublishDecode(buf); err != nil {
			return decodeError(err)
		}
		// Topic aliases are checked against the connection's own maximum
		// by the PUBLISH handler.
		if code := pk.PublishValidate(65535); code != packets.CodeSuccess {
			return decodeError(code)
		}
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		if err := pk.PubackDecode(buf); err != nil {
			return decodeError(err)
		}
		if pk.ProtocolVersion == 5 && !pk.ReasonCodeValid() {
			return fmt.Errorf("%w: reason code %#x in %s", ErrMalformed, pk.ReasonCode, packets.PacketNames[pk.FixedHeader.Type])
		}
	case packets.Subscribe:
		if err := pk.SubscribeDecode(buf); err != nil {
			return decodeError(err)
		}
		if code := pk.SubscribeValidate(); code != packets.CodeSuccess {
			return decodeError(code)
		}
		for _, f := range pk.Filters {
			if f.RetainHandling > 2 {
				return fmt.Errorf("%w: retain handling 3", ErrProtocol)
			}
		}
	case packets.Unsubscribe:
		if err := pk.UnsubscribeDecode(buf); err != nil {
			return decodeError(err)
		}
		if code := pk.UnsubscribeValidate(); code != packets.CodeSuccess {
			return decodeError(code)
		}
	case packets.Pingreq:
		if len(buf) != 0 {
			return fmt.Errorf("%w: PINGREQ with a body", ErrMalformed)
		}
	case packets.Disconnect:
		if err := pk.DisconnectDecode(buf); err != nil {
			return decodeError(err)
		}
		if pk.ProtocolVersion == 5 && len(buf) == 1 {
			// The codec reads the reason code only when properties follow.
			pk.ReasonCode = buf[0]
		}
	case packets.Auth:
		if err := pk.AuthDecode(buf); err != nil {
			return decodeError(err)
		}
	}
	return nil
}

// encode appends the wire form of pk to b.
func encode(b *bytes.Buffer, pk *packets.Packet) error {
	switch pk.FixedHeader.Type {
	case packets.Connack:
		return pk.ConnackEncode(b)
	case packets.Publish:
		return pk.PublishEncode(b)
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		if pk.FixedHeader.Type == packets.Pubrel {
			pk.FixedHeader.Qos = 1 // PUBREL's fixed header flags are 0010 [MQTT-3.6.1-1]
		}
		return pk.PubackEncode(b)
	case packets.Suback:
		return pk.SubackEncode(b)
	case packets.Unsuback:
		return pk.UnsubackEncode(b)
	case packets.Pingresp:
		return pk.PingrespEncode(b)
	case packets.Disconnect:
		return pk.DisconnectEncode(b)
	}
	return fmt.Errorf("mqtt: cannot encode packet type %d", pk.FixedHeader.Type)
}

// encodeBytes returns the wire form of pk.
func encodeBytes(pk *packets.Packet) []byte {
	var b bytes.Buffer
	if err := encode(&b, pk); err != nil {
		// Only programming errors get here: every packet the server builds encodes.
		panic(err)
	}
	return b.Bytes()
}
