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
// The body is the payload as sent, whatever the Content-Type. One type is
// not stored: application/x-www-form-urlencoded, which curl sends for -d
// and --data-binary unless told otherwise, so that nearly every publish
// carrying it declares nothing; stored, it would tell every MQTT 5, SSE,
// WebSocket and long-poll subscriber that a JSON or text payload is a
// form. Such a publish has no content type (a batch's content_type says
// "application/x-www-form-urlencoded" when a form is meant).
//
// The answer, 200 {"seq":N,"position":"<epoch>-<seq>"}, comes only once the
// backbone stored the message: a 200 means durable. Errors are JSON
// {"error":{"code":...,"message":...}}: 400 invalid_topic or bad_request,
// 401 not_authenticated, 403 not_authorized, 413 payload_too_large, 503
// unavailable (not stored; retrying may store it twice).
//
// With the herald_token cookie as its credential, a publish must come from
// the edge's own origin or an allowed one (the CORS origins, when they may
// send credentials) and carry a Content-Type no cross-origin page can send
// without a preflight: present, and none of application/x-www-form-
// urlencoded, multipart/form-data and text/plain. Otherwise it is 403
// not_authorized: a page elsewhere cannot publish with a visitor's cookie.
//
// # Batch
//
//	POST /publish                        (no ?topic)
//	Content-Type: application/json
//	{"messages":[{"topic":"a/b","payload":"hi","encoding":"utf8","qos":1,"retain":false,"content_type":"text/plain"}, ...]}
//
// publishes up to max_batch messages (encoding "utf8", the default, or
// "base64"; the body at most max_batch_bytes) and answers, once every
// message is settled,
//
//	200 {"results":[{"seq":N,"position":"<epoch>-<seq>"}, {"error":{"code":...,"message":...}}, ...]}
//
// with one result per message, in order. Each message stands alone: an
// invalid one (bad topic, encoding, qos or size) is not published and gets
// its error while the others are; the stored ones are stored in the order
// given. A message whose store failed (unavailable) may leave later ones
// stored; a client that needs the order across such a failure resends from
// the first failed message on (which may store some twice). A body that is
// not a batch at all is refused as a whole (400, 413).
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/cors"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// DefaultMaxPayload bounds a published body.
const DefaultMaxPayload = 1 << 20

// Defaults of PublishConfig.
const (
	DefaultMaxBatch      = 1000
	DefaultMaxBatchBytes = 8 << 20
)

// PublishConfig configures POST /publish. The zero value is valid.
type PublishConfig struct {
	// MaxPayload bounds a published payload; default 1 MiB.
	MaxPayload int64 `name:"max-payload" env:"HERALD_PUBLISH_MAX_PAYLOAD" placeholder:"BYTES" help:"Bounds a published payload; default 1 MiB."`
	// MaxBatch bounds the messages of one batch; default 1000.
	MaxBatch int `name:"max-batch" env:"HERALD_PUBLISH_MAX_BATCH" placeholder:"N" help:"Bounds the messages of one batch; default 1000."`
	// MaxBatchBytes bounds the body of a batch; default 8 MiB.
	MaxBatchBytes int64 `name:"max-batch-bytes" env:"HERALD_PUBLISH_MAX_BATCH_BYTES" placeholder:"BYTES" help:"Bounds the body of a batch; default 8 MiB."`
	// CookieOrigins are the host patterns (cors.Config.Hosts) of the
	// origins besides the edge's own whose pages may publish with the
	// cookie credential; the edge sets them from its CORS origins when
	// those may send credentials. Any other origin, and any form content
	// type, is refused with the cookie (cors.CheckCookieWrite).
	CookieOrigins []string `kong:"-"`
	// BodyTimeout bounds the reading of a publish's body, from the moment
	// the handler is called: a client sending it slower is answered 408
	// (or the refusal it had earned before its body was read) and its
	// connection closed. The edge sets it from its http.body_timeout;
	// zero means no bound.
	BodyTimeout time.Duration `kong:"-"`
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c PublishConfig) WithDefaults() PublishConfig {
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	return c
}

// Validate reports a configuration error.
func (c PublishConfig) Validate() error {
	if c.MaxPayload < 0 || c.MaxBatch < 0 || c.MaxBatchBytes < 0 {
		return errors.New("publish: negative limit")
	}
	return nil
}

// PublishHandler serves POST /publish.
type PublishHandler struct {
	n   *node.Node
	cfg PublishConfig
}

