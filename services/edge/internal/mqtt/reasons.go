package mqtt

import (
	"errors"
	"strings"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Sentinel errors of the MQTT server. Each declares its fault kind: the
// one table of pkg/fault maps it, as it maps the errors of the rest of
// Herald, to MQTT 5 reason codes and MQTT 3.1.1 return codes (reasonCode,
// reasonIn, connackCodeV3).
var (
	// ErrMalformed is returned for a packet that does not decode.
	ErrMalformed = fault.New(fault.Invalid, "mqtt: malformed packet")
	// ErrProtocol is returned for a packet that decodes but breaks the protocol.
	ErrProtocol = fault.New(fault.ProtocolError, "mqtt: protocol error")
	// ErrPacketTooLarge is returned for a packet larger than MaxPacketSize.
	ErrPacketTooLarge = fault.New(fault.TooLarge, "mqtt: packet too large")
	// ErrUnsupportedVersion is returned for a CONNECT of a protocol level other than 4 or 5.
	ErrUnsupportedVersion = fault.New(fault.UnsupportedVersion, "mqtt: unsupported protocol version")
	// ErrClientID is returned for a client identifier the server refuses.
	ErrClientID = fault.New(fault.BadClientID, "mqtt: client identifier not valid")
	// ErrBadAuthMethod is returned for a CONNECT asking for enhanced authentication.
	ErrBadAuthMethod = fault.New(fault.BadAuthMethod, "mqtt: authentication method not supported")
	// ErrTopicAlias is returned for a topic alias of 0 or above the Topic Alias Maximum.
	ErrTopicAlias = fault.New(fault.TopicAlias, "mqtt: topic alias invalid")
	// ErrReceiveMaximum is returned when a client exceeds the Receive Maximum.
	ErrReceiveMaximum = fault.New(fault.ReceiveMaximum, "mqtt: receive maximum exceeded")
	// errPacketIDNotFound answers a PUBREL or PUBREC for an exchange the
	// session does not hold; it does not end the connection.
	errPacketIDNotFound = fault.New(fault.NotFound, "mqtt: packet identifier not found")
	// ErrServerUnavailable refuses a client the server cannot serve now.
	ErrServerUnavailable = fault.New(fault.Unavailable, "mqtt: server unavailable")
	// ErrSessionTakenOver ends a connection whose client identifier
	// connected again, on this edge or another.
	ErrSessionTakenOver = fault.New(fault.TakenOver, "mqtt: session taken over")
	// ErrUseAnotherServer ends connections the edge sends elsewhere for now (a drain).
	ErrUseAnotherServer = fault.New(fault.UseAnotherServer, "mqtt: use another server")
	// ErrServerMoved ends connections the edge sends elsewhere for good.
	ErrServerMoved = fault.New(fault.ServerMoved, "mqtt: server moved")
	// ErrSlowConsumer is returned when a client's queue is full of QoS 1 messages.
	ErrSlowConsumer = fault.New(fault.SlowConsumer, "mqtt: slow consumer: queue full")
	// ErrKeepAliveTimeout is returned when nothing arrived within 1.5 keep alive intervals.
	ErrKeepAliveTimeout = fault.New(fault.KeepAlive, "mqtt: keep alive timeout")
	// errQoS0RateTooHigh ends a connection whose QoS 0 publish exceeded a
	// rate limit: QoS 0 has no acknowledgement to refuse in (DISCONNECT
	// 0x96, message rate too high); it is joined with the limits error.
	errQoS0RateTooHigh = fault.New(fault.MessageRate, "mqtt: message rate too high")
	// ErrShuttingDown is returned when the server closes its connections.
	ErrShuttingDown = fault.New(fault.ShuttingDown, "mqtt: server shutting down")
	// errWillRefused wraps why a CONNECT's will was refused (willRefused),
	// so that an MQTT 3.1.1 client gets return code 5 whatever the reason;
	// an MQTT 5 client gets the reason's own code.
	errWillRefused = errors.New("mqtt: will refused")
)

// MQTT 5 reason codes (MQTT 5 §2.4). Which one reports an error is the
// fault table's business (reasonCode, reasonIn); the packets the server
// builds itself, and the tests, name them.
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

// reasonCode is the MQTT 5 reason code of err's kind (pkg/fault's table):
// what a CONNACK or a DISCONNECT says for it; 0 for nil.
func reasonCode(err error) byte {
	if err == nil {
		return codeSuccess
	}
	return fault.Of(err).MQTT5
}

// reasonIn is the reason code that reports err in a packet of the given
// type: reasonCode when the packet may carry it, else 0x80 (0x92 in PUBREL
// and PUBCOMP).
func reasonIn(err error, packet byte) byte { return fault.MQTT5For(err, packet) }

// connackCodeV3 is the MQTT 3.1.1 CONNACK return code of the kind whose
// MQTT 5 reason code is code (MQTT 3.1.1 §3.2.2.3): the closest to it.
func connackCodeV3(code byte) byte {
	if code < 0x80 {
		return 0x00
	}
	for k := range fault.Kind(255) {
		if c := k.Codes(); c.Name != "" && c.MQTT5 == code {
			return c.MQTT3
		}
	}
	return 0x03 // server unavailable
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
