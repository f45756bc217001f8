package mqtt

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// subprotocol is the WebSocket subprotocol of MQTT [MQTT-6.0.0-3].
const subprotocol = "mqtt"

// WebSocketHandler serves MQTT over WebSocket (GET /mqtt). Binary messages
// carry the MQTT byte stream: a message may hold part of a packet or
// several, so the socket is adapted to a net.Conn and served exactly like
// a TCP connection.
func (s *Server) WebSocketHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			http.Error(w, "server shutting down", http.StatusServiceUnavailable)
			return
		}
		s.wg.Add(1)
		s.mu.Unlock()
		defer s.wg.Done()

		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			Subprotocols:    []string{subprotocol},
			OriginPatterns:  s.cfg.WebSocketOrigins,
			CompressionMode: websocket.CompressionDisabled,
		})
		if err != nil {
			return // Accept wrote the HTTP error
		}
		if ws.Subprotocol() != subprotocol {
			ws.Close(websocket.StatusPolicyViolation, `the "mqtt" subprotocol is required`)
			return
		}
		// The connection's context ends with the request or Close, which
		// ends the connection. The socket's outlives it, so that the
		// DISCONNECT and the close frame still go out: wsConn ends it, at
		// the latest at the bound of the closing handshake.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(s.stopCtx, cancel)
		defer stop()
		sock, closeSock := context.WithCancel(r.Context())
		defer closeSock()
		s.serveConn(ctx, newWSConn(sock, closeSock, ws, s.cfg.closeWait()), true)
	})
}

// wsConn is the MQTT byte stream over a WebSocket (websocket.NetConn),
// whose end is the WebSocket closing handshake: the close frame after the
// last MQTT packet, then the client's close frame, then the socket closes
// (RFC 6455 §7). NetConn's own Close cancels reads first, which closes the
// socket at once — no close frame, and a reset if the client was still
// sending.
type wsConn struct {
	net.Conn
	ws *websocket.Conn
	// cancel ends the context NetConn reads and writes with, which closes
	// the socket at once: the bound of the handshake.
	cancel context.CancelFunc
	wait   time.Duration
	once   sync.Once
	done   chan struct{} // the handshake is over and the socket closed
}

func newWSConn(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, wait time.Duration) *wsConn {
	return &wsConn{Conn: websocket.NetConn(ctx, ws, websocket.MessageBinary), ws: ws, cancel: cancel, wait: wait,
		done: make(chan struct{})}
}

// CloseWrite sends the close frame after what was written and starts the
// closing handshake, on a goroutine of its own, for at most wait. The
// client's messages meanwhile are read as before; its close frame ends
// them (io.EOF), after which the socket closes.
func (w *wsConn) CloseWrite() error {
	w.once.Do(func() {
		bound := time.AfterFunc(w.wait, w.cancel)
		go func() {
			defer close(w.done)
			defer bound.Stop()
			_ = w.ws.Close(websocket.StatusNormalClosure, "")
		}()
	})
	return nil
}

// Close ends the connection with the closing handshake, started here if
// CloseWrite did not, and returns once it is over (at most wait).
func (w *wsConn) Close() error {
	_ = w.CloseWrite()
	<-w.done
	w.cancel()
	return nil
}
