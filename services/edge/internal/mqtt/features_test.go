package mqtt

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
)

func u16(v uint16) *uint16 { return &v }

// TestTopicAliasInbound ensures a Paho MQTT 5 client may publish with a
// topic alias, defining it with the topic and then using it alone.
func TestTopicAliasInbound(t *testing.T) {
	e := newEnv(t)
	sub := e.v5("sub")
	sub.subscribe(t, paho.SubscribeOptions{Topic: "al/#", QoS: 1})
	pub := e.v5("pub")
	pub.publish(t, &paho.Publish{Topic: "al/long/topic", QoS: 1, Payload: []byte("1"),
		Properties: &paho.PublishProperties{TopicAlias: u16(3)}})
	pub.publish(t, &paho.Publish{QoS: 1, Payload: []byte("2"), Properties: &paho.PublishProperties{TopicAlias: u16(3)}})
	for _, p := range []string{"1", "2"} {
		if m := sub.next(t); m.Topic != "al/long/topic" || string(m.Payload) != p {
			t.Fatalf("got %s %q", m.Topic, m.Payload)
		}
	}
}

// TestTopicAliasOutbound ensures the server assigns topic aliases to a
// client that accepts them: a topic is sent once with its alias and then
// by alias alone, and the least recently used alias is reassigned when all
// are taken.
func TestTopicAliasOutbound(t *testing.T) {
	e := newEnv(t)
	r := e.raw()
	r.connect(30, packets.Properties{TopicAliasMaximum: 2})
	r.subscribe(packets.Subscription{Filter: "ta/#", Qos: 0})
	pub := e.v5("pub")
	topics := []string{"ta/a", "ta/a", "ta/b", "ta/c", "ta/a"}
	for _, tp := range topics {
		pub.publish(t, &paho.Publish{Topic: tp, QoS: 1, Payload: []byte(tp)})
	}
	want := []struct {
		topic string
		alias uint16
	}{{"ta/a", 1}, {"", 1}, {"ta/b", 2}, {"ta/c", 1}, {"ta/a", 2}}
	for i, w := range want {
		pk := r.expect(packets.Publish)
		if pk.TopicName != w.topic || pk.Properties.TopicAlias != w.alias || string(pk.Payload) != topics[i] {
			t.Fatalf("PUBLISH %d: topic %q alias %d payload %q, want %q alias %d", i, pk.TopicName,
				pk.Properties.TopicAlias, pk.Payload, w.topic, w.alias)
		}
	}
}

// TestSharedSubscriptionOneEdge ensures the members of a shared
// subscription on one edge get its messages round robin, each once, while
// a plain subscription gets all of them, and that no retained message is
// sent to a new shared subscription.
func TestSharedSubscriptionOneEdge(t *testing.T) {
	e := newEnv(t)
	pub := e.v5("pub")
	pub.publish(t, &paho.Publish{Topic: "sh/r", QoS: 1, Retain: true, Payload: []byte("retained")})
	a, b, plain := e.v5("a"), e.v5("b"), e.v5("plain")
	for _, c := range []*v5{a, b} {
		if sa := c.subscribe(t, paho.SubscribeOptions{Topic: "$share/g/sh/#", QoS: 2}); sa.Reasons[0] != 2 {
			t.Fatalf("SUBACK %v", sa.Reasons)
		}
	}
	plain.subscribe(t, paho.SubscribeOptions{Topic: "sh/#", QoS: 1, RetainHandling: 2})
	const n = 10
	for i := range n {
		pub.publish(t, &paho.Publish{Topic: fmt.Sprintf("sh/%d", i), QoS: 1, Payload: []byte("x")})
	}
	for range n {
		plain.next(t)
	}
	got := map[string]int{}
	for _, c := range []*v5{a, b} {
		for range n / 2 {
			m := c.next(t)
			if m.Retain {
				t.Fatalf("retained message %s sent to a shared subscription", m.Topic)
			}
			got[m.Topic]++
		}
	}
	if len(got) != n {
		t.Fatalf("members got %v, want each of %d messages once", got, n)
	}
	// UNSUBSCRIBE takes the full shared filter.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if ua, err := a.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"$share/g/sh/#"}}); err != nil || ua.Reasons[0] != 0 {
		t.Fatalf("UNSUBACK %+v %v", ua, err)
	}
}

