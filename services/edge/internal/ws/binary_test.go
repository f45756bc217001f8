package ws_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/coder/websocket"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/ws"
)

// binaryMessage builds a client binary frame: header length, JSON header, payload.
func binaryMessage(t *testing.T, header any, payload []byte) []byte {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(len(h)))
	return append(append(b, h...), payload...)
}

// readAny returns the next frame, decoding a binary one into its header
// and payload.
func (c *client) readAny() (f frame, payload []byte, isBinary bool) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	typ, b, err := c.c.Read(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	if typ == websocket.MessageText {
		if err := json.Unmarshal(b, &f); err != nil {
			c.t.Fatal(err)
		}
		return f, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if err := json.Unmarshal(b[4:4+n], &f); err != nil {
		c.t.Fatalf("binary header %q: %v", b[4:4+n], err)
	}
	return f, b[4+n:], true
}

// TestBinaryFrames ensures a client that opted in (?binary=1) publishes a
// raw payload in a binary frame and receives non-UTF-8 payloads in binary
// frames, while UTF-8 payloads keep coming as JSON text frames.
func TestBinaryFrames(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	c := dialQuery(t, ws.Config{}, n, "?binary=1")
	c.send(map[string]string{"op": "subscribe", "id": "1", "topic": "bin/#"})
	c.expect("ack", "1")

	raw := []byte{0xff, 0x00, 0xfe, '\n', 0x80}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageBinary, binaryMessage(t,
		map[string]any{"op": "publish", "id": "2", "topic": "bin/raw", "qos": 1, "content_type": "application/octet-stream"}, raw)); err != nil {
		t.Fatal(err)
	}
	c.send(map[string]any{"op": "publish", "id": "3", "topic": "bin/text", "payload": "héllo"})
	var acks []frame
	var got []frame
	var payloads [][]byte
	for len(acks) < 2 || len(got) < 2 {
		f, p, isBinary := c.readAny()
		switch f.Type {
		case "ack":
			if isBinary {
				t.Fatal("ack in a binary frame")
			}
			acks = append(acks, f)
		case "message":
			if isBinary != (f.Topic == "bin/raw") {
				t.Fatalf("message on %s: binary frame %v", f.Topic, isBinary)
			}
			got, payloads = append(got, f), append(payloads, p)
		default:
			t.Fatalf("unexpected %+v", f)
		}
	}
	if acks[0].ID != "2" || acks[1].ID != "3" || acks[1].Seq != acks[0].Seq+1 {
		t.Fatalf("acks %+v", acks)
	}
	if got[0].Encoding != "binary" || !bytes.Equal(payloads[0], raw) || got[0].Position != acks[0].Position || got[0].Filter != "bin/#" {
		t.Fatalf("binary message %+v payload %x", got[0], payloads[0])
	}
	if got[1].Encoding != "utf8" || got[1].Payload != "héllo" {
		t.Fatalf("text message %+v", got[1])
	}

	// A binary frame must carry a publish, and follow the layout.
	if err := c.c.Write(ctx, websocket.MessageBinary, binaryMessage(t, map[string]any{"op": "subscribe", "id": "4", "topic": "x"}, nil)); err != nil {
		t.Fatal(err)
	}
	if f := c.expect("error", "4"); f.Code != "bad_request" {
		t.Fatalf("got %+v", f)
	}
	if err := c.c.Write(ctx, websocket.MessageBinary, []byte{0, 0, 1, 0, '{'}); err != nil {
		t.Fatal(err)
	}
	if f := c.expect("error", ""); f.Code != "bad_request" {
		t.Fatalf("got %+v", f)
	}
	c.sync()
}

// TestPipelinedPublish ensures publishes sent back to back, beyond the
// in-flight bound, are all stored in the order sent and answered in that
// order, failures included.
func TestPipelinedPublish(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	c := dial(t, ws.Config{MaxInflightPublishes: 8}, n)
	const total = 200
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			topic := "p/" + strconv.Itoa(i%3)
			if i == 100 {
				topic = "p/+" // refused, answered in its turn
			}
			c.send(map[string]any{"op": "publish", "id": strconv.Itoa(i), "topic": topic, "payload": strconv.Itoa(i), "qos": 1})
		}
	}()
	var last uint64
	for i := range total {
		f := c.next()
		if f.ID != strconv.Itoa(i) {
			t.Fatalf("answer %d: got %+v", i, f)
		}
		if i == 100 {
			if f.Type != "error" || f.Code != "invalid_topic" {
				t.Fatalf("got %+v, want invalid_topic", f)
			}
			continue
		}
		if f.Type != "ack" || f.Seq != last+1 {
			t.Fatalf("answer %d: got %+v after seq %d", i, f, last)
		}
		last = f.Seq
	}
	<-done
	c.sync()
}
