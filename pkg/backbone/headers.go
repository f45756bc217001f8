package backbone

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/nats-io/nats.go"
)

// NATS header names carrying message metadata. Names are fixed: they are part
// of the stream's stored format.
const (
	hdrQoS           = "Herald-Qos"
	hdrRetain        = "Herald-Retain"
	hdrContentType   = "Herald-Content-Type"
	hdrPayloadUTF8   = "Herald-Payload-Utf8"
	hdrResponseTopic = "Herald-Response-Topic"
	hdrCorrelation   = "Herald-Correlation"
	hdrUserProps     = "Herald-User-Properties"
	hdrExpires       = "Herald-Expires"
	hdrOrigin        = "Herald-Origin"
	// HeaderTraceParent is the W3C trace context header.
	HeaderTraceParent = "traceparent"
)

// encode builds the NATS message for m under subject.
func encode(subject string, m *message.Message) *nats.Msg {
	h := nats.Header{}
	if m.QoS > 0 {
		h.Set(hdrQoS, strconv.Itoa(int(m.QoS)))
	}
	if m.Retain {
		h.Set(hdrRetain, "1")
	}
	if m.ContentType != "" {
		h.Set(hdrContentType, m.ContentType)
	}
	if m.PayloadUTF8 {
		h.Set(hdrPayloadUTF8, "1")
	}
	if m.ResponseTopic != "" {
		h.Set(hdrResponseTopic, m.ResponseTopic)
	}
	if m.CorrelationData != nil {
		h.Set(hdrCorrelation, base64.RawStdEncoding.EncodeToString(m.CorrelationData))
	}
	if len(m.UserProperties) > 0 {
		// JSON keeps order, repeated keys and arbitrary bytes, which NATS
		// header keys (canonicalised, no ':') would not.
		b, _ := json.Marshal(m.UserProperties)
		h.Set(hdrUserProps, string(b))
	}
	if !m.ExpiresAt.IsZero() {
		h.Set(hdrExpires, strconv.FormatInt(m.ExpiresAt.UnixMilli(), 10))
	}
	if m.Origin != "" {
		h.Set(hdrOrigin, m.Origin)
	}
	return &nats.Msg{Subject: subject, Header: h, Data: m.Payload}
}

// decodeHeaders fills m from the Herald headers of h. Unknown or malformed
// values are ignored rather than failing delivery: the message was accepted.
func decodeHeaders(m *message.Message, h nats.Header) {
	if h == nil {
		return
	}
	if v := h.Get(hdrQoS); v != "" {
		if q, err := strconv.Atoi(v); err == nil && q >= 0 && q <= 2 {
			m.QoS = byte(q)
		}
	}
	m.Retain = h.Get(hdrRetain) == "1"
	m.ContentType = h.Get(hdrContentType)
	m.PayloadUTF8 = h.Get(hdrPayloadUTF8) == "1"
	m.ResponseTopic = h.Get(hdrResponseTopic)
	if v := h.Get(hdrCorrelation); v != "" {
		m.CorrelationData, _ = base64.RawStdEncoding.DecodeString(v)
	}
	if v := h.Get(hdrUserProps); v != "" {
		_ = json.Unmarshal([]byte(v), &m.UserProperties)
	}
	if v := h.Get(hdrExpires); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			m.ExpiresAt = time.UnixMilli(ms)
		}
	}
	m.Origin = h.Get(hdrOrigin)
	m.TraceParent = h.Get(HeaderTraceParent)
}

// splitSubject parses "<prefix>.<kind>.<tenant>.<tokens>" into tenant and topic.
func splitSubject(prefixKind, subject string) (tenant, name string, err error) {
	rest, ok := strings.CutPrefix(subject, prefixKind+".")
	if !ok {
		return "", "", topic.ErrBadSubject
	}
	tenant, tokens, ok := strings.Cut(rest, ".")
	if !ok {
		return "", "", topic.ErrBadSubject
	}
	name, err = topic.FromSubject(tokens)
	return tenant, name, err
}
