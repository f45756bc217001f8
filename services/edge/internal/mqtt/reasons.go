package mqtt

import (
	"errors"
	"strings"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/hub"
	"github.com/heraldmq/herald/services/edge/internal/limits"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Sentinel errors of the MQTT server. reasonCode maps them, and the errors
// of the rest of Herald, to MQTT 5 reason codes.
var (
	// ErrMalformed is returned for a packet that does not decode.
	ErrMalformed = errors.New("mqtt: malformed packet")
	// ErrProtocol is returned for a packet that decodes but breaks the protocol.
	ErrProtocol = errors.New("mqtt: protocol error")
	// ErrPacketTooLarge is returned for a packet larger than MaxPacketSize.
	ErrPacketTooLarge = errors.New("mqtt: packet too large")
	// ErrUnsupportedVersion is returned for a CONNECT of a protocol level other than 4 or 5.
	ErrUnsupportedVersion = errors.New("mqtt: unsupported protocol version")
	// ErrClientID is returned for a client identifier the server refuses.
	ErrClientID = errors.New("mqtt: client identifier not valid")
	// ErrBadAuthMethod is returned for a CONNECT asking for enhanced authentication.
	ErrBadAuthMethod = errors.New("mqtt: authentication method not supported")
	// ErrTopicAlias is returned for a topic alias of 0 or above the Topic Alias Maximum.
	ErrTopicAlias = errors.New("mqtt: topic alias invalid")
	// ErrReceiveMaximum is returned when a client exceeds the Receive Maximum.
	ErrReceiveMaximum = errors.New("mqtt: receive maximum exceeded")
	// errPacketIDNotFound answers a PUBREL or PUBREC for an exchange the
	// session does not hold; it does not end the connection.
	errPacketIDNotFound = errors.New("mqtt: packet identifier not found")
	// ErrServerUnavailable refuses a client the server cannot serve now.
	ErrServerUnavailable = errors.New("mqtt: server unavailable")
	// ErrSessionTakenOver ends a connection whose client identifier
	// connected again, on this edge or another.
	ErrSessionTakenOver = errors.New("mqtt: session taken over")
	// ErrUseAnotherServer ends connections the edge sends elsewhere for now (a drain).
	ErrUseAnotherServer = errors.New("mqtt: use another server")
	// ErrServerMoved ends connections the edge sends elsewhere for good.
	ErrServerMoved = errors.New("mqtt: server moved")
	// ErrSlowConsumer is returned when a client's queue is full of QoS 1 messages.
	ErrSlowConsumer = errors.New("mqtt: slow consumer: queue full")
	// ErrKeepAliveTimeout is returned when nothing arrived within 1.5 keep alive intervals.
	ErrKeepAliveTimeout = errors.New("mqtt: keep alive timeout")
	// errQoS0RateTooHigh ends a connection whose QoS 0 publish exceeded a
	// rate limit: QoS 0 has no acknowledgement to refuse in (DISCONNECT
	// 0x96, message rate too high); it is joined with the limits error.
	errQoS0RateTooHigh = errors.New("mqtt: message rate too high")
	// ErrShuttingDown is returned when the server closes its connections.
	ErrShuttingDown = errors.New("mqtt: server shutting down")
	// errWillRefused wraps why a CONNECT's will was refused (willRefused),
	// so that an MQTT 3.1.1 client gets return code 5 whatever the reason.
	errWillRefused = errors.New("mqtt: will refused")
)

// MQTT 5 reason codes used by the server (MQTT 5 §2.4).
const (
	codeSuccess              byte = 0x00
	codeGrantedQoS1          byte = 0x01
	codeDisconnectWithWill   byte = 0x04
	codeNoSubscription       byte = 0x11
	codeUnspecified          byte = 0x80
	codeMalformed            byte = 0x81
	codeProtocolError        byte = 0x82
	codeUnsupportedVersion   byte = 0x84
	codeClientIDNotValid     byte = 0x85
	codeBadUserOrPassword    byte = 0x86
	codeNotAuthorized        byte = 0x87
	codeServerUnavailable    byte = 0x88
	codeServerBusy           byte = 0x89
	codeServerShuttingDown   byte = 0x8B
	codeSessionTakenOver     byte = 0x8E
	codeBadAuthMethod        byte = 0x8C
	codeKeepAliveTimeout     byte = 0x8D
	codeTopicFilterInvalid   byte = 0x8F
	codeTopicNameInvalid     byte = 0x90
	codePacketIDNotFound     byte = 0x92
	codeReceiveMaxExceeded   byte = 0x93
	codeTopicAliasInvalid    byte = 0x94
	codePacketTooLarge       byte = 0x95
	codeMessageRateTooHigh   byte = 0x96
	codeQuotaExceeded        byte = 0x97
	codeUseAnotherServer     byte = 0x9C
	codeServerMoved          byte = 0x9D
	codeSharedSubUnsupported byte = 0x9E
	codeConnectionRateExceed byte = 0x9F
)

// reasonCode maps an error to the MQTT 5 reason code that reports it, in
// whatever packet carries it (CONNACK, PUBACK, SUBACK, DISCONNECT).
func reasonCode(err error) byte {
	switch {
	case err == nil:
		return codeSuccess
	case errors.Is(err, ErrPacketTooLarge):
		return codePacketTooLarge
	case errors.Is(err, errQoS0RateTooHigh):
		return codeMessageRateTooHigh
	// Tenants' limits and authentication failures (MQTT 5 §4.13): a
	// refused CONNECT, PUBLISH or SUBSCRIBE filter, as the packet says.
	case errors.Is(err, limits.ErrConnectionLimit), errors.Is(err, limits.ErrRateLimited),
		errors.Is(err, limits.ErrPayloadTooLarge), errors.Is(err, limits.ErrSubscriptionLimit):
		return codeQuotaExceeded
	case errors.Is(err, auth.ErrRateLimited):
		return codeConnectionRateExceed
	case errors.Is(err, limits.ErrServerBusy):
		return codeServerBusy
	case errors.Is(err, ErrMalformed):
		return codeMalformed
	case errors.Is(err, ErrProtocol):
		return codeProtocolError
	case errors.Is(err, ErrUnsupportedVersion):
		return codeUnsupportedVersion
	case errors.Is(err, ErrClientID):
		return codeClientIDNotValid
	case errors.Is(err, ErrBadAuthMethod):
		return codeBadAuthMethod
	case errors.Is(err, ErrTopicAlias):
		return codeTopicAliasInvalid
	case errors.Is(err, ErrReceiveMaximum):
		return codeReceiveMaxExceeded
	case errors.Is(err, hub.ErrSharedUnsupported):
		return codeSharedSubUnsupported
	case errors.Is(err, ErrServerUnavailable):
		return codeServerUnavailable
	case errors.Is(err, errPacketIDNotFound):
		return codePacketIDNotFound
	case errors.Is(err, ErrSessionTakenOver):
		return codeSessionTakenOver
	case errors.Is(err, ErrUseAnotherServer):
		return codeUseAnotherServer
	case errors.Is(err, ErrServerMoved):
		return codeServerMoved
	case errors.Is(err, ErrSlowConsumer):
		return codeQuotaExceeded
	case errors.Is(err, ErrKeepAliveTimeout):
		return codeKeepAliveTimeout
	case errors.Is(err, ErrShuttingDown):
		return codeServerShuttingDown
	case errors.Is(err, auth.ErrBadCredentials):
		return codeBadUserOrPassword
	case errors.Is(err, auth.ErrNotAuthorized):
		return codeNotAuthorized
	case errors.Is(err, node.ErrInvalidTopic):
		return codeTopicNameInvalid
	case errors.Is(err, hub.ErrInvalidFilter), isTopicError(err):
		return codeTopicFilterInvalid
	case errors.Is(err, backbone.ErrBadTenant):
		return codeNotAuthorized
	}
	return codeUnspecified
}

// maxReasonString bounds a reason string: it is a hint for humans.
const maxReasonString = 200

// reasonString returns the reason string that reports err (MQTT 5 §3.4.2.2.2):
// its text on one line, bounded.
func reasonString(err error) string {
	if err == nil {
		return ""
	}
	s := strings.ReplaceAll(err.Error(), "\n", ": ")
	if len(s) > maxReasonString {
		s = strings.ToValidUTF8(s[:maxReasonString], "")
	}
	return s
}

func isTopicError(err error) bool {
	for _, e := range []error{topic.ErrEmpty, topic.ErrTooLong, topic.ErrTooDeep,
		topic.ErrInvalidUTF8, topic.ErrWildcardInName, topic.ErrBadWildcard} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// connackCodeV3 maps an MQTT 5 CONNACK reason code to the MQTT 3.1.1
// return code closest to it (MQTT 3.1.1 §3.2.2.3).
func connackCodeV3(code byte) byte {
	switch code {
	case codeSuccess:
		return 0x00
	case codeUnsupportedVersion:
		return 0x01
	case codeClientIDNotValid:
		return 0x02
	case codeBadUserOrPassword:
		return 0x04
	case codeNotAuthorized, codeBadAuthMethod:
		return 0x05
	}
	return 0x03 // server unavailable
}

// subackCodeV3 maps an MQTT 5 SUBACK reason code to MQTT 3.1.1: any failure is 0x80.
func subackCodeV3(code byte) byte {
	if code >= 0x80 {
		return 0x80
	}
	return code
}

// decodeError classifies an error of the packets codec, which reports
// mochi reason codes, as one of this package's sentinels.
func decodeError(err error) error {
	var code packets.Code
	if errors.As(err, &code) {
		switch code.Code {
		case codeProtocolError:
			return errors.Join(ErrProtocol, err)
		case codeTopicAliasInvalid:
			return errors.Join(ErrTopicAlias, err)
		case codeClientIDNotValid:
			return errors.Join(ErrClientID, err)
		}
	}
	return errors.Join(ErrMalformed, err)
}
