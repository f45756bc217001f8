package mqtt

import (
	"context"
	"net/http"

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
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(s.stopCtx, cancel)
		defer stop()
		s.serveConn(ctx, websocket.NetConn(ctx, ws, websocket.MessageBinary), true)
	})
}
