package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/mochi-mqtt/server/v2/packets"
)

// queueConn returns a connection of the anonymous tenant over an
// in-memory core, subscribed to "q0" at QoS 0 and "q1" at QoS 1, and with
// no writer (done), so that deliveries stay queued in its feed.
func queueConn(t *testing.T, queueSize int) *conn {
	t.Helper()
	n := edgetest.MemoryNode(t)
	s, err := New(Config{QueueSize: queueSize, SoleEdge: true}, n, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(s, nil, context.Background())
	c.done, c.window, c.tenant = true, 10, edgetest.Tenant
	c.adm = edgetest.Admit(t, n)
	for _, f := range []packets.Subscription{{Filter: "q0", Qos: 0}, {Filter: "q1", Qos: 1}} {
		sub, err := c.subscribe(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sub.Replay(context.Background(), c.queueRetained); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.feed.Close)
	return c
}

// dispatch hands the connection's edge a live message of the anonymous
// tenant on topic with payload p, as the backbone would.
func dispatch(c *conn, topic, p string, qos byte) {
	c.n.Dispatch(&message.Message{Tenant: edgetest.Tenant, Topic: topic, Payload: []byte(p), QoS: qos})
}

// taken lists the payloads of what the writer would take now.
func taken(c *conn) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, batch := c.takeLocked(nil)
	var got []string
	for _, d := range batch {
		got = append(got, string(d.m.Payload))
	}
	return strings.Join(got, "")
}

// TestOverflowPolicy ensures a full queue drops QoS 0 messages, makes room
// for QoS 1 by evicting the oldest QoS 0, and disconnects a client whose
// queue is full of QoS 1 messages.
func TestOverflowPolicy(t *testing.T) {
	c := queueConn(t, 3)
	dispatch(c, "q0", "a", 0)
	dispatch(c, "q1", "b", 1)
	dispatch(c, "q0", "c", 0)
	dispatch(c, "q0", "d", 0) // full: dropped
	dispatch(c, "q1", "e", 1) // evicts a
	if got := taken(c); got != "bce" || c.s.stats.dropped.Load() != 2 || c.closing {
		t.Fatalf("queue %v, dropped %d, closing %v", got, c.s.stats.dropped.Load(), c.closing)
	}
	for _, p := range "fgh" {
		dispatch(c, "q1", string(p), 1)
	}
	dispatch(c, "q1", "i", 1) // full of QoS 1: slow consumer
	if !c.closing || c.s.stats.slowConsumers.Load() != 1 || taken(c) != "" {
		t.Fatalf("closing %v, slow consumers %d", c.closing, c.s.stats.slowConsumers.Load())
	}
}

// TestDeliverOnceAtMaxQoS ensures a message matching several subscriptions
// of a client is queued once at the highest granted QoS, and not above the
// message's own QoS.
func TestDeliverOnceAtMaxQoS(t *testing.T) {
	c := queueConn(t, 10)
	sub, err := c.subscribe(context.Background(), packets.Subscription{Filter: "#", Qos: 0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Replay(context.Background(), c.queueRetained); err != nil {
		t.Fatal(err)
	}
	dispatch(c, "q1", "x", 1)
	dispatch(c, "q1", "y", 0)
	c.mu.Lock()
	_, batch := c.takeLocked(nil)
	c.mu.Unlock()
	if len(batch) != 2 || batch[0].qos != 1 || batch[1].qos != 0 {
		t.Fatalf("batch %+v", batch)
	}
}

// TestReadPacketSeeds ensures the valid encodings of the fuzz corpus
// decode, and the hostile ones are reported as malformed, not panics.
func TestReadPacketSeeds(t *testing.T) {
	want := map[string]error{
		"connect_v4": nil, "connect_v5_will": nil, "publish_v4_qos0": nil, "publish_v5_qos1_props": nil,
		"subscribe_v5": nil, "subscribe_v4": nil, "unsubscribe_v5": nil, "puback_v5": nil, "pingreq": nil,
		"disconnect_v5": nil, "garbage_len": ErrMalformed, "sub_v5_no_opts": ErrMalformed, "garbage_http": ErrMalformed,
		"publish_v5_qos2": nil, "publish_v5_alias": nil, "pubrel_v5": nil, "pubrec_v5_reason": nil, "pubcomp_v4": nil,
		"subscribe_v5_shared": nil, "pubrel_bad_flags": ErrMalformed, "publish_qos3": ErrMalformed,
	}
	for name, wantErr := range want {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzReadPacket", name))
		if err != nil {
			t.Fatal(err)
		}
		data := corpusBytes(t, b)
		version := byte(5)
		if strings.Contains(name, "v4") {
			version = 4
		}
		pk, err := readPacket(bufio.NewReader(bytes.NewReader(data)), version, 1<<20)
		if !errors.Is(err, wantErr) || (wantErr == nil && err != nil) {
			t.Errorf("%s: err %v, want %v", name, err, wantErr)
			continue
		}
		if err == nil && pk.FixedHeader.Type == packets.Reserved {
			t.Errorf("%s: no packet type", name)
		}
	}
}

// corpusBytes extracts the []byte of a "go test fuzz v1" file.
func corpusBytes(t *testing.T, file []byte) []byte {
	t.Helper()
	_, lit, ok := strings.Cut(strings.TrimSpace(string(file)), "[]byte(")
	if !ok {
		t.Fatalf("not a corpus file: %q", file)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}
