package mqtt

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// v5Seq connects a Paho MQTT 5 client that asks for the stream sequence
// (the CONNECT user property herald-seq: 1) and returns it with its CONNACK.
func (e *env) v5Seq(clientID string) (*v5, *paho.Connack) {
	e.t.Helper()
	c, ack, err := e.dialV5(&paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{User: paho.UserProperties{{Key: SeqProperty, Value: "1"}}}})
	if err != nil {
		e.t.Fatalf("connect %s: %v (%+v)", clientID, err, ack)
	}
	e.t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ack
}

// userProps returns a delivery's user properties (none: nil).
func userProps(m *paho.Publish) paho.UserProperties {
	if m.Properties == nil {
		return nil
	}
	return m.Properties.User
}

// TestUserPropertiesUnaltered ensures the user properties of a message
// reach MQTT 5 subscribers exactly as published, in order, repeated names
// and a publisher's own herald-seq included [MQTT-3.3.2-17, MQTT-3.3.2-18],
// for live, retained and will messages alike; and that a client that asked
// for the stream sequence at CONNECT (told so in CONNACK) gets it as one
// more herald-seq after them, the last of that name, holding the message's
// stream sequence.
func TestUserPropertiesUnaltered(t *testing.T) {
	e := newEnv(t, func(_ *Config, n *node.Config) { n.State = embeddedStore(t) })
	sent := paho.UserProperties{{Key: "a", Value: "1"}, {Key: SeqProperty, Value: "forged"}, {Key: "a", Value: "2"},
		{Key: "herald-other", Value: "x"}}
	plain := e.v5("plain")
	seq, ack := e.v5Seq("seq")
	if ack.Properties == nil || ack.Properties.User.Get(SeqProperty) != "1" {
		t.Fatalf("CONNACK does not confirm the sequence was asked for: %+v", ack.Properties)
	}
	for _, c := range []*v5{plain, seq} {
		c.subscribe(t, paho.SubscribeOptions{Topic: "up/#", QoS: 1})
	}
	check := func(what string, m *paho.Publish, asked bool) {
		t.Helper()
		want := slices.Clone(sent)
		if asked {
			st, err := e.bb.State(context.Background(), "dev")
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, paho.UserProperty{Key: SeqProperty, Value: fmt.Sprint(st.LastSeq)})
		}
		if got := userProps(m); !slices.Equal(got, want) {
			t.Fatalf("%s: user properties %v, want %v", what, got, want)
		}
	}

	pub := e.v5("pub")
	pub.publish(t, &paho.Publish{Topic: "up/live", QoS: 1, Payload: []byte("x"), Properties: &paho.PublishProperties{User: sent}})
	check("live", plain.next(t), false)
	check("live, sequence asked", seq.next(t), true)

	pub.publish(t, &paho.Publish{Topic: "up/kept", QoS: 1, Retain: true, Payload: []byte("k"), Properties: &paho.PublishProperties{User: sent}})
	plain.next(t)
	seq.next(t)
	late := e.v5("late")
	late.subscribe(t, paho.SubscribeOptions{Topic: "up/kept", QoS: 1})
	check("retained", late.next(t), false)
	lateSeq, _ := e.v5Seq("late-seq")
	lateSeq.subscribe(t, paho.SubscribeOptions{Topic: "up/kept", QoS: 1})
	check("retained, sequence asked", lateSeq.next(t), true)

	// A raw client: Paho closes only with a DISCONNECT, which discards the will.
	var will []packets.UserProperty
	for _, u := range sent {
		will = append(will, packets.UserProperty{Key: u.Key, Val: u.Value})
	}
	r := e.raw()
	r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "dying",
			WillFlag: true, WillTopic: "up/will", WillPayload: []byte("gone"), WillQos: 1,
			WillProperties: packets.Properties{User: will}}})
	if ack := r.read(); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %#x", ack.ReasonCode)
	}
	r.c.Close()
	check("will", plain.next(t), false)
	check("will, sequence asked", seq.next(t), true)
}
