package fault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestTableComplete ensures every kind has a row: a name, an HTTP status
// with a JSON code, a WebSocket close code and an MQTT 5 reason code.
func TestTableComplete(t *testing.T) {
	seen := map[string]bool{}
	for k := Kind(0); k < kinds; k++ {
		c := k.Codes()
		if c.Name == "" || c.HTTP == 0 || c.Code == "" || c.WS < 1000 || c.MQTT5 < 0x80 || c.MQTT3 == 0 {
			t.Errorf("kind %d: incomplete row %+v", k, c)
		}
		if seen[c.Name] {
			t.Errorf("kind %d: name %q used twice", k, c.Name)
		}
		seen[c.Name] = true
	}
	if Kind(200).Codes() != Table[Internal] {
		t.Error("an unknown kind is not Internal")
	}
}

// TestKindOf ensures a kind travels through wrapping and joins, the first
// declared kind in the chain wins, a refining sentinel keeps its own kind
// while matching its parent, and foreign errors are classified.
func TestKindOf(t *testing.T) {
	refused := New(Forbidden, "not authorized")
	revoked := Sub(Revoked, refused, "credential revoked")
	invalid := New(InvalidTopic, "invalid topic")
	for _, tc := range []struct {
		name string
		err  error
		want Kind
	}{
		{"sentinel", refused, Forbidden},
		{"wrapped", fmt.Errorf("publish to %q: %w", "a", refused), Forbidden},
		{"refined", fmt.Errorf("%w: key deleted", revoked), Revoked},
		{"join order", errors.Join(invalid, refused), InvalidTopic},
		{"first %w wins", fmt.Errorf("%w: %w", refused, invalid), Forbidden},
		{"marked", Mark(Unavailable, errors.New("nats: timeout")), Unavailable},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), Canceled},
		{"deadline", context.DeadlineExceeded, Deadline},
		{"unknown", errors.New("boom"), Internal},
	} {
		if got := KindOf(tc.err); got != tc.want {
			t.Errorf("%s: kind %v, want %v", tc.name, got, tc.want)
		}
	}
	if !errors.Is(revoked, refused) {
		t.Error("a refined sentinel does not match its parent")
	}
	if Mark(Internal, nil) != nil {
		t.Error("Mark of nil is not nil")
	}
}

// TestProtocolCodes ensures the table gives the codes the protocol
// documents promise for the common refusals.
func TestProtocolCodes(t *testing.T) {
	for _, tc := range []struct {
		k     Kind
		mqtt3 byte
		mqtt5 byte
		http  int
		ws    int
		grpc  codes.Code
	}{
		{Unauthenticated, 4, 0x86, http.StatusUnauthorized, 1008, codes.Unauthenticated},
		{Forbidden, 5, 0x87, http.StatusForbidden, 1008, codes.PermissionDenied},
		{Quota, 3, 0x97, http.StatusTooManyRequests, 1008, codes.ResourceExhausted},
		{Busy, 3, 0x89, http.StatusServiceUnavailable, 1013, codes.Unavailable},
		{TooLarge, 3, 0x95, http.StatusRequestEntityTooLarge, 1009, codes.ResourceExhausted},
		{NotFound, 3, 0x92, http.StatusNotFound, 1008, codes.NotFound},
	} {
		c := tc.k.Codes()
		if c.MQTT3 != tc.mqtt3 || c.MQTT5 != tc.mqtt5 || c.HTTP != tc.http || c.WS != tc.ws || c.GRPC != tc.grpc {
			t.Errorf("%v: %+v", tc.k, c)
		}
	}
}

// TestMQTT5For ensures a code a packet may not carry becomes 0x80 (0x92
// in PUBREL and PUBCOMP), and an allowed one passes.
func TestMQTT5For(t *testing.T) {
	unavailable := New(Unavailable, "backbone down")
	for _, tc := range []struct {
		err    error
		packet byte
		want   byte
	}{
		{nil, PacketPuback, 0},
		{unavailable, PacketConnack, 0x88},
		{unavailable, PacketPuback, 0x80},
		{unavailable, PacketSuback, 0x80},
		{New(Forbidden, "x"), PacketPuback, 0x87},
		{New(InvalidFilter, "x"), PacketSuback, 0x8F},
		{New(InvalidFilter, "x"), PacketPuback, 0x80},
		{New(NotFound, "x"), PacketPubrel, 0x92},
		{New(Internal, "x"), PacketPubcomp, 0x92},
		{New(SlowConsumer, "x"), PacketDisconnect, 0x97},
	} {
		if got := MQTT5For(tc.err, tc.packet); got != tc.want {
			t.Errorf("%v in packet %d: 0x%02x, want 0x%02x", tc.err, tc.packet, got, tc.want)
		}
	}
}
