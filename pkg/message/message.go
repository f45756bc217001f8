// Package message defines the message every Herald transport publishes and
// delivers, and its position in a tenant's stream.
//
// A Message is protocol-neutral: MQTT, SSE, WebSocket and HTTP each map it to
// their own wire form (docs/protocols.md). Once stored on the backbone it
// carries a Position, which is what clients resume from.
package message

import (
	"strconv"
	"strings"
	"time"

	"github.com/heraldmq/herald/pkg/fault"
)

// UserProperty is one MQTT 5 user property (a name may repeat).
type UserProperty struct {
	Key   string `json:"k"`
	Value string `json:"v"`
}

// Message is one published message.
type Message struct {
	// Tenant owns the topic namespace the message lives in.
	Tenant string `json:"-"`
	// Topic is the MQTT topic name.
	Topic string `json:"t"`
	// Payload is the application payload, never interpreted by Herald.
	Payload []byte `json:"p,omitempty"`
	// QoS is the publish quality of service (0, 1 or 2).
	QoS byte `json:"q,omitempty"`
	// Retain asks the session service to keep the message as the topic's
	// retained message; an empty payload with Retain deletes it.
	Retain bool `json:"r,omitempty"`

	// ContentType is the MQTT 5 content type (a MIME type by convention).
	ContentType string `json:"ct,omitempty"`
	// PayloadUTF8 is the MQTT 5 payload format indicator (true = UTF-8 text).
	PayloadUTF8 bool `json:"pf,omitempty"`
	// ResponseTopic and CorrelationData carry MQTT 5 request/response.
	ResponseTopic   string `json:"rt,omitempty"`
	CorrelationData []byte `json:"cd,omitempty"`
	// UserProperties are MQTT 5 user properties, in order.
	UserProperties []UserProperty `json:"up,omitempty"`
	// ExpiresAt is when the message stops being delivered; zero means never.
	ExpiresAt time.Time `json:"x,omitempty"`
	// Origin identifies the publishing connection ("<edge>/<client>"), for
	// MQTT 5 no-local subscriptions.
	Origin string `json:"o,omitempty"`

	// TraceParent is the W3C trace context of a sampled message (the
	// backbone's traceparent header); empty for the unsampled. Telemetry
	// only: stores and wire formats leave it out.
	TraceParent string `json:"-"`

	// Seq is the message's sequence in its tenant stream, set once stored.
	Seq uint64 `json:"s,omitempty"`
	// Time is when the backbone stored the message.
	Time time.Time `json:"ts,omitempty"`
}

// Position is a place in a tenant's stream: the sequence of a message and the
// epoch of the stream it belongs to. The epoch changes when the stream is
// recreated, so a client can never silently resume into a different history.
type Position struct {
	Epoch string
	Seq   uint64
}

// ErrBadPosition is returned by ParsePosition for text that is not a position.
var ErrBadPosition = fault.New(fault.Invalid, "message: malformed position")

// String formats the position as "<epoch>-<seq>", or "<seq>" without an
// epoch. This is the SSE event id and the WebSocket resume cursor.
func (p Position) String() string {
	if p.Epoch == "" {
		return strconv.FormatUint(p.Seq, 10)
	}
	return p.Epoch + "-" + strconv.FormatUint(p.Seq, 10)
}

// ParsePosition parses the output of Position.String. A bare sequence is
// accepted (with an empty epoch, meaning "the current epoch").
func ParsePosition(s string) (Position, error) {
	s = strings.TrimSpace(s)
	epoch, seqText := "", s
	if i := strings.LastIndexByte(s, '-'); i >= 0 {
		epoch, seqText = s[:i], s[i+1:]
		if epoch == "" {
			return Position{}, ErrBadPosition
		}
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return Position{}, ErrBadPosition
	}
	return Position{Epoch: epoch, Seq: seq}, nil
}

// Expired reports whether the message has expired at now.
func (m *Message) Expired(now time.Time) bool {
	return !m.ExpiresAt.IsZero() && !now.Before(m.ExpiresAt)
}
