// Package fault is Herald's one error vocabulary. A sentinel error declares
// a Kind — what went wrong, as the client is told (invalid, refused, over a
// limit, unavailable, …) — and Table maps each Kind to what every protocol
// Herald speaks says for it: the MQTT 3.1.1 CONNACK return code, the MQTT 5
// reason code, the HTTP status with its JSON error code, the WebSocket close
// code and the gRPC status code. Transports and the admin API read the
// table; none keeps a mapping of its own.
//
// A Kind travels with the error: KindOf finds the first sentinel of a Kind
// in err's chain, in the order errors.As walks it (the outermost first, and
// for a join, its errors in order). So fmt.Errorf("%w: …", ErrX) keeps ErrX's
// kind, and a sentinel may refine another one it wraps (Sub): auth's revoked
// credential is a refusal, but says Revoked. Errors from outside Herald
// carry no kind and are classified at the boundary they cross (the backbone
// wraps NATS errors in its ErrUnavailable); context.Canceled and
// context.DeadlineExceeded are known here, anything else is Internal.
package fault

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
)

// Kind is a class of failure, as a client is told about it.
type Kind uint8

// Kinds. The zero Kind is Internal: an error nobody classified is a bug or
// a misconfiguration until someone says otherwise.
const (
	// Internal is a bug or a misconfiguration.
	Internal Kind = iota
	// Invalid is a malformed request: a packet, frame, body, query or
	// position that does not parse.
	Invalid
	// ProtocolError is a request that parses but breaks the protocol's rules.
	ProtocolError
	// InvalidTopic is a topic name the rules of topics refuse.
	InvalidTopic
	// InvalidFilter is a topic filter the rules of topics refuse.
	InvalidFilter
	// Unauthenticated is a credential presented and refused: wrong,
	// malformed or expired.
	Unauthenticated
	// Revoked is a credential that held and no longer does: revoked,
	// changed or expired while in use, or its tenant deleted.
	Revoked
	// Forbidden is an identity asking for what it may not do (not
	// authorized).
	Forbidden
	// Quota is a tenant's or a connection's limit reached: connections,
	// subscriptions, message or byte rates.
	Quota
	// PayloadQuota is a payload over the tenant's payload limit.
	PayloadQuota
	// TooLarge is a packet, frame or body over what the protocol
	// endpoint accepts.
	TooLarge
	// MessageRate is a publisher over its rate where the protocol has no
	// acknowledgement to refuse in (MQTT QoS 0): the connection closes.
	MessageRate
	// AuthRate is a source or key refused for a while after too many
	// failed authentications.
	AuthRate
	// SlowConsumer is a subscriber that does not read as fast as its
	// messages arrive: its bounded queue overflowed.
	SlowConsumer
	// Busy is the edge shedding load: new connections refused.
	Busy
	// Unavailable is a dependency (the backbone, the store) that cannot
	// serve now; retrying later may succeed.
	Unavailable
	// ShuttingDown is the server going away; reconnect elsewhere.
	ShuttingDown
	// Timeout is a client too slow to send its request.
	Timeout
	// Deadline is an operation that did not complete in its time.
	Deadline
	// Canceled is an operation abandoned by its caller.
	Canceled
	// NotFound is something named that does not exist.
	NotFound
	// Conflict is a write based on a state that changed meanwhile.
	Conflict
	// AlreadyExists is a create of something that exists.
	AlreadyExists
	// Unsupported is a feature Herald does not offer.
	Unsupported
	// UnsupportedVersion is a protocol version Herald does not speak.
	UnsupportedVersion
	// BadClientID is an MQTT client identifier the server refuses.
	BadClientID
	// BadAuthMethod is an authentication method Herald does not offer.
	BadAuthMethod
	// TopicAlias is an MQTT topic alias out of range.
	TopicAlias
	// ReceiveMaximum is an MQTT client over the server's Receive Maximum.
	ReceiveMaximum
	// KeepAlive is a client silent beyond its keep alive.
	KeepAlive
	// TakenOver is a session another connection of the same client took.
	TakenOver
	// UseAnotherServer sends a client elsewhere for now.
	UseAnotherServer
	// ServerMoved sends a client elsewhere for good.
	ServerMoved

	kinds // the number of kinds
)

// Codes is what each protocol says for a Kind.
type Codes struct {
	// Name is the Kind's name, for logs.
	Name string
	// MQTT3 is the MQTT 3.1.1 CONNACK return code that refuses a CONNECT
	// for this kind (3.1.1 has no other negative code: elsewhere the
	// connection is closed).
	MQTT3 byte
	// MQTT5 is the MQTT 5 reason code (§2.4). Where the kind's code is
	// not allowed in a packet (a PUBACK cannot say 0x88), the packet says
	// 0x80, unspecified error: MQTT5For applies that rule.
	MQTT5 byte
	// HTTP is the HTTP status and Code the JSON error code of the edge's
	// HTTP answers, SSE and WebSocket error frames.
	HTTP int
	Code string
	// WS is the WebSocket close code (RFC 6455 §7.4) when the kind ends a
	// connection.
	WS int
	// GRPC is the gRPC status code of the admin API (grpc-gateway maps it
	// to its own HTTP status for REST).
	GRPC codes.Code
}

