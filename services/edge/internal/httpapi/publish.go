// Package httpapi is the edge's plain HTTP face: POST /publish, plus what
// every HTTP-based transport (SSE, the WebSocket protocol) shares with it —
// reading credentials from a request, and the one mapping of errors to
// codes, HTTP statuses and JSON bodies (errors.go).
//
// # POST /publish
//
//	POST /publish?topic=<name>[&retain=1][&qos=0|1]
//	Authorization: Bearer <token>        (or cookie herald_token, or &token=)
//	Content-Type: <stored as the message's content type>
//	<body: the payload, at most 1 MiB>
//
// The answer, 200 {"seq":N,"position":"<epoch>-<seq>"}, comes only once the
// backbone stored the message: a 200 means durable. Errors are JSON
// {"error":{"code":...,"message":...}}: 400 invalid_topic or bad_request,
// 401 not_authenticated, 403 not_authorized, 413 payload_too_large, 503
// unavailable (not stored; retrying may store it twice).
package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// DefaultMaxPayload bounds a published body.
const DefaultMaxPayload = 1 << 20

// PublishHandler serves POST /publish.
type PublishHandler struct {
	n *node.Node
	// MaxPayload bounds the body; default DefaultMaxPayload.
	MaxPayload int64
}

// NewPublishHandler returns the POST /publish handler over n.
func NewPublishHandler(n *node.Node) http.Handler {
	return &PublishHandler{n: n, MaxPayload: DefaultMaxPayload}
}

// PublishResponse is the body of a successful publish.
type PublishResponse struct {
	Seq      uint64 `json:"seq"`
	Position string `json:"position"`
}

// ServeHTTP implements http.Handler.
func (h *PublishHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := Authenticate(r, h.n.Auth)
	if err != nil {
		WriteError(w, err)
		return
	}
	q := r.URL.Query()
	m := &message.Message{Tenant: id.Tenant, Topic: q.Get("topic"), ContentType: r.Header.Get("Content-Type")}
	if m.Retain, err = parseFlag(q.Get("retain")); err != nil {
		WriteError(w, fmt.Errorf("%w: retain: %w", ErrBadRequest, err))
		return
	}
	switch q.Get("qos") {
	case "", "0":
	case "1":
		m.QoS = 1
	default:
		WriteError(w, fmt.Errorf("%w: qos must be 0 or 1", ErrBadRequest))
		return
	}
	if r.ContentLength > h.MaxPayload {
		WriteError(w, fmt.Errorf("%w: at most %d bytes", ErrTooLarge, h.MaxPayload))
		return
	}
	m.Payload, err = io.ReadAll(http.MaxBytesReader(w, r.Body, h.MaxPayload))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			err = fmt.Errorf("%w: at most %d bytes", ErrTooLarge, h.MaxPayload)
		} else {
			err = fmt.Errorf("%w: reading body: %w", ErrBadRequest, err)
		}
		WriteError(w, err)
		return
	}
	pos, err := h.n.Publish(r.Context(), m, backbone.PublishOptions{TraceParent: r.Header.Get("Traceparent")})
	if err != nil {
		if _, status := Classify(err); status >= 500 {
			h.n.Log.Warn("http publish failed", "tenant", id.Tenant, "err", err)
		}
		WriteError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, PublishResponse{Seq: pos.Seq, Position: pos.String()})
}

func parseFlag(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	return strconv.ParseBool(v)
}

var _ http.Handler = (*PublishHandler)(nil)