// TestSharedSubscriptionAcrossEdges ensures a shared group with members on
// two edges gets each message exactly once across the group, and that both
// members get some.
func TestSharedSubscriptionAcrossEdges(t *testing.T) {
	ns := testserver.NATS(t)
	ea, eb := newEdge(t, ns, "edge-a"), newEdge(t, ns, "edge-b")
	a, b := ea.v5("a"), eb.v5("b")
	a.subscribe(t, paho.SubscribeOptions{Topic: "$share/workers/jobs/+", QoS: 1})
	b.subscribe(t, paho.SubscribeOptions{Topic: "$share/workers/jobs/+", QoS: 1})
	marker := ea.v5("marker")
	marker.subscribe(t, paho.SubscribeOptions{Topic: "jobs/+", QoS: 1})
	pub := eb.v5("pub")
	const n = 40
	for i := range n {
		pub.publish(t, &paho.Publish{Topic: "jobs/" + fmt.Sprint(i), QoS: 1, Payload: []byte("j")})
	}
	// The plain subscriber receives all; by then both edges have dispatched
	// everything stored before.
	for range n {
		marker.next(t)
	}
	got := map[string]int{}
	counts := [2]int{}
	for i, c := range []*v5{a, b} {
	drain:
		for {
			select {
			case m := <-c.msgs:
				got[m.Topic]++
				counts[i]++
			case <-time.After(300 * time.Millisecond):
				break drain
			}
		}
	}
	if len(got) != n || counts[0]+counts[1] != n || counts[0] == 0 || counts[1] == 0 {
		t.Fatalf("edge A member got %d, edge B member %d, distinct %d; want %d in all, once each, both some",
			counts[0], counts[1], len(got), n)
	}
}

