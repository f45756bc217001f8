// Package wire is the JSON form of a message that the edge's browser
// transports share: SSE event data, WebSocket message frames and long-poll
// answers carry the same fields (docs/protocols.md), the payload as text
// when it is UTF-8 and base64 otherwise.
package wire

import (
	"bytes"
	"encoding/json"

	"github.com/heraldmq/herald/pkg/message"
)

// Message is a message as SSE data and WebSocket message frames carry
// it, in JSON. Type, Filter and Position are set by the WebSocket protocol
// only (SSE puts the position in the event id).
type Message struct {
	Type           string         `json:"type,omitempty"`
	Filter         string         `json:"filter,omitempty"`
	Topic          string         `json:"topic"`
	Payload        string         `json:"payload"`
	Encoding       string         `json:"encoding"`
	QoS            byte           `json:"qos"`
	Retain         bool           `json:"retain"`
	Seq            uint64         `json:"seq"`
	Position       string         `json:"position,omitempty"`
	ContentType    string         `json:"content_type,omitempty"`
	UserProperties []UserProperty `json:"user_properties,omitempty"`
}

// UserProperty is one user property on the JSON wire.
type UserProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Of returns m's wire form (without Type, Filter and Position).
func Of(m *message.Message) Message {
	w := Message{Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Seq: m.Seq, ContentType: m.ContentType}
	w.Payload, w.Encoding = EncodePayload(m.Payload)
	if len(m.UserProperties) > 0 {
		w.UserProperties = make([]UserProperty, len(m.UserProperties))
		for i, p := range m.UserProperties {
			w.UserProperties[i] = UserProperty{Key: p.Key, Value: p.Value}
		}
	}
	return w
}

// AppendJSON appends v as one line of JSON (no trailing newline; control
// characters, U+2028 and U+2029 escaped), without escaping HTML characters.
func AppendJSON(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}
