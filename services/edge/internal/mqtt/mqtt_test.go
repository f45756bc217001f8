package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestConfigValidate ensures the zero Config is valid and out-of-range limits are refused.
func TestConfigValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg Config
		ok  bool
	}{
		"zero":              {Config{}, true},
		"explicit":          {Config{MaxPacketSize: 4096, ReceiveMaximum: 10, QueueSize: 5, MaxKeepAlive: time.Minute}, true},
		"tiny packets":      {Config{MaxPacketSize: 10}, false},
		"huge packets":      {Config{MaxPacketSize: 1 << 29}, false},
		"receive max":       {Config{ReceiveMaximum: 70000}, false},
		"negative queue":    {Config{QueueSize: -1}, false},
		"negative timeout":  {Config{ConnectTimeout: -time.Second}, false},
		"keep alive > 18h":  {Config{MaxKeepAlive: 19 * time.Hour}, false},
		"keep alive < 1s":   {Config{MaxKeepAlive: time.Millisecond}, false},
		"negative write to": {Config{WriteTimeout: -1}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", name, err, tc.ok)
		}
	}
}

// TestV5PublishSubscribe ensures QoS 0 and 1 messages flow between two MQTT 5
// clients through + and # filters, once per client at the highest granted
// QoS, with their properties, and that CONNACK advertises the server's limits.
func TestV5PublishSubscribe(t *testing.T) {
	e := newEnv(t)
	sub := e.v5("sub")
	pub := e.v5("pub")

	sa := sub.subscribe(t, paho.SubscribeOptions{Topic: "s/+/t", QoS: 1}, paho.SubscribeOptions{Topic: "s/#", QoS: 0},
		paho.SubscribeOptions{Topic: "x/y", QoS: 2})
	if !bytes.Equal(sa.Reasons, []byte{1, 0, 2}) {
		t.Fatalf("SUBACK reasons %v, want [1 0 2]", sa.Reasons)
	}

	expiry := uint32(60)
	pr := pub.publish(t, &paho.Publish{Topic: "s/1/t", QoS: 1, Payload: []byte("21.5"), Properties: &paho.PublishProperties{
		ContentType: "text/plain", ResponseTopic: "r/1", CorrelationData: []byte("c1"), MessageExpiry: &expiry,
		User: paho.UserProperties{{Key: "k", Value: "v"}}}})
	if pr.ReasonCode != 0 {
		t.Fatalf("PUBACK reason %#x", pr.ReasonCode)
	}
	m := sub.next(t)
	if m.Topic != "s/1/t" || string(m.Payload) != "21.5" || m.QoS != 1 {
		t.Fatalf("got %s %q qos %d", m.Topic, m.Payload, m.QoS)
	}
	p := m.Properties
	if p == nil || p.ContentType != "text/plain" || p.ResponseTopic != "r/1" || string(p.CorrelationData) != "c1" ||
		p.User.Get("k") != "v" || p.MessageExpiry == nil || *p.MessageExpiry == 0 || *p.MessageExpiry > 60 {
		t.Fatalf("properties not carried: %+v", p)
	}
	// Nothing is added to the publisher's user properties: the stream
	// sequence goes only to clients that ask (TestUserPropertiesUnaltered).
	if len(p.User) != 1 {
		t.Fatalf("user properties %v, want only the publisher's", p.User)
	}

	// A connection's publishes are stored in the order sent, across topics.
	pub.publish(t, &paho.Publish{Topic: "s/other", QoS: 0, Payload: []byte("q0")})
	pub.publish(t, &paho.Publish{Topic: "x/y", QoS: 1, Payload: []byte("q1")})
	if m := sub.next(t); m.Topic != "s/other" || m.QoS != 0 {
		t.Fatalf("got %s at QoS %d, want s/other at QoS 0 first", m.Topic, m.QoS)
	}
	if m := sub.next(t); m.Topic != "x/y" || m.QoS != 1 {
		t.Fatalf("got %s at QoS %d, want x/y at QoS 1", m.Topic, m.QoS)
	}
	select {
	case m := <-sub.msgs:
		t.Fatalf("unexpected extra message %s", m.Topic)
	default:
	}
}