// JSON error codes: stable strings, part of the wire protocol of HTTP
// publish, long-poll, SSE and the WebSocket protocol.
const (
	CodeBadRequest       = "bad_request"
	CodeInvalidTopic     = "invalid_topic"
	CodeNotAuthenticated = "not_authenticated"
	CodeNotAuthorized    = "not_authorized"
	CodeTimeout          = "request_timeout"
	CodeTooLarge         = "payload_too_large"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeBusy             = "server_busy"
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeInternal         = "internal"
)

// Table is the one mapping of kinds to protocol codes.
var Table = [kinds]Codes{
	Internal:           {"internal", 3, 0x80, http.StatusInternalServerError, CodeInternal, 1011, codes.Internal},
	Invalid:            {"invalid", 3, 0x81, http.StatusBadRequest, CodeBadRequest, 1007, codes.InvalidArgument},
	ProtocolError:      {"protocol error", 3, 0x82, http.StatusBadRequest, CodeBadRequest, 1002, codes.InvalidArgument},
	InvalidTopic:       {"invalid topic", 3, 0x90, http.StatusBadRequest, CodeInvalidTopic, 1008, codes.InvalidArgument},
	InvalidFilter:      {"invalid filter", 3, 0x8F, http.StatusBadRequest, CodeInvalidTopic, 1008, codes.InvalidArgument},
	Unauthenticated:    {"unauthenticated", 4, 0x86, http.StatusUnauthorized, CodeNotAuthenticated, 1008, codes.Unauthenticated},
	Revoked:            {"revoked", 5, 0x87, http.StatusUnauthorized, CodeNotAuthenticated, 1008, codes.Unauthenticated},
	Forbidden:          {"forbidden", 5, 0x87, http.StatusForbidden, CodeNotAuthorized, 1008, codes.PermissionDenied},
	Quota:              {"quota", 3, 0x97, http.StatusTooManyRequests, CodeRateLimited, 1008, codes.ResourceExhausted},
	PayloadQuota:       {"payload quota", 3, 0x97, http.StatusRequestEntityTooLarge, CodeTooLarge, 1009, codes.ResourceExhausted},
	TooLarge:           {"too large", 3, 0x95, http.StatusRequestEntityTooLarge, CodeTooLarge, 1009, codes.ResourceExhausted},
	MessageRate:        {"message rate", 3, 0x96, http.StatusTooManyRequests, CodeRateLimited, 1008, codes.ResourceExhausted},
	AuthRate:           {"authentication rate", 3, 0x9F, http.StatusTooManyRequests, CodeRateLimited, 1008, codes.ResourceExhausted},
	SlowConsumer:       {"slow consumer", 3, 0x97, http.StatusServiceUnavailable, CodeUnavailable, 1013, codes.ResourceExhausted},
	Busy:               {"busy", 3, 0x89, http.StatusServiceUnavailable, CodeBusy, 1013, codes.Unavailable},
	Unavailable:        {"unavailable", 3, 0x88, http.StatusServiceUnavailable, CodeUnavailable, 1011, codes.Unavailable},
	ShuttingDown:       {"shutting down", 3, 0x8B, http.StatusServiceUnavailable, CodeUnavailable, 1012, codes.Unavailable},
	Timeout:            {"timeout", 3, 0x80, http.StatusRequestTimeout, CodeTimeout, 1008, codes.DeadlineExceeded},
	Deadline:           {"deadline", 3, 0x80, http.StatusServiceUnavailable, CodeUnavailable, 1011, codes.DeadlineExceeded},
	Canceled:           {"canceled", 3, 0x80, http.StatusServiceUnavailable, CodeUnavailable, 1001, codes.Canceled},
	NotFound:           {"not found", 3, 0x92, http.StatusNotFound, CodeNotFound, 1008, codes.NotFound},
	Conflict:           {"conflict", 3, 0x80, http.StatusConflict, CodeConflict, 1008, codes.Aborted},
	AlreadyExists:      {"already exists", 3, 0x80, http.StatusConflict, CodeConflict, 1008, codes.AlreadyExists},
	Unsupported:        {"unsupported", 3, 0x9E, http.StatusBadRequest, CodeBadRequest, 1003, codes.Unimplemented},
	UnsupportedVersion: {"unsupported version", 1, 0x84, http.StatusBadRequest, CodeBadRequest, 1002, codes.Unimplemented},
	BadClientID:        {"bad client id", 2, 0x85, http.StatusBadRequest, CodeBadRequest, 1008, codes.InvalidArgument},
	BadAuthMethod:      {"bad authentication method", 5, 0x8C, http.StatusUnauthorized, CodeNotAuthenticated, 1008, codes.Unauthenticated},
	TopicAlias:         {"topic alias", 3, 0x94, http.StatusBadRequest, CodeBadRequest, 1002, codes.InvalidArgument},
	ReceiveMaximum:     {"receive maximum", 3, 0x93, http.StatusTooManyRequests, CodeRateLimited, 1008, codes.ResourceExhausted},
	KeepAlive:          {"keep alive", 3, 0x8D, http.StatusRequestTimeout, CodeTimeout, 1001, codes.DeadlineExceeded},
	TakenOver:          {"taken over", 3, 0x8E, http.StatusConflict, CodeConflict, 1008, codes.Aborted},
	UseAnotherServer:   {"use another server", 3, 0x9C, http.StatusServiceUnavailable, CodeUnavailable, 1012, codes.Unavailable},
	ServerMoved:        {"server moved", 3, 0x9D, http.StatusServiceUnavailable, CodeUnavailable, 1012, codes.Unavailable},
}

