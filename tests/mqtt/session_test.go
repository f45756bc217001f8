package mqtt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// dialSession connects a Paho MQTT 5 client that resumes (or creates) a
// persistent session with the given expiry, and returns the CONNACK.
func dialSession(t *testing.T, addr, clientID string, expiry uint32, will *paho.WillMessage, willDelay uint32) (*client, *paho.Connack) {
	t.Helper()
	return dialSink(t, addr, clientID, expiry, will, willDelay, nil)
}

// dialSink is dialSession with the messages handed to sink, if set, as
// they arrive (before they are acknowledged) instead of to the channel.
func dialSink(t *testing.T, addr, clientID string, expiry uint32, will *paho.WillMessage, willDelay uint32, sink func(*paho.Publish)) (*client, *paho.Connack) {
	t.Helper()
	c, ack, err := tryDialSink(addr, clientID, expiry, will, willDelay, sink)
	if err != nil {
		t.Fatalf("connect %s to %s: %v", clientID, addr, err)
	}
	return c, ack
}

// errRefused is a CONNECT answered with a refusal.
var errRefused = errors.New("connect refused")

// tryDialSink is dialSink returning its error, for callers that retry.
func tryDialSink(addr, clientID string, expiry uint32, will *paho.WillMessage, willDelay uint32, sink func(*paho.Publish)) (*client, *paho.Connack, error) {
	conn, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		return nil, nil, err
	}
	c := &client{msgs: make(chan *paho.Publish, 8192), disconnects: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			if sink != nil {
				sink(pr.Packet)
			} else {
				c.msgs <- pr.Packet
			}
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.disconnects <- d },
	})
	// herald-seq: 1 asks for each message's stream sequence (seqOf).
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry,
		User: paho.UserProperties{{Key: "herald-seq", Value: "1"}}}}
	if will != nil {
		cp.WillMessage = will
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &willDelay}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		if ack != nil && ack.ReasonCode != 0 {
			return nil, ack, fmt.Errorf("%w: reason %#x: %v", errRefused, ack.ReasonCode, err)
		}
		return nil, ack, err
	}
	return c, ack, nil
}

func (c *client) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message received")
		return nil
	}
}

// TestPersistentSessionResumesOnOtherEdge ensures an MQTT 5 session left on
// edge A resumes on edge B with SessionPresent and gets every QoS 1 and 2
// message published while it was away, in order, each once, without
// subscribing again; QoS 0 messages are not kept for it.
func TestPersistentSessionResumesOnOtherEdge(t *testing.T) {
	c, ack := dialSession(t, cluster.A.MQTT, "e2e-persist", 300, nil, 0)
	if ack.SessionPresent {
		t.Fatal("a new session reported present")
	}
	c.subscribe(t, "persist/#", 2)
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}

	pub := dial(t, cluster.B.MQTT, "e2e-persist-pub")
	var want []string
	for i := range 210 {
		qos := byte(1 + i%2)
		if i%21 == 20 {
			qos = 0
		}
		p := fmt.Sprintf("m%03d", i)
		pub.publish(t, fmt.Sprintf("persist/%d", i%3), qos, p)
		if qos > 0 {
			want = append(want, p)
		}
	}

	c2, ack := dialSession(t, cluster.B.MQTT, "e2e-persist", 300, nil, 0)
	t.Cleanup(func() { _ = c2.Disconnect(&paho.Disconnect{}) })
	if !ack.SessionPresent {
		t.Fatal("SessionPresent 0 on resume")
	}
	for i, w := range want {
		if m := c2.next(t); string(m.Payload) != w {
			t.Fatalf("message %d: %s, want %s", i, m.Payload, w)
		}
	}
	// Live again, and nothing more (a duplicate would come before this).
	pub.publish(t, "persist/live", 1, "live")
	if m := c2.next(t); string(m.Payload) != "live" {
		t.Fatalf("after the offline messages got %s, want live", m.Payload)
	}
}