// TestV5ConnackAdvertises ensures CONNACK tells an MQTT 5 client what the
// server supports and assigns an identifier to a client that sent none.
func TestV5ConnackAdvertises(t *testing.T) {
	e := newEnv(t)
	c, ack, err := e.dialV5(&paho.Connect{CleanStart: true, KeepAlive: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	p := ack.Properties
	if ack.SessionPresent || p.AssignedClientID == "" || p.MaximumQoS != nil || // absent: QoS 2
		!p.RetainAvailable || !p.WildcardSubAvailable || !p.SharedSubAvailable || !p.SubIDAvailable ||
		p.TopicAliasMaximum == nil || *p.TopicAliasMaximum != DefaultTopicAliases ||
		p.ReceiveMaximum == nil || *p.ReceiveMaximum != DefaultReceiveMaximum ||
		p.MaximumPacketSize == nil || *p.MaximumPacketSize != DefaultMaxPacketSize ||
		p.ServerKeepAlive == nil || *p.ServerKeepAlive != uint16(DefaultMaxKeepAlive/time.Second) {
		t.Fatalf("CONNACK %+v properties %+v", ack, p)
	}
}

// TestPubackAfterStore ensures each PUBACK reaches the client only once its
// message is in the JetStream stream, with several publishes in flight at once.
func TestPubackAfterStore(t *testing.T) {
	e := newEnv(t)
	pub := e.v5("pub")
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			_, err := pub.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("t/%d", i%4), QoS: 1, Payload: []byte("x")})
			if err == nil {
				// The stream holds at least as many messages as were acknowledged.
				if st, serr := e.bb.State(ctx, "dev"); serr != nil || st.LastSeq < 1 {
					err = fmt.Errorf("PUBACK before store: state %+v %v", st, serr)
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := e.lastSeq(); got != n {
		t.Fatalf("stream holds %d messages, want %d", got, n)
	}
	// Sequentially, the stream's last sequence is exactly the count acknowledged.
	for i := range 3 {
		pub.publish(t, &paho.Publish{Topic: "seq", QoS: 1, Payload: []byte("y")})
		if got := e.lastSeq(); got != uint64(n+i+1) {
			t.Fatalf("after PUBACK %d the stream's last seq is %d", n+i+1, got)
		}
	}
}

// TestPubackOrder ensures PUBACKs follow the order of the PUBLISHes even
// when stores complete out of order.
func TestPubackOrder(t *testing.T) {
	e := newEnv(t)
	r := e.raw()
	r.connect(30, packets.Properties{})
	const n = 30
	var buf bytes.Buffer
	for i := 1; i <= n; i++ {
		pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5,
			TopicName: fmt.Sprintf("o/%d", i), PacketID: uint16(i), Payload: []byte("p")}
		if err := pk.PublishEncode(&buf); err != nil {
			t.Fatal(err)
		}
	}
	r.send(buf.Bytes())
	for i := 1; i <= n; i++ {
		pk := r.read()
		if pk.FixedHeader.Type != packets.Puback || pk.PacketID != uint16(i) || pk.ReasonCode != 0 {
			t.Fatalf("PUBACK %d: got type %d id %d reason %#x", i, pk.FixedHeader.Type, pk.PacketID, pk.ReasonCode)
		}
	}
}

// TestPublishInvalidTopic ensures a QoS 1 publish to an invalid topic gets
// PUBACK 0x90 and nothing is stored.
func TestPublishInvalidTopic(t *testing.T) {
	e := newEnv(t, func(_ *Config, n *node.Config) { n.Limits.MaxLevels = 2 })
	pub := e.v5("pub")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	pr, err := pub.Publish(ctx, &paho.Publish{Topic: "a/b/c", QoS: 1, Payload: []byte("x")})
	if pr == nil || pr.ReasonCode != 0x90 {
		t.Fatalf("PUBACK %+v, %v; want reason 0x90", pr, err)
	}
	if _, err := e.bb.State(ctx, "dev"); err == nil {
		t.Fatal("something was stored")
	}
}

// TestV3PublishSubscribe ensures MQTT 3.1.1 clients publish and receive at
// QoS 0 and 1 through + and # filters.
func TestV3PublishSubscribe(t *testing.T) {
	e := newEnv(t)
	sub, msgs := e.v3("tcp://"+e.addr, "sub3")
	pub, _ := e.v3("tcp://"+e.addr, "pub3")
	wait3(t, sub.SubscribeMultiple(map[string]byte{"a/+/c": 1, "b/#": 0}, nil))

	wait3(t, pub.Publish("a/b/c", 1, false, "one"))
	if got := e.lastSeq(); got != 1 {
		t.Fatalf("after the PUBACK the stream's last seq is %d, want 1", got)
	}
	wait3(t, pub.Publish("b", 0, false, "two"))
	wait3(t, pub.Publish("b/x/y", 1, false, "three"))
	got := map[string]byte{}
	for range 3 {
		m := next3(t, msgs)
		got[m.Topic()] = m.Qos()
	}
	if len(got) != 3 || got["a/b/c"] != 1 || got["b"] != 0 || got["b/x/y"] != 0 {
		t.Fatalf("got %v, want a/b/c at QoS 1, b and b/x/y at QoS 0", got)
	}
}

// TestUnsubscribeStopsDelivery ensures no message of a filter arrives after
// its UNSUBACK, and that unsubscribing an unknown filter reports 0x11.
func TestUnsubscribeStopsDelivery(t *testing.T) {
	e := newEnv(t)
	sub := e.v5("sub")
	pub := e.v5("pub")
	sub.subscribe(t, paho.SubscribeOptions{Topic: "u/#", QoS: 1}, paho.SubscribeOptions{Topic: "marker", QoS: 1})
	pub.publish(t, &paho.Publish{Topic: "u/1", QoS: 1, Payload: []byte("before")})
	if m := sub.next(t); m.Topic != "u/1" {
		t.Fatalf("got %s", m.Topic)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ua, err := sub.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"u/#", "never"}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ua.Reasons, []byte{0x00, 0x11}) {
		t.Fatalf("UNSUBACK reasons %v, want [0 0x11]", ua.Reasons)
	}
	pub.publish(t, &paho.Publish{Topic: "u/1", QoS: 1, Payload: []byte("after")})
	pub.publish(t, &paho.Publish{Topic: "marker", QoS: 1, Payload: []byte("m")})
	// Messages of a tenant are delivered in stream order: the marker comes
	// after anything published before it.
	if m := sub.next(t); m.Topic != "marker" {
		t.Fatalf("got %s %q after unsubscribing", m.Topic, m.Payload)
	}
}