// Codes returns the kind's row of Table.
func (k Kind) Codes() Codes {
	if k >= kinds {
		return Table[Internal]
	}
	return Table[k]
}

// String names the kind.
func (k Kind) String() string { return k.Codes().Name }

// kinded is implemented by errors that declare a kind.
type kinded interface {
	error
	Kind() Kind
}

// sentinel is an error with a kind, optionally refining a parent error.
type sentinel struct {
	kind   Kind
	text   string
	parent error
}

func (e *sentinel) Error() string { return e.text }
func (e *sentinel) Kind() Kind    { return e.kind }
func (e *sentinel) Unwrap() error { return e.parent }

// New returns a sentinel error of kind k with the given text.
func New(k Kind, text string) error { return &sentinel{kind: k, text: text} }

// Sub returns a sentinel error of kind k that refines parent: errors.Is
// finds parent through it, but its kind is k. Its text is parent's,
// followed by ": " and text.
func Sub(k Kind, parent error, text string) error {
	return &sentinel{kind: k, text: parent.Error() + ": " + text, parent: parent}
}

// Mark returns err with kind k, for errors from outside Herald classified
// at the boundary they cross. It returns nil for a nil err.
func Mark(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &sentinel{kind: k, text: err.Error(), parent: err}
}

// KindOf returns the kind of err: that of the first error in its chain
// that declares one, else Canceled or Deadline for the context errors,
// else Internal. A nil error has no kind; KindOf returns Internal for it,
// and callers check for nil first.
func KindOf(err error) Kind {
	if k, ok := errors.AsType[kinded](err); ok {
		return k.Kind()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return Deadline
	}
	return Internal
}

// Declared reports whether an error in err's chain declares a kind: an
// error of Herald's own, already classified.
func Declared(err error) bool {
	_, ok := errors.AsType[kinded](err)
	return ok
}

// Of returns the codes of err's kind.
func Of(err error) Codes { return KindOf(err).Codes() }

// Is reports whether err is of kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }

// MQTT 5 packets whose reason codes MQTT5For checks.
const (
	PacketConnack    = 2
	PacketPuback     = 4
	PacketPubrec     = 5
	PacketPubrel     = 6
	PacketPubcomp    = 7
	PacketSuback     = 9
	PacketUnsuback   = 11
	PacketDisconnect = 14
)

// MQTT5For returns the MQTT 5 reason code that reports err in a packet of
// the given type: its kind's code when the packet may carry it (MQTT 5
// §3.2.2.2, §3.4.2.1, §3.5.2.1, §3.6.2.1, §3.7.2.1, §3.9.3, §3.11.3,
// §3.14.2.1), else 0x80, unspecified error, which every packet with a
// reason code allows (but PUBREL and PUBCOMP, which know only 0x92).
func MQTT5For(err error, packet byte) byte {
	if err == nil {
		return 0
	}
	code := Of(err).MQTT5
	if allowed(packet, code) {
		return code
	}
	if packet == PacketPubrel || packet == PacketPubcomp {
		return 0x92
	}
	return 0x80
}

// allowed reports whether packet may carry the error reason code.
func allowed(packet, code byte) bool {
	switch packet {
	case PacketConnack:
		switch code {
		case 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F:
			return true
		}
	case PacketPuback, PacketPubrec:
		switch code {
		case 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99:
			return true
		}
	case PacketPubrel, PacketPubcomp:
		return code == 0x92
	case PacketSuback:
		switch code {
		case 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2:
			return true
		}
	case PacketUnsuback:
		switch code {
		case 0x80, 0x83, 0x87, 0x8F, 0x91:
			return true
		}
	case PacketDisconnect:
		switch code {
		case 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
			0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2:
			return true
		}
	default:
		return true
	}
	return false
}
