package ws

import (
	"context"
	"net/http"

	"github.com/coder/websocket"
)

// closeCode is a WebSocket close status (RFC 6455 section 7.4).
type closeCode int

// Close codes the protocol uses.
const (
	closeNormal          closeCode = 1000
	closeGoingAway       closeCode = 1001 // idle timeout
	closeUnsupportedData closeCode = 1003 // binary frame without ?binary=1
	closePolicy          closeCode = 1008 // repeated malformed frames
	closeInternal        closeCode = 1011
	closeServiceRestart  closeCode = 1012 // edge shutting down: reconnect elsewhere
	closeTryAgainLater   closeCode = 1013 // slow consumer
)

// Conn is the slice of a WebSocket connection the protocol uses, so that
// the library underneath can be swapped (for memory per idle connection)
// without touching the protocol. Read is called by one goroutine; the
// other methods may be called concurrently with it. Herald serializes
// Write calls itself.
type Conn interface {
	// Read returns the next data message; it also answers pings and
	// records pongs, so it must be running for Ping to return.
	Read(ctx context.Context) (binary bool, data []byte, err error)
	// Write sends one text message, or a binary one if binary is set. A
	// write that does not complete before ctx ends breaks the connection.
	Write(ctx context.Context, binary bool, data []byte) error
	// Ping sends a ping and waits for the pong.
	Ping(ctx context.Context) error
	// Close sends a close frame with code and reason and closes the
	// connection; later calls do nothing.
	Close(code closeCode, reason string) error
}

// upgrader upgrades a request; onFrame is called on every frame received
// (pings and pongs included), for the idle timeout.
type upgrader func(w http.ResponseWriter, r *http.Request, cfg *Config, onFrame func()) (Conn, error)

// coderConn is Conn over github.com/coder/websocket.
type coderConn struct{ c *websocket.Conn }

func upgradeCoder(w http.ResponseWriter, r *http.Request, cfg *Config, onFrame func()) (Conn, error) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns:  cfg.OriginPatterns,
		CompressionMode: websocket.CompressionDisabled,
		OnPingReceived:  func(context.Context, []byte) bool { onFrame(); return true },
		OnPongReceived:  func(context.Context, []byte) { onFrame() },
	})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(cfg.MaxFrameSize)
	return coderConn{c}, nil
}

func (c coderConn) Read(ctx context.Context) (bool, []byte, error) {
	typ, b, err := c.c.Read(ctx)
	return typ == websocket.MessageBinary, b, err
}

func (c coderConn) Write(ctx context.Context, binary bool, data []byte) error {
	typ := websocket.MessageText
	if binary {
		typ = websocket.MessageBinary
	}
	return c.c.Write(ctx, typ, data)
}

func (c coderConn) Ping(ctx context.Context) error { return c.c.Ping(ctx) }

func (c coderConn) Close(code closeCode, reason string) error {
	// The library bounds the close handshake itself (5s per step).
	return c.c.Close(websocket.StatusCode(code), reason)
}

var _ Conn = coderConn{}
