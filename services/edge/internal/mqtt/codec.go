package mqtt

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
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
// strings and payload alias it. The Packet comes from packetPool.
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
	if hb>>4 == packets.Publish && hb&0x06 == 0x06 {
		return nil, fmt.Errorf("%w: PUBLISH with QoS 3", ErrMalformed) // [MQTT-3.3.1-4]
	}
	pk := packetPool.Get().(*packets.Packet)
	*pk = packets.Packet{ProtocolVersion: version}
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

// badConnect is a CONNECT that did not decode, with the protocol level it
// declared: an MQTT 5 client is told why (CONNACK 0x81 or 0x82) before the
// connection closes, as MQTT 5 §4.13.1 allows.
type badConnect struct {
	version byte
	err     error
}

func (e *badConnect) Error() string { return e.err.Error() }
func (e *badConnect) Unwrap() error { return e.err }

// packetPool recycles decoded packets (800 bytes each): a connection's
// reader hands each back with releasePacket once handled. What a handler
// keeps of a packet (payload, strings, property slices) is allocated apart
// from the Packet and stays valid; only the Packet itself is reused.
var packetPool = sync.Pool{New: func() any { return new(packets.Packet) }}

// releasePacket returns pk to the pool; nothing may use it afterwards.
func releasePacket(pk *packets.Packet) { packetPool.Put(pk) }

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

// decodeBody decodes the variable header and payload of pk with the
// codec, then validates the packet (validate.go). A panic of the codec on
// hostile input is reported as a malformed packet.
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
			return &badConnect{version: pk.ProtocolVersion, err: decodeError(err)}
		}
		if err := validate(pk, buf); err != nil {
			return &badConnect{version: pk.ProtocolVersion, err: err}
		}
		return nil
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
	case packets.Subscribe:
		if err := pk.SubscribeDecode(buf); err != nil {
			return decodeError(err)
		}
		if code := pk.SubscribeValidate(); code != packets.CodeSuccess {
			return decodeError(code)
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
	return validate(pk, buf)
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

// publishOut is an outbound PUBLISH: one delivery of a message to one
// connection.
type publishOut struct {
	version     byte
	qos         byte
	retain, dup bool
	id          uint16
	// topic is the topic name sent: empty when the alias stands for it.
	topic string
	alias uint16 // MQTT 5 topic alias, 0 for none
	// expiry is the MQTT 5 message expiry interval left, 0 for none.
	expiry uint32
	ids    []uint32 // MQTT 5 subscription identifiers
	// seq: the client asked for the stream sequence (SeqProperty).
	seq bool
	// traceParent, when set, replaces or adds the MQTT 5 traceparent user
	// property (see traceProperty).
	traceParent string
}

// publishEncoder encodes outbound PUBLISH packets without allocating once
// its buffers have grown: the writer's hot path. The packets codec builds
// each PUBLISH from a Packet through several temporary buffers and copies
// the payload twice; this writes the same bytes (the tests compare both)
// straight from the message, and leaves the payload to be written by the
// caller after the header.
type publishEncoder struct {
	head, props []byte
}

// header returns the fixed header, variable header and properties of a
// PUBLISH of m (everything before the payload); it is valid until the
// next call. The properties come from m in the packets codec's order:
// payload format, message expiry, content type, response topic,
// correlation data, subscription identifiers, topic alias, user
// properties (the message's as published, then herald-seq if the client
// asked for it, then traceparent).
func (e *publishEncoder) header(p *publishOut, m *message.Message) []byte {
	var props []byte
	if p.version == 5 {
		props = e.v5Properties(p, m)
		e.props = props
	}
	n := 2 + len(p.topic) + len(m.Payload)
	if p.qos > 0 {
		n += 2
	}
	if p.version == 5 {
		n += varIntLen(len(props)) + len(props)
	}
	b := e.head[:0]
	b = append(b, packets.Publish<<4|bit(p.dup)<<3|p.qos<<1|bit(p.retain))
	b = appendVarInt(b, n)
	b = appendString(b, p.topic)
	if p.qos > 0 {
		b = append(b, byte(p.id>>8), byte(p.id))
	}
	if p.version == 5 {
		b = appendVarInt(b, len(props))
		b = append(b, props...)
	}
	e.head = b
	return b
}

func (e *publishEncoder) v5Properties(p *publishOut, m *message.Message) []byte {
	b := e.props[:0]
	if m.PayloadUTF8 {
		b = append(b, packets.PropPayloadFormat, 1)
	}
	if p.expiry > 0 {
		b = append(b, packets.PropMessageExpiryInterval,
			byte(p.expiry>>24), byte(p.expiry>>16), byte(p.expiry>>8), byte(p.expiry))
	}
	if m.ContentType != "" {
		b = append(b, packets.PropContentType)
		b = appendString(b, m.ContentType)
	}
	if m.ResponseTopic != "" && !strings.ContainsAny(m.ResponseTopic, "+#") {
		b = append(b, packets.PropResponseTopic)
		b = appendString(b, m.ResponseTopic)
	}
	if len(m.CorrelationData) > 0 {
		b = append(b, packets.PropCorrelationData)
		b = appendString(b, string(m.CorrelationData))
	}
	for _, id := range p.ids {
		if id > 0 {
			b = append(b, packets.PropSubscriptionIdentifier)
			b = appendVarInt(b, int(id))
		}
	}
	if p.alias > 0 {
		b = append(b, packets.PropTopicAlias, byte(p.alias>>8), byte(p.alias))
	}
	trace := p.traceParent
	for _, u := range m.UserProperties {
		v := u.Value
		if trace != "" && u.Key == telemetry.HeaderTraceParent {
			v, trace = trace, ""
		}
		b = appendUserProperty(b, u.Key, v)
	}
	if p.seq && m.Seq > 0 {
		// After the message's own: the last herald-seq is the server's
		// (see SeqProperty).
		b = append(b, packets.PropUser)
		b = appendString(b, SeqProperty)
		at := len(b)
		b = append(b, 0, 0)
		b = strconv.AppendUint(b, m.Seq, 10)
		l := len(b) - at - 2
		b[at], b[at+1] = byte(l>>8), byte(l)
	}
	if trace != "" {
		b = appendUserProperty(b, telemetry.HeaderTraceParent, trace)
	}
	return b
}

func appendUserProperty(b []byte, k, v string) []byte {
	b = append(b, packets.PropUser)
	b = appendString(b, k)
	return appendString(b, v)
}

// appendString appends an MQTT UTF-8 string or binary data: a two-byte
// length, then the bytes. Longer values cannot occur: every string comes
// from a packet whose own encoding bounded it.
func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

// appendVarInt appends a variable byte integer (MQTT §1.5.5).
func appendVarInt(b []byte, v int) []byte {
	for {
		d := byte(v % 128)
		v /= 128
		if v > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if v == 0 {
			return b
		}
	}
}

func varIntLen(v int) int {
	n := 1
	for v >= 128 {
		v /= 128
		n++
	}
	return n
}

func bit(v bool) byte {
	if v {
		return 1
	}
	return 0
}
