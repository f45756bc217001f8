package ws

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
)

// fakeConn is a Conn whose client sends scripted frames and never reads
// message frames: writing one blocks until the connection is closed.
type fakeConn struct {
	frames  chan []byte
	stuck   chan struct{} // closed when a message write blocks
	closed  chan struct{}
	code    CloseCode
	once    sync.Once
	stuckMu sync.Once
	acks    chan []byte
}

func newFakeConn() *fakeConn {
	return &fakeConn{frames: make(chan []byte, 8), stuck: make(chan struct{}), closed: make(chan struct{}), acks: make(chan []byte, 8)}
}

func (c *fakeConn) Read(ctx context.Context) (bool, []byte, error) {
	select {
	case b := <-c.frames:
		return false, b, nil
	case <-c.closed:
		return false, nil, errors.New("closed")
	}
}

func (c *fakeConn) Write(ctx context.Context, _ bool, b []byte) error {
	if !strings.Contains(string(b), `"type":"message"`) {
		c.acks <- append([]byte(nil), b...)
		return nil
	}
	c.stuckMu.Do(func() { close(c.stuck) })
	select {
	case <-c.closed:
		return errors.New("closed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *fakeConn) Ping(context.Context) error { return nil }

func (c *fakeConn) Close(code CloseCode, _ string) error {
	c.once.Do(func() { c.code = code; close(c.closed) })
	return nil
}

// TestSlowConsumerClose ensures a connection whose queue overflows is closed
// with 1013 at once, even while a write to it is blocked.
func TestSlowConsumerClose(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	h := NewHandler(Config{QueueSize: 2}, n)
	fc := newFakeConn()
	h.upgrade = func(http.ResponseWriter, *http.Request, *Config, func()) (Conn, error) { return fc, nil }
	// The handler hands the session to a goroutine of its own and returns.
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/ws", nil))
	fc.frames <- []byte(`{"op":"subscribe","id":"1","topic":"s"}`)
	var a ack
	select {
	case b := <-fc.acks:
		if err := json.Unmarshal(b, &a); err != nil || a.Type != typeAck || a.ID != "1" {
			t.Fatalf("got %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ack")
	}
	pub := func() {
		t.Helper()
		edgetest.Publish(t, n, &message.Message{Topic: "s"})
	}
	pub()
	select {
	case <-fc.stuck: // the drain holds that message, blocked
	case <-time.After(10 * time.Second):
		t.Fatal("no message write")
	}
	for range 3 { // two fit in the queue, the third overflows it
		pub()
	}
	select {
	case <-fc.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed")
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.Open() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if fc.code != closeTryAgainLater || n.Subscriptions() != 0 || h.Open() != 0 {
		t.Fatalf("closed with %d, %d subscriptions left", fc.code, n.Subscriptions())
	}
}