// NewPublishHandler returns the POST /publish handler over n with the
// default limits.
func NewPublishHandler(n *node.Node) http.Handler {
	return NewPublishHandlerConfig(PublishConfig{}, n)
}

// NewPublishHandlerConfig returns the POST /publish handler over n. cfg
// must be valid.
func NewPublishHandlerConfig(cfg PublishConfig, n *node.Node) http.Handler {
	return &PublishHandler{n: n, cfg: cfg.WithDefaults()}
}

// PublishResponse is the body of a successful publish.
type PublishResponse struct {
	Seq      uint64 `json:"seq"`
	Position string `json:"position"`
}

// ServeHTTP implements http.Handler.
func (h *PublishHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The body must arrive within the body timeout from here, whoever
	// reads it: readBody, or net/http, which reads what a refused request
	// left unread before it answers (to keep the connection) — without a
	// deadline, a refusal of a slowly sent body waited for all of it.
	if h.cfg.BodyTimeout > 0 {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.cfg.BodyTimeout))
	}
	// A browser adds the cookie to any page's requests: a write with it
	// must come from an allowed origin, in a form no cross-origin page can
	// send without a preflight (checked before anything is spent on it).
	if CookieCredential(r) {
		if err := cors.CheckCookieWrite(r, h.cfg.CookieOrigins); err != nil {
			WriteError(w, err)
			return
		}
	}
	id, err := Authenticate(r, h.n)
	if err != nil {
		WriteError(w, err)
		return
	}
	q := r.URL.Query()
	if !q.Has("topic") && isJSON(r.Header.Get("Content-Type")) {
		h.serveBatch(w, r, id)
		return
	}
	m := &message.Message{Topic: q.Get("topic"), ContentType: declaredContentType(r.Header.Get("Content-Type"))}
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
	if m.Payload, err = h.readBody(w, r, h.cfg.MaxPayload); err != nil {
		WriteError(w, err)
		return
	}
	pos, err := h.publish(r.Context(), id, m, node.PublishOptions{Wait: node.WaitStored,
		TraceParent: r.Header.Get("Traceparent"), Protocol: telemetry.ProtocolHTTPAPI})
	if err != nil {
		WriteError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, PublishResponse{Seq: pos.Seq, Position: pos.String()})
}

// formType is what curl's -d and --data-binary send as Content-Type unless
// told otherwise.
const formType = "application/x-www-form-urlencoded"

// declaredContentType is the content type a single publish declares: its
// Content-Type, but none for curl's default (see the package doc).
func declaredContentType(header string) string {
	if mt, _, err := mime.ParseMediaType(header); err == nil && mt == formType {
		return ""
	}
	return header
}

// publish publishes m for id through the core (which checks it: topic,
// capabilities, the tenant's rates and payload limit) and waits for its
// store; a failure of the backbone is logged.
func (h *PublishHandler) publish(ctx context.Context, id auth.Identity, m *message.Message, opts node.PublishOptions) (message.Position, error) {
	r, err := h.n.Publish(ctx, node.Caller{Identity: id}, m, opts)
	var pos message.Position
	if err == nil {
		pos, err = r.Wait(ctx)
	}
	if _, status := Classify(err); status >= 500 && ctx.Err() == nil {
		h.n.Logger().Warn("http publish failed", "tenant", id.Tenant, "err", err)
	}
	return pos, err
}

// readBody reads a request body of at most max bytes, within the body
// timeout set by ServeHTTP.
func (h *PublishHandler) readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, fmt.Errorf("%w: at most %d bytes", ErrTooLarge, max)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		switch {
		case errors.As(err, new(*http.MaxBytesError)):
			return nil, fmt.Errorf("%w: at most %d bytes", ErrTooLarge, max)
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The deadline stays, and the connection closes after the
			// answer: the rest of a slow body is not waited for.
			w.Header().Set("Connection", "close")
			return nil, fmt.Errorf("%w: the body did not arrive within %v", ErrBodyTimeout, h.cfg.BodyTimeout)
		}
		return nil, fmt.Errorf("%w: reading body: %w", ErrBadRequest, err)
	}
	if h.cfg.BodyTimeout > 0 {
		// Cleared once read: the rest of the request (the store) is not
		// the client's to hurry, and a deadline left on the connection
		// would end the request's context under it.
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	return b, nil
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

func parseFlag(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	return strconv.ParseBool(v)
}

var _ http.Handler = (*PublishHandler)(nil)
