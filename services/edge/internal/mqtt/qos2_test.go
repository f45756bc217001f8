package mqtt

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestQoS2PahoV5 ensures QoS 2 flows end to end between Paho MQTT 5
// clients, and is downgraded to the QoS a subscription was granted.
func TestQoS2PahoV5(t *testing.T) {
	e := newEnv(t)
	sub2, sub1 := e.v5("sub2"), e.v5("sub1")
	if sa := sub2.subscribe(t, paho.SubscribeOptions{Topic: "q2/#", QoS: 2}); sa.Reasons[0] != 2 {
		t.Fatalf("SUBACK %v, want QoS 2 granted", sa.Reasons)
	}
	sub1.subscribe(t, paho.SubscribeOptions{Topic: "q2/#", QoS: 1})
	pub := e.v5("pub")
	for i, p := range []string{"one", "two", "three"} {
		pr := pub.publish(t, &paho.Publish{Topic: "q2/x", QoS: 2, Payload: []byte(p)})
		if pr.ReasonCode != 0 {
			t.Fatalf("PUBCOMP reason %#x", pr.ReasonCode)
		}
		if got := e.lastSeq(); got != uint64(i+1) {
			t.Fatalf("after PUBCOMP %d the stream holds %d messages", i+1, got)
		}
	}
	for _, p := range []string{"one", "two", "three"} {
		if m := sub2.next(t); string(m.Payload) != p || m.QoS != 2 {
			t.Fatalf("QoS 2 subscriber got %q at QoS %d, want %q at 2", m.Payload, m.QoS, p)
		}
		if m := sub1.next(t); string(m.Payload) != p || m.QoS != 1 {
			t.Fatalf("QoS 1 subscriber got %q at QoS %d, want %q at 1", m.Payload, m.QoS, p)
		}
	}
}

// TestQoS2PahoV3 ensures QoS 2 flows end to end between Paho MQTT 3.1.1
// clients, over TCP and WebSocket.
func TestQoS2PahoV3(t *testing.T) {
	e := newEnv(t)
	sub, msgs := e.v3(e.wsURL, "sub3")
	wait3(t, sub.Subscribe("v3q2", 2, nil))
	pub, _ := e.v3("tcp://"+e.addr, "pub3")
	wait3(t, pub.Publish("v3q2", 2, false, "exactly once"))
	if m := next3(t, msgs); string(m.Payload()) != "exactly once" || m.Qos() != 2 || m.Duplicate() {
		t.Fatalf("got %q at QoS %d dup %v", m.Payload(), m.Qos(), m.Duplicate())
	}
}

// TestQoS2InboundExactlyOnce ensures the server answers a QoS 2 PUBLISH
// with PUBREC only once it is stored, does not store a retransmission
// again while awaiting PUBREL, completes with PUBCOMP, answers an unknown
// PUBREL with 0x92, and stores a new message that reuses the identifier.
func TestQoS2InboundExactlyOnce(t *testing.T) {
	e := newEnv(t)
	r := e.raw()
	r.connect(30, packets.Properties{})
	publish := func(payload string, dup bool) {
		r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Dup: dup},
			TopicName: "in/q2", PacketID: 9, Payload: []byte(payload)})
	}
	publish("first", false)
	if pk := r.expect(packets.Pubrec); pk.PacketID != 9 || pk.ReasonCode != 0 {
		t.Fatalf("PUBREC %+v", pk)
	}
	if got := e.lastSeq(); got != 1 {
		t.Fatalf("PUBREC sent with %d messages stored, want 1", got)
	}
	publish("first", true) // the client did not see the PUBREC
	if pk := r.expect(packets.Pubrec); pk.PacketID != 9 {
		t.Fatalf("PUBREC %+v", pk)
	}
	r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: 9})
	if pk := r.expect(packets.Pubcomp); pk.PacketID != 9 || pk.ReasonCode != 0 {
		t.Fatalf("PUBCOMP %+v", pk)
	}
	if got := e.lastSeq(); got != 1 {
		t.Fatalf("the retransmission was stored: %d messages", got)
	}
	r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: 9})
	if pk := r.expect(packets.Pubcomp); pk.ReasonCode != codePacketIDNotFound {
		t.Fatalf("PUBCOMP for an unknown identifier: reason %#x, want 0x92", pk.ReasonCode)
	}
	// The identifier is free again: a new message with it is a new message
	// (its JetStream message id differs), stored within the duplicate window.
	publish("second", false)
	r.expect(packets.Pubrec)
	if got := e.lastSeq(); got != 2 {
		t.Fatalf("a new message reusing the identifier was not stored: %d messages", got)
	}
}