// TestPersistentSessionV311 ensures an MQTT 3.1.1 client with
// CleanSession 0 resumes its session on the other edge with SessionPresent
// and the QoS 1 messages it missed, in order.
func TestPersistentSessionV311(t *testing.T) {
	msgs := make(chan mqtt3.Message, 256)
	connect := func(addr string) (mqtt3.Client, bool) {
		opts := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("e2e-persist-v3").SetCleanSession(false).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(waitFor).SetProtocolVersion(4).
			SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { msgs <- m })
		c := mqtt3.NewClient(opts)
		tok := c.Connect()
		if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
			t.Fatalf("v3 connect: %v", tok.Error())
		}
		return c, tok.(*mqtt3.ConnectToken).SessionPresent()
	}
	c, _ := connect(cluster.A.MQTT)
	if tok := c.Subscribe("v3persist/#", 1, nil); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	c.Disconnect(100)

	pub := dial(t, cluster.A.MQTT, "e2e-persist-v3-pub")
	for i := range 50 {
		pub.publish(t, "v3persist/x", 1, strconv.Itoa(i))
	}
	c2, present := connect(cluster.B.MQTT)
	defer c2.Disconnect(100)
	if !present {
		t.Fatal("SessionPresent 0 on resume")
	}
	for i := range 50 {
		select {
		case m := <-msgs:
			if string(m.Payload()) != strconv.Itoa(i) {
				t.Fatalf("message %d: %s", i, m.Payload())
			}
		case <-time.After(waitFor):
			t.Fatalf("message %d missing", i)
		}
	}
}

// TestTakeoverMovesSession ensures a takeover on the other edge with clean
// start 0 keeps the session: the new connection gets SessionPresent, the
// subscriptions, and every message the old one had not received, in order.
func TestTakeoverMovesSession(t *testing.T) {
	first, _ := dialSession(t, cluster.A.MQTT, "e2e-takeover-session", 300, nil, 0)
	first.subscribe(t, "moving/#", 1)
	pub := dial(t, cluster.A.MQTT, "e2e-takeover-pub")
	const n = 150
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range n {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			_, err := pub.Publish(ctx, &paho.Publish{Topic: "moving/x", QoS: 1, Payload: []byte(strconv.Itoa(i))})
			cancel()
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	}()
	var got []int
	for len(got) < 40 {
		m := first.next(t)
		i, _ := strconv.Atoi(string(m.Payload))
		got = append(got, i)
	}
	second, ack := dialSession(t, cluster.B.MQTT, "e2e-takeover-session", 300, nil, 0)
	t.Cleanup(func() { _ = second.Disconnect(&paho.Disconnect{}) })
	if !ack.SessionPresent {
		t.Fatal("SessionPresent 0 after a takeover")
	}
	select {
	case d := <-first.disconnects:
		if d.ReasonCode != 0x8E {
			t.Fatalf("DISCONNECT %#x, want 0x8E", d.ReasonCode)
		}
	case <-time.After(waitFor):
		t.Fatal("the first connection was not taken over")
	}
	// What the first connection still received before it closed counts.
	for drained := false; !drained; {
		select {
		case m := <-first.msgs:
			i, _ := strconv.Atoi(string(m.Payload))
			got = append(got, i)
		default:
			drained = true
		}
	}
	<-published
	seen := map[int]bool{}
	var order []int
	add := func(i int) {
		if !seen[i] { // QoS 1 may repeat what was not acknowledged
			seen[i] = true
			order = append(order, i)
		}
	}
	for _, i := range got {
		add(i)
	}
	for len(seen) < n {
		m := second.next(t)
		i, _ := strconv.Atoi(string(m.Payload))
		add(i)
	}
	for k, i := range order {
		if i != k {
			t.Fatalf("order across the takeover: %v", order)
		}
	}
}

