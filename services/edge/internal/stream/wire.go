package stream

import (
	"bytes"
	"encoding/json"

	"github.com/heraldmq/herald/pkg/message"
)

// WireMessage is a message as SSE data and WebSocket message frames carry
// it, in JSON. Type, Filter and Position are set by the WebSocket protocol
// only (SSE puts the position in the event id).
type WireMessage struct {
	Type           string             `json:"type,omitempty"`
	Filter         string             `json:"filter,omitempty"`
	Topic          string             `json:"topic"`
	Payload        string             `json:"payload"`
	Encoding       string             `json:"encoding"`
	QoS            byte               `json:"qos"`
	Retain         bool               `json:"retain"`
	Seq            uint64             `json:"seq"`
	Position       string             `json:"position,omitempty"`
	ContentType    string             `json:"content_type,omitempty"`
	UserProperties []WireUserProperty `json:"user_properties,omitempty"`
}

// WireUserProperty is one user property on the JSON wire.
type WireUserProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Wire returns m's wire form (without Type, Filter and Position).
func Wire(m *message.Message) WireMessage {
	w := WireMessage{Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Seq: m.Seq, ContentType: m.ContentType}
	w.Payload, w.Encoding = EncodePayload(m.Payload)
	if len(m.UserProperties) > 0 {
		w.UserProperties = make([]WireUserProperty, len(m.UserProperties))
		for i, p := range m.UserProperties {
			w.UserProperties[i] = WireUserProperty{Key: p.Key, Value: p.Value}
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
