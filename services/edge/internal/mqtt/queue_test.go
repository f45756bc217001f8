package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/hub"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// queueConn returns a connection with one subscription per QoS and no
// writer (done), so that deliveries stay queued.
func queueConn(queueSize int) (*conn, *hub.Subscription, *hub.Subscription) {
	s := &Server{cfg: Config{QueueSize: queueSize}.WithDefaults(), node: &node.Node{Log: slog.New(slog.DiscardHandler)}}
	c := newConn(s, nil, context.Background())
	c.done = true
	c.sess.subs = map[string]*subscription{}
	for _, f := range []string{"q0", "q1"} {
		sub := &subscription{hs: hub.Subscription{Filter: f, QoS: byte(len(c.sess.subs))}}
		c.sess.subs[f] = sub
	}
	return c, &c.sess.subs["q0"].hs, &c.sess.subs["q1"].hs
}

// TestOverflowPolicy ensures a full queue drops QoS 0 messages, makes room
// for QoS 1 by evicting the oldest QoS 0, and disconnects a client whose
// queue is full of QoS 1 messages.
func TestOverflowPolicy(t *testing.T) {
	c, q0, q1 := queueConn(3)
	msg := func(topic string, qos byte) *message.Message { return &message.Message{Topic: topic, QoS: qos} }
	c.Deliver(msg("a", 0), []*hub.Subscription{q0})
	c.Deliver(msg("b", 1), []*hub.Subscription{q1})
	c.Deliver(msg("c", 0), []*hub.Subscription{q0})
	c.Deliver(msg("d", 0), []*hub.Subscription{q0}) // full: dropped
	c.Deliver(msg("e", 1), []*hub.Subscription{q1}) // evicts a
	var got []string
	for _, d := range c.queue[c.head:] {
		got = append(got, d.m.Topic)
	}
	if strings.Join(got, "") != "bce" || c.s.stats.dropped.Load() != 2 || c.closing {
		t.Fatalf("queue %v, dropped %d, closing %v", got, c.s.stats.dropped.Load(), c.closing)
	}
	c.Deliver(msg("f", 1), []*hub.Subscription{q1}) // evicts c
	c.Deliver(msg("g", 1), []*hub.Subscription{q1}) // full of QoS 1: slow consumer
	if !c.closing || c.s.stats.slowConsumers.Load() != 1 || len(c.queue) != 0 {
		t.Fatalf("closing %v, slow consumers %d, queue %d", c.closing, c.s.stats.slowConsumers.Load(), len(c.queue))
	}
}

// TestDeliverOnceAtMaxQoS ensures a message matching several subscriptions
// of a client is queued once at the highest granted QoS, and not above the
// message's own QoS.
func TestDeliverOnceAtMaxQoS(t *testing.T) {
	c, q0, q1 := queueConn(10)
	c.Deliver(&message.Message{Topic: "x", QoS: 1}, []*hub.Subscription{q0, q1})
	c.Deliver(&message.Message{Topic: "y", QoS: 0}, []*hub.Subscription{q0, q1})
	stale := &hub.Subscription{Filter: "q1", QoS: 1}
	c.Deliver(&message.Message{Topic: "z", QoS: 1}, []*hub.Subscription{stale}) // replaced subscription
	if len(c.queue) != 2 || c.queue[0].qos != 1 || c.queue[1].qos != 0 {
		t.Fatalf("queue %+v", c.queue)
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