// TestWillAfterEdgeKill9 ensures the will of a client whose edge is killed
// with SIGKILL is published by the session service once the connection's
// lease has lapsed and the will delay has passed: a subscriber on the other
// edge gets it within 15 s.
func TestWillAfterEdgeKill9(t *testing.T) {
	cl := newCluster(t)
	watcher := dial(t, cl.B.MQTT, "e2e-will-watcher")
	watcher.subscribe(t, "wills/#", 1)
	dialSession(t, cl.A.MQTT, "e2e-will-victim", 60,
		&paho.WillMessage{Topic: "wills/victim", QoS: 1, Payload: []byte("edge died")}, 1)
	start := time.Now()
	cl.kill9(t, "edge-a")
	select {
	case m := <-watcher.msgs:
		if string(m.Payload) != "edge died" {
			t.Fatalf("got %q", m.Payload)
		}
		if took := time.Since(start); took < time.Second {
			t.Fatalf("will published after %s, before its 1 s delay", took)
		} else {
			t.Logf("will published %s after kill -9", took.Round(100*time.Millisecond))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no will within 15 s of kill -9")
	}
}

// TestWillAtSessionEnd ensures a will whose delay outlasts its session is
// published when the session ends, not when the delay passes
// [MQTT-3.1.3-9]: a Paho client with Session Expiry Interval 2 s and Will
// Delay Interval 60 s loses its connection, and a subscriber on the other
// edge gets the will after 2 s, well before 60 s. The session service's
// expiry sweep runs hourly here, so that only the will's own due time can
// send it.
func TestWillAtSessionEnd(t *testing.T) {
	cl := newCluster(t, "HERALD_SESSION_SWEEP_INTERVAL=1h")
	watcher := dial(t, cl.B.MQTT, "e2e-will-end-watcher")
	watcher.subscribe(t, "wills/#", 1)
	conn, err := net.DialTimeout("tcp", cl.A.MQTT, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	victim := paho.NewClient(paho.ClientConfig{Conn: conn})
	expiry, delay := uint32(2), uint32(60)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := victim.Connect(ctx, &paho.Connect{ClientID: "e2e-will-end", KeepAlive: 30,
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		WillMessage:    &paho.WillMessage{Topic: "wills/end", QoS: 1, Payload: []byte("session over")},
		WillProperties: &paho.WillProperties{WillDelayInterval: &delay}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = conn.Close() // no DISCONNECT: the will stands
	select {
	case m := <-watcher.msgs:
		took := time.Since(start)
		if string(m.Payload) != "session over" || took < time.Duration(expiry)*time.Second {
			t.Fatalf("got %q %s after the connection was lost, want the will once the %ds session ended", m.Payload, took, expiry)
		}
		t.Logf("will published %s after the connection was lost", took.Round(100*time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatalf("no will within 20 s of a %d s session's end (its delay is %d s)", expiry, delay)
	}
}

// TestFlappingPersistentSessions ensures that with publishers on
// overlapping topics and persistent sessions connecting and disconnecting
// on both edges meanwhile, every session ends up with every QoS 1 message,
// in per-topic stream order (repeats of unacknowledged ones aside).
func TestFlappingPersistentSessions(t *testing.T) {
	const publishers, perPublisher, sessions, topics = 5, 300, 10, 3
	edges := []string{cluster.A.MQTT, cluster.B.MQTT}
	for s := range sessions {
		c, _ := dialSession(t, edges[s%2], fmt.Sprintf("e2e-flap-%d", s), 300, nil, 0)
		c.subscribe(t, "flap/#", 1)
		_ = c.Disconnect(&paho.Disconnect{})
	}

	// received[s] is what session s got, in arrival order; complete[s] is
	// closed once it has every message.
	received := make([][]*paho.Publish, sessions)
	complete := make([]chan struct{}, sessions)
	var mu sync.Mutex
	done := make(chan struct{})
	var flappers sync.WaitGroup
	var refused atomic.Int64
	for s := range sessions {
		flappers.Add(1)
		go func() {
			defer flappers.Done()
			rng := rand.New(rand.NewPCG(uint64(s), 1))
			complete[s] = make(chan struct{})
			distinct := map[string]bool{}
			sink := func(m *paho.Publish) {
				mu.Lock()
				defer mu.Unlock()
				received[s] = append(received[s], m)
				if !distinct[string(m.Payload)] {
					distinct[string(m.Payload)] = true
					if len(distinct) == publishers*perPublisher {
						close(complete[s])
					}
				}
			}
			for round := 0; ; round++ {
				// As a real client does: a CONNECT refused with 0x88 (the
				// session's previous connection had not handed it over yet)
				// is retried after a pause.
				var c *client
				var ack *paho.Connack
				for attempt := 0; ; attempt++ {
					var err error
					c, ack, err = tryDialSink(edges[(s+round)%2], fmt.Sprintf("e2e-flap-%d", s), 300, nil, 0, sink)
					if err == nil {
						break
					}
					if !errors.Is(err, errRefused) || ack.ReasonCode != 0x88 || attempt == 20 {
						t.Errorf("session %d round %d: %v", s, round, err)
						return
					}
					refused.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
				if !ack.SessionPresent {
					t.Errorf("session %d lost at round %d", s, round)
				}
				select {
				case <-done:
					// The last connection stays until everything came.
					select {
					case <-complete[s]:
					case <-time.After(20 * time.Second):
						mu.Lock()
						var missing []string
						for p := range publishers {
							for j := range perPublisher {
								if k := fmt.Sprintf("%d-%d", p, j); !distinct[k] && len(missing) < 20 {
									missing = append(missing, k)
								}
							}
						}
						why := "the last connection is still open"
						select {
						case d := <-c.disconnects:
							why = fmt.Sprintf("the server disconnected the last connection: %#x %v", d.ReasonCode, d.Properties)
						default:
						}
						t.Errorf("session %d: %d of %d messages; %s; missing (first 20) %v",
							s, len(distinct), publishers*perPublisher, why, missing)
						mu.Unlock()
					}
					_ = c.Disconnect(&paho.Disconnect{})
					return
				case <-time.After(time.Duration(30+rng.IntN(150)) * time.Millisecond):
				}
				_ = c.Disconnect(&paho.Disconnect{})
			}
		}()
	}

	var pubs sync.WaitGroup
	for p := range publishers {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			c := dial(t, edges[p%2], fmt.Sprintf("e2e-flap-pub-%d", p))
			for j := range perPublisher {
				// Publishers share topics: each writes to all of them.
				tp := fmt.Sprintf("flap/%d", (p+j)%topics)
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				_, err := c.Publish(ctx, &paho.Publish{Topic: tp, QoS: 1, Payload: []byte(fmt.Sprintf("%d-%d", p, j))})
				cancel()
				if err != nil {
					t.Errorf("publisher %d: %v", p, err)
					return
				}
				time.Sleep(time.Millisecond) // pacing, so sessions flap during the load
			}
		}()
	}
	pubs.Wait()
	close(done)
	flappers.Wait()
	t.Logf("CONNECTs refused with 0x88 and retried: %d", refused.Load())

	for s := range sessions {
		seen := map[string]bool{}
		last := map[string]uint64{} // per topic: stream sequence of the last new message
		for _, m := range received[s] {
			key := string(m.Payload)
			if seen[key] {
				continue // a repeat of an unacknowledged QoS 1 message
			}
			seen[key] = true
			seq := seqOf(m)
			if seq <= last[m.Topic] {
				t.Fatalf("session %d: %s (seq %d) after seq %d on %s", s, key, seq, last[m.Topic], m.Topic)
			}
			last[m.Topic] = seq
		}
		if len(seen) != publishers*perPublisher {
			t.Fatalf("session %d received %d distinct messages, want %d", s, len(seen), publishers*perPublisher)
		}
	}
}

// seqOf is the stream sequence Herald sends with each message to a
// client that asked for it: the last herald-seq user property (a
// publisher's own would come before it).
func seqOf(m *paho.Publish) uint64 {
	var seq uint64
	if m.Properties != nil {
		for _, u := range m.Properties.User {
			if u.Key == "herald-seq" {
				seq, _ = strconv.ParseUint(u.Value, 10, 64)
			}
		}
	}
	return seq
}
