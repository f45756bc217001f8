package ws_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/limits"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/ws"
	"github.com/nats-io/nats.go/jetstream"
)

const wait = 10 * time.Second

// frame is any server frame.
type frame struct {
	Type         string `json:"type"`
	ID           string `json:"id"`
	Seq          uint64 `json:"seq"`
	Position     string `json:"position"`
	Filter       string `json:"filter"`
	Topic        string `json:"topic"`
	Payload      string `json:"payload"`
	Encoding     string `json:"encoding"`
	From         string `json:"from"`
	EpochChanged bool   `json:"epoch_changed"`
	Code         string `json:"code"`
	Message      string `json:"message"`
}

type client struct {
	t *testing.T
	c *websocket.Conn
}

func dial(t *testing.T, cfg ws.Config, n *node.Node) *client {
	t.Helper()
	return dialQuery(t, cfg, n, "")
}

// dialQuery connects with the query string query.
func dialQuery(t *testing.T, cfg ws.Config, n *node.Node, query string) *client {
	t.Helper()
	srv := httptest.NewServer(ws.NewHandler(cfg, n))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return &client{t: t, c: c}
}

func (c *client) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	c.sendRaw(b)
}

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) read() (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, b, err := c.c.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		c.t.Fatalf("frame %s: %v", b, err)
	}
	return f, nil
}

func (c *client) next() frame {
	c.t.Helper()
	f, err := c.read()
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

// expect reads the next frame and checks its type and id.
func (c *client) expect(typ, id string) frame {
	c.t.Helper()
	f := c.next()
	if f.Type != typ || f.ID != id {
		c.t.Fatalf("got %+v, want %s %q", f, typ, id)
	}
	return f
}

// sync round-trips a ping: every frame sent before it has been read.
func (c *client) sync() {
	c.t.Helper()
	c.send(map[string]string{"op": "ping", "id": "sync"})
	c.expect("pong", "sync")
}

func publish(t *testing.T, n *node.Node, topic, payload string) message.Position {
	t.Helper()
	return edgetest.Position(t, n, edgetest.Publish(t, n, &message.Message{Topic: topic, Payload: []byte(payload)}))
}

// TestSubscribePublish ensures a subscriber receives what a client publishes,
// and the publisher's ack carries the stored position.
func TestSubscribePublish(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	c := dial(t, ws.Config{}, n)
	c.send(map[string]string{"op": "subscribe", "id": "1", "topic": "a/+"})
	c.expect("ack", "1")
	c.send(map[string]any{"op": "publish", "id": "2", "topic": "a/b", "payload": "/wA=", "encoding": "base64", "qos": 1})
	var ack, msg frame
	for ack.Type == "" || msg.Type == "" {
		switch f := c.next(); f.Type {
		case "ack":
			ack = f
		case "message":
			msg = f
		default:
			t.Fatalf("unexpected %+v", f)
		}
	}
	if ack.ID != "2" || ack.Seq == 0 || !strings.HasSuffix(ack.Position, "-"+strconv.FormatUint(ack.Seq, 10)) {
		t.Fatalf("ack %+v", ack)
	}
	if msg.Filter != "a/+" || msg.Topic != "a/b" || msg.Payload != "/wA=" || msg.Encoding != "base64" ||
		msg.Seq != ack.Seq || msg.Position != ack.Position {
		t.Fatalf("message %+v, ack %+v", msg, ack)
	}
}

// TestResume ensures a subscribe with from replays exactly the messages
// after it, then live ones, with no duplicate, and signals a gap when the
// stream no longer holds them.
func TestResume(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	var pos []message.Position
	for i := range 6 {
		publish(t, n, "other", "x")
		pos = append(pos, publish(t, n, "r", strconv.Itoa(i)))
	}
	c := dial(t, ws.Config{}, n)
	c.send(map[string]string{"op": "subscribe", "id": "1", "topic": "r", "from": pos[2].String()})
	c.expect("ack", "1")
	for i, p := range pos[3:] {
		if f := c.next(); f.Type != "message" || f.Position != p.String() || f.Payload != strconv.Itoa(3+i) {
			t.Fatalf("got %+v, want %s", f, p)
		}
	}
	live := publish(t, n, "r", "live")
	if f := c.next(); f.Type != "message" || f.Position != live.String() {
		t.Fatalf("got %+v, want %s", f, live)
	}
	c.sync()

	// Messages up to pos[2] leave the stream: a resume from pos[0] has a hole.
	s, err := edgetest.JetStream(n).Stream(context.Background(), backbone.StreamName(edgetest.Tenant))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(context.Background(), jetstream.WithPurgeSequence(pos[2].Seq+1)); err != nil {
		t.Fatal(err)
	}
	c.send(map[string]string{"op": "subscribe", "id": "2", "topic": "r", "from": pos[0].String()})
	c.expect("ack", "2")
	if f := c.next(); f.Type != "gap" || f.Topic != "r" || f.From != pos[0].String() || f.EpochChanged {
		t.Fatalf("got %+v, want gap", f)
	}
	for _, p := range append(pos[3:], live) {
		if f := c.next(); f.Position != p.String() {
			t.Fatalf("got %+v, want %s", f, p)
		}
	}
	c.sync()
}

// TestUnsubscribe ensures no message of a subscription is sent once its
// unsubscribe is acknowledged.
func TestUnsubscribe(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	c := dial(t, ws.Config{}, n)
	c.send(map[string]string{"op": "subscribe", "id": "1", "topic": "u"})
	c.expect("ack", "1")
	c.send(map[string]string{"op": "subscribe", "id": "2", "topic": "v"})
	c.expect("ack", "2")
	c.send(map[string]string{"op": "unsubscribe", "id": "3", "topic": "u"})
	c.expect("ack", "3")
	// Live messages reach the connection in stream order: had the one on
	// u been delivered, it would come before the one on v.
	publish(t, n, "u", "gone")
	p := publish(t, n, "v", "here")
	if f := c.next(); f.Type != "message" || f.Position != p.String() {
		t.Fatalf("got %+v, want the message on v", f)
	}
}

// TestErrors ensures bad requests are answered with error frames carrying
// their id and code, and the connection stays usable.
func TestErrors(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	c := dial(t, ws.Config{}, n)
	for _, tc := range []struct {
		req  map[string]any
		code string
	}{
		{map[string]any{"op": "subscribe", "id": "1", "topic": "a/#/b"}, "invalid_topic"},
		{map[string]any{"op": "publish", "id": "2", "topic": "a/+"}, "invalid_topic"},
		{map[string]any{"op": "publish", "id": "3", "topic": "a", "payload": "!", "encoding": "base64"}, "bad_request"},
		{map[string]any{"op": "publish", "id": "4", "topic": "a", "qos": 2}, "bad_request"},
		{map[string]any{"op": "subscribe", "id": "5", "topic": "a", "from": "x-"}, "bad_request"},
		{map[string]any{"op": "shout", "id": "6"}, "bad_request"},
	} {
		c.send(tc.req)
		if f := c.expect("error", tc.req["id"].(string)); f.Code != tc.code || f.Message == "" {
			t.Errorf("%v: got %+v, want code %s", tc.req, f, tc.code)
		}
	}
	c.sendRaw([]byte("{not json"))
	if f := c.expect("error", ""); f.Code != "bad_request" {
		t.Fatalf("got %+v", f)
	}
	c.sync()
}

// TestRepeatedMalformed ensures a client sending only malformed frames is
// closed with 1008 after max_bad_frames.
func TestRepeatedMalformed(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	c := dial(t, ws.Config{MaxBadFrames: 2}, n)
	c.sendRaw([]byte("?"))
	c.expect("error", "")
	c.sendRaw([]byte("?"))
	if _, err := c.read(); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("got %v, want close 1008", err)
	}
}