// TestQoS2MsgID ensures the JetStream message id of an inbound QoS 2
// message differs across reuses of a packet identifier and across
// sessions of one client, and is stable for one exchange.
func TestQoS2MsgID(t *testing.T) {
	s1, s2 := newSession("c"), newSession("c")
	a := qos2MsgID("t", s1, 1, 1)
	if a != qos2MsgID("t", s1, 1, 1) || a == qos2MsgID("t", s1, 1, 2) || a == qos2MsgID("t", s2, 1, 1) ||
		a == qos2MsgID("u", s1, 1, 1) || !strings.HasPrefix(a, "mqtt2-") {
		t.Fatalf("message ids do not separate exchanges: %s", a)
	}
}

// TestQoS2OutboundFlow ensures the server sends QoS 2 messages with
// PUBLISH, answers PUBREC with PUBREL, and keeps at most the client's
// Receive Maximum in flight until their PUBCOMP (or PUBACK for QoS 1).
func TestQoS2OutboundFlow(t *testing.T) {
	e := newEnv(t)
	r := e.raw()
	r.connect(30, packets.Properties{ReceiveMaximum: 2})
	r.subscribe(packets.Subscription{Filter: "out/#", Qos: 2})
	pub := e.v5("pub")
	for _, p := range []string{"a", "b", "c"} {
		pub.publish(t, &paho.Publish{Topic: "out/" + p, QoS: 2, Payload: []byte(p)})
	}
	first, second := r.expect(packets.Publish), r.expect(packets.Publish)
	if first.FixedHeader.Qos != 2 || first.FixedHeader.Dup || string(first.Payload) != "a" || string(second.Payload) != "b" {
		t.Fatalf("got %+v and %+v", first.FixedHeader, second.FixedHeader)
	}
	r.quiet() // the window (2) is full
	r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: first.PacketID})
	if pk := r.expect(packets.Pubrel); pk.PacketID != first.PacketID {
		t.Fatalf("PUBREL for %d, want %d", pk.PacketID, first.PacketID)
	}
	r.quiet() // still in flight until PUBCOMP
	r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: first.PacketID})
	if third := r.expect(packets.Publish); string(third.Payload) != "c" {
		t.Fatalf("got %q", third.Payload)
	}
	// A PUBREC for an identifier not in flight is answered with PUBREL 0x92.
	r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: 999})
	if pk := r.expect(packets.Pubrel); pk.ReasonCode != codePacketIDNotFound {
		t.Fatalf("PUBREL reason %#x, want 0x92", pk.ReasonCode)
	}
}

// TestRetransmissionsSetDUP ensures a resumed session sends its
// unacknowledged messages again with DUP and the same packet identifier,
// in the order first sent, and PUBREL for those the client received.
func TestRetransmissionsSetDUP(t *testing.T) {
	c := queueConn(t, 10)
	c.window = 10
	for _, topic := range []string{"a", "b", "c"} {
		c.queue = append(c.queue, delivery{m: &message.Message{Topic: topic}, qos: 2})
	}
	_, batch := c.takeLocked(nil)
	if len(batch) != 3 {
		t.Fatalf("took %d deliveries", len(batch))
	}
	c.handlePubrec(&packets.Packet{PacketID: batch[1].id}) // b reached the client
	c.control = nil
	c.resumeLocked()
	if len(c.control) != 1 || len(c.queue) != 2 {
		t.Fatalf("control %d, queue %d", len(c.control), len(c.queue))
	}
	want := []*delivery{&batch[0], &batch[2]}
	for i, d := range c.queue {
		if !d.dup || d.id != want[i].id || d.m.Topic != want[i].m.Topic {
			t.Fatalf("retransmission %d: %+v, want %s id %d with DUP", i, d, want[i].m.Topic, want[i].id)
		}
	}
}

