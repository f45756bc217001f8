package httpapi

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/limits"
)

// Sentinel errors for request faults the transports detect themselves.
var (
	// ErrBadRequest is a malformed request (query, position, frame).
	ErrBadRequest = fault.New(fault.Invalid, "bad request")
	// ErrTooLarge is a payload over the configured limit.
	ErrTooLarge = fault.New(fault.TooLarge, "payload too large")
	// ErrBodyTimeout is a request body that did not arrive within the
	// body timeout.
	ErrBodyTimeout = fault.New(fault.Timeout, "request body timeout")
)

// Classify returns err's JSON error code and HTTP status, from the one
// table of pkg/fault (err's kind); HTTP, SSE, long-poll and the WebSocket
// protocol's error frames answer with them.
func Classify(err error) (code string, status int) {
	if err == nil {
		return "", http.StatusOK
	}
	c := fault.Of(err)
	return c.Code, c.HTTP
}

// Describe returns the code and the client-facing message of err. Client
// faults show the error text; server faults a generic text, so internal
// details (subjects, addresses) stay in the logs.
func Describe(err error) (code, msg string, status int) {
	code, status = Classify(err)
	switch {
	case status < 500:
		return code, err.Error(), status
	case code == fault.CodeUnavailable:
		return code, "the message backbone is unavailable, retry later", status
	case code == fault.CodeBusy:
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