// TestBinaryFrame ensures a binary frame closes the connection with 1003.
func TestBinaryFrame(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	c := dial(t, ws.Config{}, n)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageBinary, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.read(); websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
		t.Fatalf("got %v, want close 1003", err)
	}
}

// TestRefused ensures a client the authenticator refuses gets a JSON 403
// before any upgrade.
func TestRefused(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1", edgetest.Refusing) // no tenant: refuses everyone
	srv := httptest.NewServer(ws.NewHandler(ws.Config{}, n))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %v %+v, want 403", err, resp)
	}
}

// TestShutdown ensures a session outlives its HTTP handler (which returns
// once the connection is upgraded) and that the server's shutdown (edge
// shutdown) closes it with 1012 and ends it.
func TestShutdown(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	h := ws.NewHandler(ws.Config{}, n)
	returned := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		returned <- struct{}{}
	}))
	defer srv.Close()
	dctx, dcancel := context.WithTimeout(context.Background(), wait)
	defer dcancel()
	conn, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	select {
	case <-returned:
	case <-time.After(wait):
		t.Fatal("the handler did not return after the upgrade")
	}
	c := &client{t: t, c: conn}
	c.send(map[string]string{"op": "subscribe", "id": "1", "topic": "s"})
	c.expect("ack", "1")
	if h.Open() != 1 || n.Subscriptions() != 1 {
		t.Fatalf("%d sessions, %d subscriptions after the handler returned", h.Open(), n.Subscriptions())
	}
	go func() { _ = srv.Config.Shutdown(dctx) }()
	if _, err := c.read(); websocket.CloseStatus(err) != websocket.StatusServiceRestart {
		t.Fatalf("got %v, want close 1012", err)
	}
	deadline := time.Now().Add(wait)
	for (h.Open() != 0 || n.Subscriptions() != 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h.Open() != 0 || n.Subscriptions() != 0 {
		t.Fatalf("%d sessions, %d subscriptions left after the shutdown", h.Open(), n.Subscriptions())
	}
}

// TestConfigValidate ensures the zero config is valid and bad ones are not.
func TestConfigValidate(t *testing.T) {
	if err := (ws.Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []ws.Config{{QueueSize: -1}, {SlowConsumer: "ignore"}, {CloseCode: 1000}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestShedClosesTryAgainLater ensures an edge that sheds load answers a
// WebSocket in the protocol: the upgrade completes and the connection is
// closed with 1013 (try again later).
func TestShedClosesTryAgainLater(t *testing.T) {
	shed, err := limits.NewShedder(limits.ShedConfig{MaxConnections: 1})
	if err != nil {
		t.Fatal(err)
	}
	release, err := shed.Admit() // the edge's one connection
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	n := edgetest.MemoryNode(t, func(c *node.Config) { c.Shed = shed })
	c := dial(t, ws.Config{}, n)
	if _, err := c.read(); websocket.CloseStatus(err) != 1013 {
		t.Fatalf("read: %v, want close 1013", err)
	}
}