// TestRetained ensures retained messages follow the SUBACK with the retain
// flag, honour retain handling, are not sent twice when also delivered
// live, and that live deliveries clear the retain flag unless
// retain-as-published was asked for.
func TestRetained(t *testing.T) {
	state := &fakeState{}
	e := newEnv(t, func(_ *Config, n *node.Config) { n.State = state })
	epoch, err := e.bb.EnsureTenant(context.Background(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	state.epoch = epoch
	state.put(&message.Message{Tenant: "dev", Topic: "r/old", Payload: []byte("old"), QoS: 1, Retain: true, Seq: 0})
	state.put(&message.Message{Tenant: "other", Topic: "r/other", Payload: []byte("no"), Retain: true})

	// The hook publishes a retained message while the SUBSCRIBE is being
	// served, after live interest is in effect, and reports it as retained
	// too: the client must see it once.
	var once sync.Once
	state.setHook(func() {
		once.Do(func() {
			m := &message.Message{Tenant: "dev", Topic: "r/both", Payload: []byte("both"), QoS: 1, Retain: true}
			pos, err := e.bb.Publish(context.Background(), m, backbone.PublishOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			stored := *m
			stored.Seq = pos.Seq
			state.put(&stored)
		})
	})

	sub := e.v5("sub")
	sub.subscribe(t, paho.SubscribeOptions{Topic: "r/#", QoS: 1}, paho.SubscribeOptions{Topic: "marker", QoS: 0})
	got := map[string]int{}
	for range 2 {
		m := sub.next(t)
		if !m.Retain {
			t.Fatalf("%s delivered without the retain flag", m.Topic)
		}
		got[m.Topic]++
	}
	if got["r/old"] != 1 || got["r/both"] != 1 {
		t.Fatalf("retained deliveries %v", got)
	}

	pub := e.v5("pub")
	pub.publish(t, &paho.Publish{Topic: "r/live", QoS: 1, Retain: true, Payload: []byte("live")})
	pub.publish(t, &paho.Publish{Topic: "marker", QoS: 1, Payload: []byte("m")})
	if m := sub.next(t); m.Topic != "r/live" || m.Retain {
		t.Fatalf("live delivery %s retain=%v, want r/live without retain (not retain-as-published)", m.Topic, m.Retain)
	}
	if m := sub.next(t); m.Topic != "marker" {
		t.Fatalf("got %s %q, want the marker (a duplicate of r/both?)", m.Topic, m.Payload)
	}

	// Re-subscribing with retain handling 1 (only if new) sends nothing;
	// retain-as-published keeps the flag on live deliveries.
	sub.subscribe(t, paho.SubscribeOptions{Topic: "r/#", QoS: 1, RetainHandling: 1, RetainAsPublished: true})
	pub.publish(t, &paho.Publish{Topic: "r/live", QoS: 1, Retain: true, Payload: []byte("again")})
	if m := sub.next(t); m.Topic != "r/live" || !m.Retain || string(m.Payload) != "again" {
		t.Fatalf("got %s %q retain=%v, want r/live again with retain", m.Topic, m.Payload, m.Retain)
	}
	// Retain handling 2 never sends retained messages.
	other := e.v5("other")
	other.subscribe(t, paho.SubscribeOptions{Topic: "r/#", QoS: 1, RetainHandling: 2}, paho.SubscribeOptions{Topic: "marker", QoS: 0})
	pub.publish(t, &paho.Publish{Topic: "marker", QoS: 1, Payload: []byte("m")})
	if m := other.next(t); m.Topic != "marker" {
		t.Fatalf("retain handling 2 sent %s", m.Topic)
	}
}

// TestDollarTopicsNotMatchedByWildcard ensures # does not match $-topics
// while an explicit $ filter does.
func TestDollarTopicsNotMatchedByWildcard(t *testing.T) {
	e := newEnv(t)
	all := e.v5("all")
	sys := e.v5("sys")
	all.subscribe(t, paho.SubscribeOptions{Topic: "#", QoS: 1})
	sys.subscribe(t, paho.SubscribeOptions{Topic: "$app/#", QoS: 1})
	pub := e.v5("pub")
	pub.publish(t, &paho.Publish{Topic: "$app/x", QoS: 1, Payload: []byte("d")})
	pub.publish(t, &paho.Publish{Topic: "plain", QoS: 1, Payload: []byte("p")})
	if m := all.next(t); m.Topic != "plain" {
		t.Fatalf("# received %s", m.Topic)
	}
	if m := sys.next(t); m.Topic != "$app/x" {
		t.Fatalf("$app/# received %s", m.Topic)
	}
}

// TestNoLocal ensures a no-local subscription does not receive its own
// connection's publishes but receives others'.
func TestNoLocal(t *testing.T) {
	e := newEnv(t)
	c := e.v5("self")
	c.subscribe(t, paho.SubscribeOptions{Topic: "n", QoS: 1, NoLocal: true})
	c.publish(t, &paho.Publish{Topic: "n", QoS: 1, Payload: []byte("mine")})
	e.v5("other").publish(t, &paho.Publish{Topic: "n", QoS: 1, Payload: []byte("theirs")})
	if m := c.next(t); string(m.Payload) != "theirs" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestWebSocket ensures an MQTT 3.1.1 client over WebSocket exchanges
// messages with an MQTT 5 client over TCP.
func TestWebSocket(t *testing.T) {
	e := newEnv(t)
	ws, msgs := e.v3(e.wsURL, "ws")
	wait3(t, ws.Subscribe("w/+", 1, nil))
	tcp := e.v5("tcp")
	tcp.subscribe(t, paho.SubscribeOptions{Topic: "from-ws", QoS: 1})

	tcp.publish(t, &paho.Publish{Topic: "w/1", QoS: 1, Payload: bytes.Repeat([]byte("z"), 100_000)})
	if m := next3(t, msgs); m.Topic() != "w/1" || len(m.Payload()) != 100_000 {
		t.Fatalf("got %s (%d bytes)", m.Topic(), len(m.Payload()))
	}
	wait3(t, ws.Publish("from-ws", 1, false, "hello"))
	if m := tcp.next(t); string(m.Payload) != "hello" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestAuthRefused ensures a client the authenticator refuses gets CONNACK
// 0x87 (MQTT 5) or 0x05 (MQTT 3.1.1).
func TestAuthRefused(t *testing.T) {
	e := newEnv(t, func(_ *Config, n *node.Config) { n.Auth = auth.Anonymous{} })
	_, ack, err := e.dialV5(&paho.Connect{ClientID: "nope", CleanStart: true})
	if err == nil || ack == nil || ack.ReasonCode != 0x87 {
		t.Fatalf("CONNACK %+v, %v; want 0x87", ack, err)
	}
	c := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID("nope3").
		SetProtocolVersion(4).SetAutoReconnect(false))
	tok := c.Connect()
	if !tok.WaitTimeout(waitFor) || tok.Error() == nil {
		t.Fatal("v3 client connected")
	}
	if got := tok.(*mqtt3.ConnectToken).ReturnCode(); got != 0x05 {
		t.Fatalf("v3 return code %#x, want 0x05", got)
	}
}

// TestProtocolErrors ensures malformed input, packets before CONNECT and a
// missing CONNECT close the connection without affecting other clients.
func TestProtocolErrors(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *node.Config) { c.ConnectTimeout = 200 * time.Millisecond; c.MaxPacketSize = 4096 })
	bystander := e.v5("bystander")
	bystander.subscribe(t, paho.SubscribeOptions{Topic: "ok", QoS: 1})

	for name, input := range map[string][]byte{
		"garbage":                []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"oversized length":       {0x10, 0xff, 0xff, 0xff, 0x7f},
		"five-byte length":       {0x10, 0xff, 0xff, 0xff, 0xff, 0x01},
		"publish before connect": {0x30, 0x05, 0x00, 0x01, 'a', 'h', 'i'},
		"connect timeout":        nil,
		"bad protocol name":      {0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'X', 'X', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.raw()
			r.send(input)
			if reason := r.expectClosed(); reason != 0 {
				t.Fatalf("DISCONNECT %#x before CONNECT", reason)
			}
		})
	}

	deep := strings.Repeat("a/", 40) + "a"
	deepPublish := append([]byte{0x30, byte(2 + len(deep) + 1), 0x00, byte(len(deep))}, deep...)
	deepPublish = append(deepPublish, 0x00) // no properties
	after := map[string]struct {
		packet []byte
		reason byte
	}{
		"reserved type":  {[]byte{0x00, 0x00}, codeProtocolError},
		"second connect": {[]byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x00}, codeProtocolError},
		"too large":      {[]byte{0x30, 0xff, 0x7f}, codePacketTooLarge},
		"bad publish":    {[]byte{0x32, 0x03, 0x00, 0x05, 'a'}, codeMalformed},
		"wildcard topic": {[]byte{0x30, 0x04, 0x00, 0x01, '#', 0x00}, codeProtocolError},
		"too deep topic": {deepPublish, codeTopicNameInvalid},
	}
	for name, tc := range after {
		t.Run(name, func(t *testing.T) {
			r := e.raw()
			r.connect(30, packets.Properties{})
			r.send(tc.packet)
			if reason := r.expectClosed(); reason != tc.reason {
				t.Fatalf("DISCONNECT reason %#x, want %#x", reason, tc.reason)
			}
		})
	}

	// The server still serves others.
	e.v5("pub").publish(t, &paho.Publish{Topic: "ok", QoS: 1, Payload: []byte("fine")})
	if m := bystander.next(t); string(m.Payload) != "fine" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestUnsupportedVersion ensures a CONNECT of protocol level 3 is answered
// with the 3.1.1 return code 0x01 and closed.
func TestUnsupportedVersion(t *testing.T) {
	e := newEnv(t)
	r := e.raw()
	r.version = 4
	r.send([]byte{0x10, 0x0e, 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03, 0x02, 0x00, 0x3c, 0x00, 0x00})
	ack := r.read()
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0x01 {
		t.Fatalf("got %+v, want CONNACK 0x01", ack)
	}
	r.expectClosed()
}

// TestV3EmptyClientID ensures an MQTT 3.1.1 client without an identifier is
// refused (0x02) unless it asks for a clean session.
func TestV3EmptyClientID(t *testing.T) {
	e := newEnv(t)
	c := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID("").
		SetCleanSession(false).SetProtocolVersion(4).SetAutoReconnect(false))
	tok := c.Connect()
	if !tok.WaitTimeout(waitFor) || tok.(*mqtt3.ConnectToken).ReturnCode() != 0x02 {
		t.Fatalf("return code %#x, want 0x02", tok.(*mqtt3.ConnectToken).ReturnCode())
	}
	clean, _ := e.v3("tcp://"+e.addr, "")
	wait3(t, clean.Publish("anon", 1, false, "x"))
}