// TestReceiveMaximumInbound ensures a client with more QoS 1 and 2
// publishes unacknowledged than the advertised Receive Maximum is
// disconnected with 0x93.
func TestReceiveMaximumInbound(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *node.Config) { c.ReceiveMaximum = 2 })
	r := e.raw()
	if ack := r.connect(30, packets.Properties{}); ack.Properties.ReceiveMaximum != 2 {
		t.Fatalf("Receive Maximum %d advertised", ack.Properties.ReceiveMaximum)
	}
	for id := uint16(1); id <= 3; id++ { // QoS 2 without PUBREL stays unacknowledged
		r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2},
			TopicName: "rm", PacketID: id, Payload: []byte("x")})
	}
	if reason := r.expectClosed(); reason != codeReceiveMaxExceeded {
		t.Fatalf("DISCONNECT %#x, want 0x93", reason)
	}
}

// TestWillQoS2 ensures a will may ask for QoS 2 now that it is supported.
func TestWillQoS2(t *testing.T) {
	e := newEnv(t)
	sub := e.v5("sub")
	sub.subscribe(t, paho.SubscribeOptions{Topic: "will2", QoS: 2})
	r := e.raw()
	r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "w2",
			WillFlag: true, WillTopic: "will2", WillPayload: []byte("gone"), WillQos: 2}})
	if ack := r.read(); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %#x", ack.ReasonCode)
	}
	r.c.Close()
	if m := sub.next(t); m.QoS != 2 || string(m.Payload) != "gone" {
		t.Fatalf("got %q at QoS %d", m.Payload, m.QoS)
	}
}

// TestQoS2InboundSavedBeforeStored ensures a persistent session's inbound
// QoS 2 exchange (its JetStream message id) is in the store before the
// message is in the stream: an edge dying between the two would otherwise
// leave a stored message whose retransmission, on another edge, is stored
// again under a new id. The check runs when the message reaches a live
// subscriber, the earliest moment it is observably stored.
func TestQoS2InboundSavedBeforeStored(t *testing.T) {
	a, _, st := twoEdges(t)
	type seen struct {
		seq   uint64
		saved map[uint16]bool // packet ids of saved inbound exchanges
	}
	checks := make(chan seen, 16)
	live := a.bb.NewLive(backbone.LiveConfig{}, func(m *message.Message) {
		rec, err := st.LoadSession(context.Background(), "dev", "q2-saver")
		saved := map[uint16]bool{}
		if err == nil {
			for _, f := range rec.Inflight {
				if f.Phase == store.AwaitPubrel && f.MsgID != "" {
					saved[f.PacketID] = true
				}
			}
		}
		checks <- seen{m.Seq, saved}
	})
	defer live.Close()
	if _, err := live.Watch("dev", "q2/#"); err != nil {
		t.Fatal(err)
	}
	if err := live.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := a.raw()
	r.connectAs("q2-saver", 30, packets.Properties{SessionExpiryInterval: 300, SessionExpiryIntervalFlag: true})
	for id := uint16(1); id <= 20; id++ {
		r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2},
			TopicName: "q2/x", PacketID: id, Payload: []byte("m")})
		if pk := r.expect(packets.Pubrec); pk.PacketID != id || pk.ReasonCode != 0 {
			t.Fatalf("PUBREC %+v", pk)
		}
		select {
		case s := <-checks:
			if !s.saved[id] {
				t.Fatalf("message %d (seq %d) was in the stream before its exchange was saved", id, s.seq)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d never reached the live subscriber", id)
		}
		r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: id})
		r.expect(packets.Pubcomp)
	}
}
