package mqtt

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// TestConnectTimeout ensures a connection that never sends its CONNECT is
// closed once ConnectTimeout has passed, and not before half of it, on the
// TCP listener and over WebSocket (/mqtt) alike.
func TestConnectTimeout(t *testing.T) {
	const ct = 500 * time.Millisecond
	e := newEnv(t, func(c *Config, _ *node.Config) { c.ConnectTimeout = ct })
	check := func(t *testing.T, start time.Time, closed bool) {
		t.Helper()
		took := time.Since(start)
		if !closed {
			t.Fatalf("still open after %v", took)
		}
		if took < ct/2 {
			t.Fatalf("closed after %v, before the connect timeout", took)
		}
		t.Logf("closed after %v", took.Round(time.Millisecond))
	}
	t.Run("TCP", func(t *testing.T) {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(ct + 5*time.Second))
		_, err = io.Copy(io.Discard, c)
		ne, timeout := err.(net.Error)
		check(t, start, !(timeout && ne.Timeout()))
	})
	t.Run("WebSocket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), ct+5*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, e.wsURL, &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		start := time.Now()
		_, _, err = ws.Read(ctx)
		check(t, start, err != nil && ctx.Err() == nil)
	})
}