// TestKeepAlive ensures a client silent for 1.5 keep-alive intervals is
// disconnected with 0x8D, and PINGREQ keeps it alive.
func TestKeepAlive(t *testing.T) {
	e := newEnv(t)
	r := e.raw()
	r.connect(1, packets.Properties{})
	r.send([]byte{packets.Pingreq << 4, 0})
	if pk := r.read(); pk.FixedHeader.Type != packets.Pingresp {
		t.Fatalf("got packet type %d, want PINGRESP", pk.FixedHeader.Type)
	}
	start := time.Now()
	if reason := r.expectClosed(); reason != codeKeepAliveTimeout {
		t.Fatalf("DISCONNECT %#x, want 0x8D", reason)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("closed after %s, before 1.5 keep-alive intervals", d)
	}
}

// TestSlowConsumer ensures a client that does not acknowledge QoS 1
// messages is disconnected with 0x97 once its queue is full.
func TestSlowConsumer(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *node.Config) { c.QueueSize = 4 })
	r := e.raw()
	r.connect(30, packets.Properties{ReceiveMaximum: 1})
	r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "slow", Qos: 1}}})
	if pk := r.read(); pk.FixedHeader.Type != packets.Suback {
		t.Fatalf("got type %d, want SUBACK", pk.FixedHeader.Type)
	}
	pub := e.v5("pub")
	for range 6 {
		pub.publish(t, &paho.Publish{Topic: "slow", QoS: 1, Payload: []byte("x")})
	}
	if reason := r.expectClosed(); reason != codeQuotaExceeded {
		t.Fatalf("DISCONNECT %#x, want 0x97", reason)
	}
	if st := e.srv.Stats(); st.SlowConsumers != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestWill ensures the will of a connection closed without DISCONNECT is published.
