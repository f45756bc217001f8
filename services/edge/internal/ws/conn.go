package ws

import (
	"context"
	"errors"
	"net/http"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// CloseCode is a WebSocket close status (RFC 6455 section 7.4); another
// carrier (Transport) sends it as its own close code.
type CloseCode int

// Close codes the protocol uses.
const (
	closeNormal          CloseCode = 1000
	closeGoingAway       CloseCode = 1001 // idle timeout
	closeProtocolError   CloseCode = 1002 // unmasked client frame
	closeUnsupportedData CloseCode = 1003 // binary frame without ?binary=1
	closeInvalidData     CloseCode = 1007 // invalid UTF-8 in a text frame
	closePolicy          CloseCode = 1008 // repeated malformed frames
	closeTooBig          CloseCode = 1009 // a frame over max_frame_size
	closeInternal        CloseCode = 1011
	closeServiceRestart  CloseCode = 1012 // edge shutting down: reconnect elsewhere
	closeTryAgainLater   CloseCode = 1013 // slow consumer
)

// Conn is the slice of a WebSocket connection the protocol uses, so that
// the library underneath can be swapped (for memory per idle connection)
// without touching the protocol. Read is called by one goroutine; the
// other methods may be called concurrently with it. Herald serializes
// Write calls itself.
type Conn interface {
	// Read returns the next data message; it also answers pings and
	// records pongs, so it must be running for Ping to return. A text
	// message is valid UTF-8. A client that broke a rule of RFC 6455 (an
	// unmasked frame, a frame over MaxFrameSize, invalid UTF-8 in a text
	// message) gets an error that closeOf maps to the close code to send.
	Read(ctx context.Context) (binary bool, data []byte, err error)
	// Write sends one text message, or a binary one if binary is set. A
	// write that does not complete before ctx ends breaks the connection.
	Write(ctx context.Context, binary bool, data []byte) error
	// Ping sends a ping and waits for the pong.
	Ping(ctx context.Context) error
	// Close sends a close frame with code and reason and closes the
	// connection; later calls do nothing.
	Close(code CloseCode, reason string) error
}

// Upgrader upgrades a request; onFrame is called on every frame received
// (pings and pongs included), for the idle timeout. A refused upgrade has
// been answered.
type Upgrader func(w http.ResponseWriter, r *http.Request, cfg *Config, onFrame func()) (Conn, error)

// Close codes another carrier's Conn reports through ClientFault.
const (
	CloseProtocolError = closeProtocolError
	CloseInvalidData   = closeInvalidData
	CloseTooBig        = closeTooBig
)

// ClientFault is the error a Conn's Read returns when the client broke a
// rule of its carrier: the session closes the connection with code.
func ClientFault(code CloseCode, reason string) error { return &closeError{code, reason} }

// coderConn is Conn over github.com/coder/websocket, reading the client's
// frames through a frameGuard (frames.go).
type coderConn struct {
	c *websocket.Conn
	g *frameGuard
}

func upgradeCoder(w http.ResponseWriter, r *http.Request, cfg *Config, onFrame func()) (Conn, error) {
	g := &frameGuard{limit: cfg.MaxFrameSize}
	c, err := websocket.Accept(&guardedWriter{ResponseWriter: w, guard: g}, r, &websocket.AcceptOptions{
		OriginPatterns:  cfg.OriginPatterns,
		CompressionMode: websocket.CompressionDisabled,
		OnPingReceived:  func(context.Context, []byte) bool { onFrame(); return true },
		OnPongReceived:  func(context.Context, []byte) { onFrame() },
	})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(cfg.MaxFrameSize)
	return coderConn{c, g}, nil
}

func (c coderConn) Read(ctx context.Context) (bool, []byte, error) {
	typ, b, err := c.c.Read(ctx)
	if err != nil {
		if v := c.g.violation(); v != nil {
			return false, nil, v
		}
		return false, nil, err
	}
	// The library does not check the UTF-8 of text messages (RFC 6455
	// §8.1: the connection fails with 1007).
	if typ == websocket.MessageText && !utf8.Valid(b) {
		return false, nil, &closeError{closeInvalidData, "invalid UTF-8 in a text frame"}
	}
	return typ == websocket.MessageBinary, b, nil
}

// closeOf returns the close code and reason a Read error calls for, if
// the client broke a rule of the protocol.
func closeOf(err error) (CloseCode, string, bool) {
	if e, ok := errors.AsType[*closeError](err); ok {
		return e.code, e.reason, true
	}
	return 0, "", false
}

func (c coderConn) Write(ctx context.Context, binary bool, data []byte) error {
	typ := websocket.MessageText
	if binary {
		typ = websocket.MessageBinary
	}
	return c.c.Write(ctx, typ, data)
}

func (c coderConn) Ping(ctx context.Context) error { return c.c.Ping(ctx) }

func (c coderConn) Close(code CloseCode, reason string) error {
	// The library bounds the close handshake itself (5s per step).
	return c.c.Close(websocket.StatusCode(code), reason)
}

var _ Conn = coderConn{}
