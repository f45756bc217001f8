package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/cors"
	"github.com/heraldmq/herald/services/edge/internal/hub"
	"github.com/heraldmq/herald/services/edge/internal/limits"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Error codes: stable strings, part of the wire protocol of HTTP publish,
// SSE and the WebSocket protocol (its error frames carry the same codes).
const (
	CodeBadRequest       = "bad_request"       // 400: malformed request
	CodeInvalidTopic     = "invalid_topic"     // 400: topic name or filter rejected
	CodeNotAuthenticated = "not_authenticated" // 401: wrong, malformed, expired or revoked credentials
	CodeNotAuthorized    = "not_authorized"    // 403: credentials valid, access refused
	CodeTimeout          = "request_timeout"   // 408: the body came slower than the body timeout
	CodeTooLarge         = "payload_too_large" // 413: body over the limit
	CodeRateLimited      = "rate_limited"      // 429: a tenant limit or too many failed attempts; see Retry-After
	CodeUnavailable      = "unavailable"       // 503: backbone unavailable, retry later
	CodeBusy             = "server_busy"       // 503: the edge sheds load; see Retry-After
	CodeInternal         = "internal"          // 500: a bug or a misconfiguration
)

// Sentinel errors for request faults the transports detect themselves.
var (
	// ErrBadRequest is a malformed request (query, position, frame).
	ErrBadRequest = errors.New("bad request")
	// ErrTooLarge is a payload over the configured limit.
	ErrTooLarge = errors.New("payload too large")
	// ErrBodyTimeout is a request body that did not arrive within the
	// body timeout.
	ErrBodyTimeout = errors.New("request body timeout")
)

// Classify maps an error to its wire code and HTTP status. This is the one
// place where domain errors become protocol errors for HTTP, SSE and the
// WebSocket protocol.
func Classify(err error) (code string, status int) {
	var maxBytes *http.MaxBytesError
	var jsErr jetstream.JetStreamError
	switch {
	case err == nil:
		return "", http.StatusOK
	// A refused credential is 401 whatever else its error wraps: a JWT
	// whose capability claim holds a malformed filter wraps the topic
	// error that made it malformed, and is still a bad credential, not a
	// bad request. A revoked credential (its key deleted, changed or
	// expired, its tenant deleted, while the request ran) is 401 too: the
	// client must authenticate again.
	case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrRevoked):
		return CodeNotAuthenticated, http.StatusUnauthorized
	case errors.Is(err, ErrBadRequest), errors.Is(err, message.ErrBadPosition), errors.Is(err, stream.ErrBadEncoding):
		return CodeBadRequest, http.StatusBadRequest
	case errors.Is(err, node.ErrInvalidTopic), errors.Is(err, hub.ErrInvalidFilter), isTopicError(err):
		return CodeInvalidTopic, http.StatusBadRequest
	case errors.Is(err, auth.ErrRateLimited), errors.Is(err, limits.ErrRateLimited),
		errors.Is(err, limits.ErrConnectionLimit), errors.Is(err, limits.ErrSubscriptionLimit):
		return CodeRateLimited, http.StatusTooManyRequests
	case errors.Is(err, limits.ErrPayloadTooLarge):
		return CodeTooLarge, http.StatusRequestEntityTooLarge
	case errors.Is(err, limits.ErrServerBusy):
		return CodeBusy, http.StatusServiceUnavailable
	case errors.Is(err, auth.ErrNotAuthorized), errors.Is(err, cors.ErrCrossSite):
		return CodeNotAuthorized, http.StatusForbidden
	case errors.Is(err, ErrTooLarge), errors.As(err, &maxBytes):
		return CodeTooLarge, http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBodyTimeout):
		return CodeTimeout, http.StatusRequestTimeout
	case errors.Is(err, backbone.ErrNotStored), errors.Is(err, backbone.ErrNoStream), errors.Is(err, backbone.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrNoServers), errors.As(err, &jsErr):
		return CodeUnavailable, http.StatusServiceUnavailable
	}
	return CodeInternal, http.StatusInternalServerError
}

func isTopicError(err error) bool {
	for _, e := range []error{topic.ErrEmpty, topic.ErrTooLong, topic.ErrTooDeep, topic.ErrInvalidUTF8,
		topic.ErrWildcardInName, topic.ErrBadWildcard} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Describe returns the code and the client-facing message of err. Client
// faults show the error text; server faults a generic text, so internal
// details (subjects, addresses) stay in the logs.
func Describe(err error) (code, msg string, status int) {
	code, status = Classify(err)
	switch {
	case status < 500:
		return code, err.Error(), status
	case code == CodeUnavailable:
		return code, "the message backbone is unavailable, retry later", status
	case code == CodeBusy:
		return code, "the server is busy, retry later", status
	}
	return code, "internal error", status
}

// WWWAuthenticate is the challenge of every 401 answer of the edge (RFC
// 6750 §3): a 401 always means that a credential was presented and
// refused — wrong, malformed, expired or revoked — so its error is
// invalid_token. A request without any credential is 403 (no anonymous
// access), as MQTT's CONNACK 0x87.
const WWWAuthenticate = `Bearer realm="herald", error="invalid_token"`

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the error object of an ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteError answers the request with err as a JSON error body and the
// status Classify gives it.
func WriteError(w http.ResponseWriter, err error) {
	code, msg, status := Describe(err)
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", WWWAuthenticate)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(err)))
	case http.StatusServiceUnavailable:
		if d := limits.RetryAfter(err); d > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
		}
	}
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

// retryAfterSeconds is the Retry-After of a 429: what the error says (an
// authentication rate limit), else one second (token buckets refill within
// a second; a connection slot may free at any time).
func retryAfterSeconds(err error) int {
	if d := auth.RetryAfter(err); d > 0 {
		return int(math.Ceil(d.Seconds()))
	}
	return 1
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