func TestWill(t *testing.T) {
	e := newEnv(t)
	sub := e.v5("sub")
	sub.subscribe(t, paho.SubscribeOptions{Topic: "will/#", QoS: 1})
	r := e.raw()
	r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "w",
			WillFlag: true, WillTopic: "will/w", WillPayload: []byte("gone"), WillQos: 1}})
	if ack := r.read(); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %#x", ack.ReasonCode)
	}
	r.c.Close()
	if m := sub.next(t); m.Topic != "will/w" || string(m.Payload) != "gone" {
		t.Fatalf("got %s %q", m.Topic, m.Payload)
	}
}

// TestCloseDisconnectsClients ensures Close tells MQTT 5 clients the server
// is shutting down (0x8B) and returns once their connections are gone.
func TestCloseDisconnectsClients(t *testing.T) {
	e := newEnv(t)
	c := e.v5("c")
	c.subscribe(t, paho.SubscribeOptions{Topic: "x", QoS: 1})
	e.srv.Close()
	c.expectDisconnect(t, codeServerShuttingDown, waitFor, "no DISCONNECT")
	if st := e.srv.Stats(); st.Connections != 0 {
		t.Fatalf("%d connections after Close", st.Connections)
	}
}

// TestServeContextEndsItsConnections ensures the end of the context a
// listener was served with ends that listener's connections (0x8B), and
// only them: connections share their listener's context, not one each.
func TestServeContextEndsItsConnections(t *testing.T) {
	e := newEnv(t)
	stays := e.v5("stays")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ctx, l) }()
	other := *e
	other.addr = l.Addr().String()
	goes := other.v5("goes")
	cancel()
	goes.expectDisconnect(t, codeServerShuttingDown, waitFor, "no DISCONNECT after the listener's context ended")
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	select {
	case d := <-stays.disconnects:
		t.Fatalf("a connection of the other listener got DISCONNECT %#x", d.ReasonCode)
	case <-time.After(200 * time.Millisecond):
	}
	stays.publish(t, &paho.Publish{Topic: "still", QoS: 1, Payload: []byte("here")})
}

// TestV311ManyInFlight ensures an MQTT 3.1.1 client, which knows no receive
// maximum, may send far more QoS 1 publishes than ReceiveMaximum without
// waiting: the server slows its reading instead of disconnecting, and every
// publish is acknowledged and stored.
func TestV311ManyInFlight(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *node.Config) { c.ReceiveMaximum = 4 })
	if _, err := e.bb.EnsureTenant(context.Background(), "dev"); err != nil {
		t.Fatal(err)
	}
	before := e.lastSeq()
	c, _ := e.v3("tcp://"+e.addr, "burst")
	var toks []mqtt3.Token
	for i := 0; i < 200; i++ {
		toks = append(toks, c.Publish("burst/x", 1, false, []byte(fmt.Sprint(i))))
	}
	for _, tok := range toks {
		wait3(t, tok)
	}
	if !c.IsConnectionOpen() {
		t.Fatal("connection closed")
	}
	if got := e.lastSeq() - before; got != 200 {
		t.Fatalf("%d messages stored, want 200", got)
	}
}
