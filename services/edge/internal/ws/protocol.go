package ws

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"

	"github.com/heraldmq/herald/services/edge/internal/wire"
)

// Frame types and ops of the protocol (see the package documentation).
const (
	opSubscribe   = "subscribe"
	opUnsubscribe = "unsubscribe"
	opPublish     = "publish"
	opPing        = "ping"

	typeAck     = "ack"
	typeMessage = "message"
	typeGap     = "gap"
	typeError   = "error"
	typePong    = "pong"
)

// request is a client frame; which fields matter depends on Op.
type request struct {
	Op          string `json:"op"`
	ID          string `json:"id"`
	Topic       string `json:"topic"`
	From        string `json:"from"`
	Retained    bool   `json:"retained"`
	Rewind      rewind `json:"rewind"`
	Payload     string `json:"payload"`
	Encoding    string `json:"encoding"`
	QoS         int    `json:"qos"`
	Retain      bool   `json:"retain"`
	ContentType string `json:"content_type"`
}

// rewind is a subscribe's rewind: a count of messages (10 or "10") or a
// duration ("30s"), kept as text for node.ParseStart.
type rewind string

// UnmarshalJSON takes a JSON number or string.
func (r *rewind) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*r = rewind(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("rewind: want a count of messages or a duration such as \"30s\"")
	}
	*r = rewind(s)
	return nil
}

// ack answers subscribe, unsubscribe and publish; Seq and Position are
// set for publish only.
type ack struct {
	Type     string `json:"type"`
	ID       string `json:"id,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
	Position string `json:"position,omitempty"`
}

// gap tells that messages of the subscription Topic after From may be missing.
type gap struct {
	Type         string `json:"type"`
	Topic        string `json:"topic"`
	From         string `json:"from"`
	EpochChanged bool   `json:"epoch_changed,omitempty"`
}

// errorFrame reports a failed request (ID set) or a frame that could not be
// read (ID empty).
type errorFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

type pong struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
}

// encodingBinary marks a message whose payload follows the header of a
// binary frame, raw.
const encodingBinary = "binary"

// binaryHeader is the JSON header of a binary message frame: the fields of
// a text message frame but the payload, which follows the header raw.
type binaryHeader struct {
	Type           string              `json:"type"`
	Filter         string              `json:"filter,omitempty"`
	Topic          string              `json:"topic"`
	Encoding       string              `json:"encoding"`
	QoS            byte                `json:"qos"`
	Retain         bool                `json:"retain"`
	Seq            uint64              `json:"seq"`
	Position       string              `json:"position,omitempty"`
	ContentType    string              `json:"content_type,omitempty"`
	UserProperties []wire.UserProperty `json:"user_properties,omitempty"`
}

// binaryFrame is a frame to send as a binary message: the 4-byte big-endian
// length of the JSON header, the header, then the payload.
type binaryFrame struct {
	header  any
	payload []byte
}

// encodeFrame encodes v into buf[:0] and reports whether it is a binary frame.
func encodeFrame(buf *bytes.Buffer, v any) (isBinary bool, err error) {
	buf.Reset()
	f, ok := v.(binaryFrame)
	if !ok {
		return false, wire.AppendJSON(buf, v)
	}
	buf.Write([]byte{0, 0, 0, 0})
	if err := wire.AppendJSON(buf, f.header); err != nil {
		return true, err
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)-4))
	buf.Write(f.payload)
	return true, nil
}

// errBadBinaryFrame is a binary frame that does not follow the layout.
var errBadBinaryFrame = errors.New("binary frame: want a 4-byte big-endian header length, a JSON header and the payload")

// decodeBinary splits a client's binary frame into its header and payload.
func decodeBinary(data []byte) (request, []byte, error) {
	var req request
	if len(data) < 4 {
		return req, nil, errBadBinaryFrame
	}
	n := binary.BigEndian.Uint32(data)
	if uint64(n) > uint64(len(data)-4) {
		return req, nil, errBadBinaryFrame
	}
	if err := json.Unmarshal(data[4:4+n], &req); err != nil {
		return req, nil, errors.Join(errBadBinaryFrame, err)
	}
	return req, data[4+n:], nil
}