// TestSessionTakeoverSameEdge ensures a second CONNECT with a client
// identifier closes the first connection on the same edge with 0x8E, and
// the new connection works.
func TestSessionTakeoverSameEdge(t *testing.T) {
	e := newEnv(t)
	first := e.v5("same")
	second := e.v5("same")
	first.expectDisconnect(t, codeSessionTakenOver, time.Second, "the first connection was not taken over within 1s")
	second.subscribe(t, paho.SubscribeOptions{Topic: "to", QoS: 1})
	second.publish(t, &paho.Publish{Topic: "to", QoS: 1, Payload: []byte("ok")})
	second.next(t)
	// A 3.1.1 connection is taken over too (it is closed without a packet).
	c3, _ := e.v3("tcp://"+e.addr, "same3")
	e.v3("tcp://"+e.addr, "same3")
	deadline := time.Now().Add(time.Second)
	for c3.IsConnectionOpen() {
		if time.Now().After(deadline) {
			t.Fatal("the 3.1.1 connection was not taken over within 1s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSessionTakeoverSoleEdge ensures a sole edge (the all-in-one
// process) holds no NATS subscription per connection, where an edge among
// others holds one each until the connection ended, and still takes a
// session over locally.
func TestSessionTakeoverSoleEdge(t *testing.T) {
	for _, sole := range []bool{false, true} {
		e := newEnv(t, func(c *Config, _ *node.Config) { c.SoleEdge = sole })
		e.v5("warm") // the first request sets up the client's reply subscription
		before := e.nc.NumSubscriptions()
		var cs []*v5
		for i := range 5 {
			cs = append(cs, e.v5(fmt.Sprintf("c%d", i)))
		}
		added := e.nc.NumSubscriptions() - before
		if want := map[bool]int{false: 5, true: 0}[sole]; added != want {
			t.Fatalf("sole edge %v: %d subscriptions for 5 connections, want %d", sole, added, want)
		}
		// Ended, they hold none (an ended connection's is kept briefly).
		for _, c := range cs {
			_ = c.Disconnect(&paho.Disconnect{})
		}
		waitUntil(t, func() bool { return e.nc.NumSubscriptions() == before },
			"ended connections' control subscriptions were not unsubscribed")
	}
	e := newEnv(t, func(c *Config, _ *node.Config) { c.SoleEdge = true })
	first := e.v5("same")
	e.v5("same")
	first.expectDisconnect(t, codeSessionTakenOver, time.Second, "the first connection was not taken over within 1s")
}

// TestSessionTakeoverAcrossEdges ensures a CONNECT on one edge closes the
// connection of the same client identifier on another edge with 0x8E
// within one second, and only of the same tenant and identifier.
func TestSessionTakeoverAcrossEdges(t *testing.T) {
	ns := testserver.NATS(t)
	ea, eb := newEdge(t, ns, "edge-a"), newEdge(t, ns, "edge-b")
	old := ea.v5("roaming")
	bystander := ea.v5("other")
	start := time.Now()
	eb.v5("roaming")
	select {
	case d := <-old.disconnects:
		if d.ReasonCode != codeSessionTakenOver {
			t.Fatalf("DISCONNECT %#x, want 0x8E", d.ReasonCode)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("taken over after %s", took)
		}
	case <-time.After(time.Second):
		t.Fatal("the connection on edge A was not taken over within 1s")
	}
	bystander.publish(t, &paho.Publish{Topic: "still", QoS: 1, Payload: []byte("here")})
}

// TestSessionTakeoverRace ensures that of two connections that both
// announced themselves (a race in which neither saw the other's takeover
// request), the one announced first is closed with 0x8E.
func TestSessionTakeoverRace(t *testing.T) {
	e := newEnv(t)
	c := e.v5("racer")
	c.subscribe(t, paho.SubscribeOptions{Topic: "x", QoS: 0}) // the CONNECT's announcement came back by now
	nc := e.nc
	ann := nats.NewMsg(e.bb.Config().ClientControlSubject("dev", "racer"))
	ann.Header.Set(hdrControl, ctlAnnounce)
	ann.Header.Set(hdrConnID, "a-newer-connection-elsewhere")
	if err := nc.PublishMsg(ann); err != nil {
		t.Fatal(err)
	}
	c.expectDisconnect(t, codeSessionTakenOver, waitFor, "the older connection survived a newer announcement")
}

// TestSessionTakeoverUnconfirmed ensures a CONNECT that would resume a
// session is refused with 0x88 while an older connection elsewhere has not
// been seen to end — an edge that does not answer, or answers that its
// connection is still there — and that a clean start still gets through.
func TestSessionTakeoverUnconfirmed(t *testing.T) {
	st := embeddedStore(t)
	const wait = 200 * time.Millisecond
	ns := testserver.NATS(t)
	e := newEdge(t, ns, "edge-a", func(c *Config, n *node.Config) { n.State = st; c.TakeoverWait = wait })
	subject := e.bb.Config().ClientControlSubject("dev", "held")
	for _, tc := range []struct {
		name   string
		answer func(m *nats.Msg) // nil: never answers
	}{
		{"edge does not answer", nil},
		{"previous connection still there", func(m *nats.Msg) { _ = m.RespondMsg(nats.NewMsg(m.Reply)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The previous case's connection no longer answers for itself.
			waitUntil(t, func() bool { return retiredSubs(e.srv) == 0 }, "ended connections still subscribed")
			// Another edge's connection holding "held", as NATS sees it.
			other := testserver.NATSConn(t, ns)
			sub, err := other.Subscribe(subject, func(m *nats.Msg) {
				if m.Header.Get(hdrControl) == ctlTakeover && tc.answer != nil {
					tc.answer(m)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := other.Flush(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, ack, err := e.dialV5(&paho.Connect{ClientID: "held", KeepAlive: 30, Properties: expiry(300)})
			if err == nil || ack == nil || ack.ReasonCode != codeServerUnavailable {
				t.Fatalf("resuming CONNECT: err %v, CONNACK %+v; want refused with 0x88", err, ack)
			}
			if took := time.Since(start); took > 2*wait+time.Second {
				t.Fatalf("refused after %s, bound is twice the takeover wait", took)
			}
			c, ack, err := e.dialV5(&paho.Connect{ClientID: "held", KeepAlive: 30, CleanStart: true})
			if err != nil {
				t.Fatalf("clean start refused: %v %+v", err, ack)
			}
			_ = c.Disconnect(&paho.Disconnect{})
		})
	}
}

// TestSessionTakeoverAfterNATSReconnect ensures a session can be resumed
// on another edge after its previous connection ended while its edge's
// NATS connection was down: the ended connection's control interest must
// not outlive it on the NATS server. With the client library's
// subscription Drain it did: no UNSUB goes out while reconnecting, the
// reconnect subscribes the draining subscription again, and the drain then
// removes it on the client only. Takeover requests for that client then
// reached an edge that dropped them, and every resuming CONNECT waited out
// the bound and was refused with 0x88 until that edge's next reconnect.
func TestSessionTakeoverAfterNATSReconnect(t *testing.T) {
	st := embeddedStore(t)
	withStore := func(_ *Config, n *node.Config) { n.State = st }
	ns := testserver.NATS(t)
	proxy := testserver.NewCutProxy(t, strings.TrimPrefix(ns.ClientURL(), "nats://"))
	nc, err := nats.Connect("nats://"+proxy.Addr(), nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(int) time.Duration { return 50 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ea := newEdgeOn(t, nc, "edge-a", withStore)
	eb := newEdge(t, ns, "edge-b", withStore)
	persistent := &paho.Connect{ClientID: "roamer", KeepAlive: 30, Properties: expiry(300)}

	c, ack, err := ea.dialV5(persistent)
	if err != nil {
		t.Fatalf("connect on edge A: %v %+v", err, ack)
	}
	proxy.Cut()
	waitUntil(t, func() bool { return nc.IsReconnecting() }, "edge A's NATS connection never noticed the cut")
	_ = c.Disconnect(&paho.Disconnect{})
	waitUntil(t, func() bool { return ea.srv.Stats().Connections == 0 }, "the connection on edge A did not end")
	proxy.Restore()
	waitUntil(t, func() bool { return nc.IsConnected() }, "edge A's NATS connection did not come back")
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Past the grace in which an ended connection still answers for itself.
	time.Sleep(3 * DefaultTakeoverWait)

	start := time.Now()
	c2, ack, err := eb.dialV5(persistent)
	if err != nil {
		t.Fatalf("resuming on edge B after %s: %v (CONNACK %+v); want accepted", time.Since(start), err, ack)
	}
	if !ack.SessionPresent {
		t.Fatal("the session was not resumed on edge B")
	}
	_ = c2.Disconnect(&paho.Disconnect{})
}

// TestSessionTakeoverEndedConnection ensures the control subscription of a
// connection that just ended answers a takeover request for it ("gone", so
// the CONNECT elsewhere goes ahead at once) only while the session record
// names no other connection: one that does is a newer connection, which
// must answer for itself.
func TestSessionTakeoverEndedConnection(t *testing.T) {
	for _, newer := range []bool{false, true} {
		t.Run(fmt.Sprintf("newer connection %v", newer), func(t *testing.T) {
			st := embeddedStore(t)
			const wait = 500 * time.Millisecond
			opts := func(c *Config, n *node.Config) {
				n.State, c.TakeoverWait = st, wait
				c.retireAfter = time.Minute // the ended connection's subscription outlives the test's steps
			}
			ns := testserver.NATS(t)
			ea, eb := newEdge(t, ns, "edge-a", opts), newEdge(t, ns, "edge-b", opts)
			persistent := &paho.Connect{ClientID: "ended", KeepAlive: 30, Properties: expiry(300)}
			c, ack, err := ea.dialV5(persistent)
			if err != nil {
				t.Fatalf("connect on edge A: %v %+v", err, ack)
			}
			_ = c.Disconnect(&paho.Disconnect{})
			waitUntil(t, func() bool { return retiredSubs(ea.srv) == 1 }, "the connection on edge A did not end")
			if newer {
				// As a newer connection on a third edge writes it.
				rec, err := st.LoadSession(context.Background(), "dev", "ended")
				if err != nil {
					t.Fatal(err)
				}
				rec.ConnectedTo = "edge-z/newer"
				if err := st.SaveSession(context.Background(), "dev", rec, store.Limits{}); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			c2, ack, err := eb.dialV5(persistent)
			took := time.Since(start)
			switch {
			case !newer && err != nil:
				// Unanswered, it would have been refused after its bound.
				t.Fatalf("resuming CONNECT refused after %s: %v %+v; want accepted", took, err, ack)
			case newer && (err == nil || ack == nil || ack.ReasonCode != codeServerUnavailable):
				t.Fatalf("resuming CONNECT with a newer connection silent: err %v, CONNACK %+v; want refused with 0x88", err, ack)
			}
			if c2 != nil {
				_ = c2.Disconnect(&paho.Disconnect{})
			}
		})
	}
}

// retiredSubs is the number of ended connections' control subscriptions
// not unsubscribed yet.
func retiredSubs(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.retired)
}

// waitUntil polls cond for up to waitFor.
func waitUntil(t *testing.T, cond func() bool, failure string) {
	t.Helper()
	for end := time.Now().Add(waitFor); !cond(); {
		if time.Now().After(end) {
			t.Fatal(failure)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRequestProblemInformation ensures acks carry a reason string unless
// the client asked for no problem information, and that CONNACK carries
// response information only when asked for.
func TestRequestProblemInformation(t *testing.T) {
	e := newEnv(t, func(c *Config, n *node.Config) { n.Limits.MaxLevels = 2; c.ResponseInformation = "resp/dev/" })
	for _, tc := range []struct {
		props      packets.Properties
		wantReason bool
		wantResp   string
	}{
		{packets.Properties{}, true, ""},
		{packets.Properties{RequestProblemInfo: 0, RequestProblemInfoFlag: true, RequestResponseInfo: 1}, false, "resp/dev/"},
	} {
		r := e.raw()
		ack := r.connect(30, tc.props)
		if ack.Properties.ResponseInfo != tc.wantResp {
			t.Fatalf("response information %q, want %q", ack.Properties.ResponseInfo, tc.wantResp)
		}
		r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName: "too/deep/topic", PacketID: 1, Payload: []byte("x")})
		pk := r.expect(packets.Puback)
		if pk.ReasonCode != codeTopicNameInvalid || (pk.Properties.ReasonString != "") != tc.wantReason {
			t.Fatalf("PUBACK %#x reason string %q, want one: %v", pk.ReasonCode, pk.Properties.ReasonString, tc.wantReason)
		}
	}
}

// TestServerKeepAlive ensures a configured server keep alive is told to an
// MQTT 5 client in CONNACK and enforced at 1.5 times.
func TestServerKeepAlive(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *node.Config) { c.ServerKeepAlive = time.Second })
	r := e.raw()
	start := time.Now()
	if ack := r.connect(600, packets.Properties{}); !ack.Properties.ServerKeepAliveFlag || ack.Properties.ServerKeepAlive != 1 {
		t.Fatalf("Server Keep Alive %d (flag %v), want 1", ack.Properties.ServerKeepAlive, ack.Properties.ServerKeepAliveFlag)
	}
	if reason := r.expectClosed(); reason != codeKeepAliveTimeout || time.Since(start) > 3*time.Second {
		t.Fatalf("DISCONNECT %#x after %s, want 0x8D after 1.5s", reason, time.Since(start))
	}
}

// TestKeepAliveOneAndAHalf ensures the keep alive is enforced at exactly
// 1.5 intervals after the last packet: a packet at 1.2 intervals keeps the
// connection, and silence then closes it 1.5 intervals later, not before.
func TestKeepAliveOneAndAHalf(t *testing.T) {
	e := newEnv(t)
	r := e.raw()
	r.connect(1, packets.Properties{})
	time.Sleep(1200 * time.Millisecond) // the silence under test
	// Taken before the PINGREQ leaves: the server starts its 1.5 intervals
	// once it has read it, so no scheduling delay can make the close seem
	// early (taken after the PINGRESP, the time the PINGRESP took to come
	// back was subtracted, and a loaded machine failed the test).
	last := time.Now()
	r.send([]byte{packets.Pingreq << 4, 0})
	r.expect(packets.Pingresp)
	if reason := r.expectClosed(); reason != codeKeepAliveTimeout {
		t.Fatalf("DISCONNECT %#x, want 0x8D", reason)
	}
	if d := time.Since(last); d < 1500*time.Millisecond || d > 2200*time.Millisecond {
		t.Fatalf("closed %s after the last packet, want 1.5s", d)
	}
}

// TestRedirect ensures the drain hook sends MQTT 5 clients DISCONNECT 0x9C
// (or 0x9D) with the server reference.
func TestRedirect(t *testing.T) {
	e := newEnv(t)
	for _, permanent := range []bool{false, true} {
		r := e.raw()
		r.connect(30, packets.Properties{})
		e.srv.Redirect("edge-b.example:1883", permanent)
		pk := r.expect(packets.Disconnect)
		want := byte(codeUseAnotherServer)
		if permanent {
			want = codeServerMoved
		}
		if pk.ReasonCode != want || pk.Properties.ServerReference != "edge-b.example:1883" {
			t.Fatalf("DISCONNECT %#x reference %q", pk.ReasonCode, pk.Properties.ServerReference)
		}
		r.expectClosed()
	}
}

// TestMessageExpiryDecremented ensures a delivered message's expiry
// interval is what is left of it, and an expired message is not delivered.
func TestMessageExpiryDecremented(t *testing.T) {
	state := &fakeState{}
	e := newEnv(t, func(_ *Config, n *node.Config) { n.State = state })
	epoch, err := e.bb.EnsureTenant(context.Background(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	state.epoch = epoch
	now := time.Now()
	// Published with an expiry of an hour, 59.5 minutes ago.
	state.put(&message.Message{Tenant: "dev", Topic: "exp/left", Payload: []byte("x"), Retain: true,
		ExpiresAt: now.Add(30 * time.Second)})
	state.put(&message.Message{Tenant: "dev", Topic: "exp/gone", Payload: []byte("y"), Retain: true,
		ExpiresAt: now.Add(-time.Second)})
	sub := e.v5("sub")
	sub.subscribe(t, paho.SubscribeOptions{Topic: "exp/#", QoS: 0}, paho.SubscribeOptions{Topic: "marker", QoS: 0})
	m := sub.next(t)
	if m.Topic != "exp/left" || m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry > 30 || *m.Properties.MessageExpiry < 28 {
		t.Fatalf("got %s with expiry %v, want about 30s left", m.Topic, m.Properties.MessageExpiry)
	}
	e.v5("pub").publish(t, &paho.Publish{Topic: "marker", QoS: 1, Payload: []byte("m")})
	if m := sub.next(t); m.Topic != "marker" {
		t.Fatalf("expired message %s delivered", m.Topic)
	}
}

// TestDollarTopicsFirstLevelWildcards ensures neither # nor + at the first
// level matches a $-topic, while a filter naming the $ level does.
func TestDollarTopicsFirstLevelWildcards(t *testing.T) {
	e := newEnv(t)
	hash, plus, sys := e.v5("hash"), e.v5("plus"), e.v5("sys")
	hash.subscribe(t, paho.SubscribeOptions{Topic: "#", QoS: 1})
	plus.subscribe(t, paho.SubscribeOptions{Topic: "+/status", QoS: 1})
	sys.subscribe(t, paho.SubscribeOptions{Topic: "$SYS/+", QoS: 1})
	pub := e.v5("pub")
	pub.publish(t, &paho.Publish{Topic: "$SYS/status", QoS: 1, Payload: []byte("sys")})
	pub.publish(t, &paho.Publish{Topic: "dev/status", QoS: 1, Payload: []byte("dev")})
	if m := hash.next(t); m.Topic != "dev/status" {
		t.Fatalf("# received %s", m.Topic)
	}
	if m := plus.next(t); m.Topic != "dev/status" {
		t.Fatalf("+/status received %s", m.Topic)
	}
	if m := sys.next(t); m.Topic != "$SYS/status" {
		t.Fatalf("$SYS/+ received %s", m.Topic)
	}
}

// TestProtocolErrorsV5AndV3 ensures each illegal packet after CONNECT
// closes the connection with its MQTT 5 reason code, and closes an MQTT
// 3.1.1 connection without a packet, leaving other clients alone.
func TestProtocolErrorsV5AndV3(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *node.Config) { c.TopicAliasMaximum = 4 })
	bystander := e.v5("bystander")
	bystander.subscribe(t, paho.SubscribeOptions{Topic: "ok", QoS: 1})
	publishWith := func(topic string, props ...byte) []byte {
		b := []byte{0x30, byte(2 + len(topic) + 1 + len(props) + 1), 0x00, byte(len(topic))}
		b = append(b, topic...)
		b = append(b, byte(len(props)))
		b = append(b, props...)
		return append(b, 'p')
	}
	share := "$share/g/s"
	for name, tc := range map[string]struct {
		packet []byte
		v5, v3 bool // which versions the case applies to
		reason byte
	}{
		"qos 3 publish":           {[]byte{0x36, 0x06, 0x00, 0x01, 'a', 0x00, 0x01, 0x00}, true, true, codeMalformed},
		"dup at qos 0":            {[]byte{0x38, 0x04, 0x00, 0x01, 'a', 0x00}, true, true, codeProtocolError},
		"qos 1 without id":        {[]byte{0x32, 0x06, 0x00, 0x01, 'a', 0x00, 0x00, 0x00}, true, true, codeProtocolError},
		"pubrel bad flags":        {[]byte{0x60, 0x02, 0x00, 0x01}, true, true, codeMalformed},
		"subscribe bad flags":     {[]byte{0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00}, true, true, codeMalformed},
		"pubrel before pubrec":    {[]byte{0x34, 0x06, 0x00, 0x01, 'a', 0x00, 0x05, 0x00, 0x62, 0x02, 0x00, 0x05}, true, false, codeProtocolError},
		"topic alias 0":           {publishWith("a", 0x23, 0x00, 0x00), true, false, codeTopicAliasInvalid},
		"topic alias above max":   {publishWith("a", 0x23, 0x00, 0x05), true, false, codeTopicAliasInvalid},
		"unknown topic alias":     {publishWith("", 0x23, 0x00, 0x02), true, false, codeProtocolError},
		"empty topic no alias":    {publishWith(""), true, true, codeProtocolError},
		"pubrec bad reason":       {[]byte{0x50, 0x03, 0x00, 0x01, 0x42}, true, false, codeMalformed},
		"retain handling 3":       {[]byte{0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x30}, true, false, codeProtocolError},
		"no local on shared":      {append(append([]byte{0x82, byte(6 + len(share)), 0x00, 0x01, 0x00, 0x00, byte(len(share))}, share...), 0x05), true, false, codeProtocolError},
		"subscription id 0":       {[]byte{0x82, 0x09, 0x00, 0x01, 0x02, 0x0b, 0x00, 0x00, 0x01, 'a', 0x00}, true, false, codeProtocolError},
		"auth without method":     {[]byte{0xf0, 0x02, 0x18, 0x00}, true, false, codeProtocolError},
		"reserved type 15 in 311": {[]byte{0xf0, 0x00}, false, true, 0},
		"unsubscribe empty":       {[]byte{0xa2, 0x03, 0x00, 0x01, 0x00}, true, false, codeProtocolError},
		"pingreq with body":       {[]byte{0xc0, 0x01, 0x00}, true, true, codeMalformed},
	} {
		for _, v := range []byte{5, 4} {
			if (v == 5 && !tc.v5) || (v == 4 && !tc.v3) {
				continue
			}
			t.Run(fmt.Sprintf("%s v%d", name, v), func(t *testing.T) { expectRefused(t, e, v, tc.packet, tc.reason) })
		}
	}
	e.v5("pub").publish(t, &paho.Publish{Topic: "ok", QoS: 1, Payload: []byte("fine")})
	if m := bystander.next(t); string(m.Payload) != "fine" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestSharedSubscriptionInvalid ensures a malformed shared subscription
// filter is refused in SUBACK (0x8F) without closing the connection.
func TestSharedSubscriptionInvalid(t *testing.T) {
	e := newEnv(t)
	r := e.raw()
	r.connect(30, packets.Properties{})
	sa := r.subscribe(packets.Subscription{Filter: "$share/g"}, packets.Subscription{Filter: "$share//x"},
		packets.Subscription{Filter: "$share/g+/x"}, packets.Subscription{Filter: "$share/g/x", Qos: 1})
	if fmt.Sprint(sa.ReasonCodes) != fmt.Sprint([]byte{codeTopicFilterInvalid, codeTopicFilterInvalid, codeTopicFilterInvalid, 1}) {
		t.Fatalf("SUBACK %v", sa.ReasonCodes)
	}
	if sa.Properties.ReasonString == "" {
		t.Fatal("no reason string on a SUBACK with failures")
	}
}

// TestSubscriptionIdentifier ensures a delivery carries the identifiers of
// the subscriptions it matched.
func TestSubscriptionIdentifier(t *testing.T) {
	e := newEnv(t)
	sub := e.v5("sub")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	id := 7
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &id},
		Subscriptions: []paho.SubscribeOptions{{Topic: "sid/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	e.v5("pub").publish(t, &paho.Publish{Topic: "sid/x", QoS: 1, Payload: []byte("x")})
	if m := sub.next(t); m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != 7 {
		t.Fatalf("subscription identifier %v, want 7", m.Properties.SubscriptionIdentifier)
	}
}

// TestSharedSubscriptionRepairedAfterNATSCut ensures a shared group with a
// member on each of two edges gets every QoS 1 message at least once when
// one edge's NATS link is a black hole for a while: the NATS server, not
// noticing, keeps giving that edge its share, which the edge reads back
// from the stream once it has reconnected and hands to its member. Without
// it that share is lost for the group.
func TestSharedSubscriptionRepairedAfterNATSCut(t *testing.T) {
	interval := backbone.PingInterval
	backbone.PingInterval = 100 * time.Millisecond
	t.Cleanup(func() { backbone.PingInterval = interval })
	ns := testserver.NATS(t)
	proxy := testserver.NewCutProxy(t, strings.TrimPrefix(ns.ClientURL(), "nats://"))
	nc, err := backbone.Connect("nats://"+proxy.Addr(), "edge-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ea, eb := newEdgeOn(t, nc, "edge-a"), newEdge(t, ns, "edge-b")
	a, b := ea.v5("a"), eb.v5("b")
	a.subscribe(t, paho.SubscribeOptions{Topic: "$share/g/sh/#", QoS: 1})
	b.subscribe(t, paho.SubscribeOptions{Topic: "$share/g/sh/#", QoS: 1})
	pub := eb.v5("pub")

	proxy.BlackHole(true)
	const n = 40
	for i := range n {
		pub.publish(t, &paho.Publish{Topic: fmt.Sprintf("sh/%d", i), QoS: 1, Payload: []byte("x")})
		time.Sleep(10 * time.Millisecond)
	}
	waitUntil(t, func() bool { return !nc.IsConnected() }, "edge A's NATS connection never noticed the black hole")
	proxy.Cut() // drop the black-holed sockets, as a peer's reset would
	proxy.Restore()
	proxy.BlackHole(false)

	got := map[string]int{}
	deadline := time.After(15 * time.Second)
	for len(got) < n {
		select {
		case m := <-a.msgs:
			got[m.Topic]++
		case m := <-b.msgs:
			got[m.Topic]++
		case <-deadline:
			t.Fatalf("%d of %d messages reached a member of the group", len(got), n)
		}
	}
}
