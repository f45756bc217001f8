package mqtt

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// crashStore is a session store an edge stops writing to at once when it
// "crashes": what it saved before stays, nothing after reaches the store.
type crashStore struct {
	store.Store
	crashed atomic.Bool
}

var errCrashed = errors.New("the edge crashed")

func (c *crashStore) SaveSession(ctx context.Context, tenant string, s *store.Session, lim store.Limits) error {
	if c.crashed.Load() {
		return errCrashed
	}
	return c.Store.SaveSession(ctx, tenant, s, lim)
}

func (c *crashStore) DeleteSession(ctx context.Context, tenant, clientID string, revision uint64) error {
	if c.crashed.Load() {
		return errCrashed
	}
	return c.Store.DeleteSession(ctx, tenant, clientID, revision)
}

// crashPair is two edges over one NATS server and one session store,
// edge A able to crash: from then on nothing it does reaches the store,
// and its NATS link is gone. Periodic saves are far apart, so that only
// what an edge saves on purpose counts.
type crashPair struct {
	a, b  *env
	st    store.Store
	cs    *crashStore
	aNATS *nats.Conn
}

func newCrashPair(t *testing.T) *crashPair {
	t.Helper()
	p := &crashPair{st: embeddedStore(t)}
	p.cs = &crashStore{Store: p.st}
	ns := testserver.NATS(t)
	noPeriodicSave := func(c *Config) { c.SessionLease, c.SessionSaveInterval = time.Hour, 20*time.Minute }
	p.aNATS = testserver.NATSConn(t, ns)
	p.a = newEdgeOn(t, p.aNATS, "edge-a", func(c *Config, n *node.Config) { n.State = p.cs; noPeriodicSave(c) })
	p.b = newEdge(t, ns, "edge-b", func(c *Config, n *node.Config) { n.State = p.st; noPeriodicSave(c) })
	return p
}

// resumeOnA gives clientID a persistent session subscribed to filter at
// qos, saved (a disconnect saves it), then resumed on edge A.
func (p *crashPair) resumeOnA(t *testing.T, clientID, filter string, qos byte) *raw {
	t.Helper()
	r0, _ := connectRaw(t, p.a, 5, clientID, false)
	r0.subscribe(packets.Subscription{Filter: filter, Qos: qos})
	r0.send([]byte{packets.Disconnect << 4, 0})
	r0.expectClosed()
	waitRecord(t, p.st, clientID, func(s *store.Session) bool { return s.DisconnectedAt.After(time.Time{}) && len(s.Subscriptions) == 1 })
	r, ack := connectRaw(t, p.a, 5, clientID, true)
	if !ack.SessionPresent {
		t.Fatal("session not resumed on edge A")
	}
	return r
}

// crash crashes edge A, whose client r sees its connection dropped.
func (p *crashPair) crash(r *raw) {
	p.cs.crashed.Store(true)
	p.aNATS.Close()
	r.c.Close()
}

// resumeAfterCrash resumes clientID's session on edge e after its edge
// crashed: until the NATS server has seen the crashed edge's connection
// go, a takeover request may still be routed to it and time out, and the
// CONNECT is refused with 0x88; the client retries, after a pause as
// clients do (sooner, the refused attempt's own control subscription,
// kept for a quarter of the takeover wait, would withhold its answer: the
// record names the crashed connection).
func resumeAfterCrash(t *testing.T, e *env, clientID string) *raw {
	t.Helper()
	deadline := time.Now().Add(3 * waitFor)
	for {
		r := e.raw()
		r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
			Connect:    packets.ConnectParams{ProtocolName: []byte("MQTT"), Keepalive: 30, ClientIdentifier: clientID},
			Properties: packets.Properties{SessionExpiryInterval: 300, SessionExpiryIntervalFlag: true}})
		ack := r.expect(packets.Connack)
		switch {
		case ack.ReasonCode == 0 && ack.SessionPresent:
			return r
		case ack.ReasonCode != codeServerUnavailable || time.Now().After(deadline):
			t.Fatalf("resume of %s: CONNACK %#x, session present %v", clientID, ack.ReasonCode, ack.SessionPresent)
		}
		r.c.Close()
		time.Sleep(DefaultTakeoverWait)
	}
}

// TestResumedSubscriptionsSurviveCrash ensures the record a resuming
// CONNECT writes keeps the session's subscriptions, which the resume only
// restores after it: an edge that crashes right after a client resumed
// leaves a session that still delivers what the client subscribed to,
// wherever it resumes next.
func TestResumedSubscriptionsSurviveCrash(t *testing.T) {
	p := newCrashPair(t)
	r := p.resumeOnA(t, "subs", "subs/#", 1)
	p.crash(r)

	r2 := resumeAfterCrash(t, p.b, "subs")
	p.b.v5("pub").publish(t, &paho.Publish{Topic: "subs/x", QoS: 1, Payload: []byte("x")})
	if pk := r2.expect(packets.Publish); string(pk.Payload) != "x" {
		t.Fatalf("got %q", pk.Payload)
	}
}

// TestQoS2ExactlyOnceAcrossEdgeCrash ensures a persistent session resumed
// on another edge after its edge crashed continues its outbound QoS 2
// exchanges where the client left them, and never sends a QoS 2 message
// the client already took as a new one: a message whose PUBLISH the client
// got comes again with DUP and its packet identifier; one the client
// acknowledged (PUBREC, then got PUBREL) gets only its PUBREL again; one
// completed (PUBCOMP) above an older unacknowledged QoS 1 message does not
// come again. The edge "crashes" right after the client saw each, with
// nothing saved from then on, and periodic saves far apart, so that only
// what the edge made durable before sending counts.
func TestQoS2ExactlyOnceAcrossEdgeCrash(t *testing.T) {
	p := newCrashPair(t)
	pub := p.b.v5("pub")
	publish := func(payload string, qos byte) {
		pub.publish(t, &paho.Publish{Topic: "eo/" + payload, QoS: qos, Payload: []byte(payload)})
	}
	r := p.resumeOnA(t, "eo", "eo/#", 2)
	ackPacket := func(typ byte, id uint16) {
		r.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, PacketID: id})
	}
	next := func(payload string) *packets.Packet {
		t.Helper()
		pk := r.expect(packets.Publish)
		if string(pk.Payload) != payload {
			t.Fatalf("got %q, want %q", pk.Payload, payload)
		}
		return pk
	}

	// one: completed. two: QoS 1, never acknowledged, holds the cursor
	// back. three: QoS 2 completed after it. four: PUBREC sent, PUBREL
	// received (the client is done with it). five: PUBLISH received, not
	// acknowledged yet.
	// received publishes payload at QoS 2 and takes the message up to
	// PUBREL; completed up to PUBCOMP.
	received := func(payload string) *packets.Packet {
		t.Helper()
		publish(payload, 2)
		pk := next(payload)
		ackPacket(packets.Pubrec, pk.PacketID)
		r.expect(packets.Pubrel)
		return pk
	}
	completed := func(payload string) { ackPacket(packets.Pubcomp, received(payload).PacketID) }
	completed("one")
	publish("two", 1)
	next("two")
	completed("three")
	four := received("four")
	publish("five", 2)
	five := next("five")

	p.crash(r)
	r2 := resumeAfterCrash(t, p.b, "eo")
	publish("six", 2) // after the resume: the last message owed
	released := map[uint16]bool{four.PacketID: true}
	for {
		pk := r2.read()
		switch pk.FixedHeader.Type {
		case packets.Pubrel:
			if !released[pk.PacketID] {
				t.Fatalf("PUBREL for %d, want only four's (%d) or five's once acknowledged", pk.PacketID, four.PacketID)
			}
			r2.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: pk.PacketID})
			continue
		case packets.Publish:
		default:
			t.Fatalf("unexpected %s", packets.PacketNames[pk.FixedHeader.Type])
		}
		switch p := string(pk.Payload); p {
		case "two": // QoS 1: sent again, as MQTT allows
		case "five":
			if !pk.FixedHeader.Dup || pk.PacketID != five.PacketID {
				t.Fatalf("five sent again as a new message (DUP %v, id %d), want DUP and id %d: the client would deliver it twice",
					pk.FixedHeader.Dup, pk.PacketID, five.PacketID)
			}
			released[pk.PacketID] = true
			r2.sendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pk.PacketID})
		case "six":
			return
		default:
			t.Fatalf("%s sent again (DUP %v, id %d) after the client took it", p, pk.FixedHeader.Dup, pk.PacketID)
		}
	}
}

// BenchmarkQoS2SessionWrites measures the session store writes that make
// outbound QoS 2 exactly once across an edge crash (persist.go): one
// persistent Paho MQTT 5 subscriber at QoS 2, over the embedded store
// (bbolt, a sync per write) and over Redis, fed QoS 2 messages one at a
// time (each published once the previous one was delivered: the worst
// case, no batching) or all at once (a burst). Reported per message
// delivered: saves/msg; at a rate of R QoS 2 messages a second to one
// session that is R × saves/msg writes a second.
func BenchmarkQoS2SessionWrites(b *testing.B) {
	stores := map[string]func(b *testing.B) store.Store{
		"embedded": func(b *testing.B) store.Store { return embeddedStore(b) },
		"redis": func(b *testing.B) store.Store {
			rdb := redis.NewClient(&redis.Options{Addr: testserver.Redis(b)})
			b.Cleanup(func() { rdb.Close() })
			return store.NewRedis(rdb, store.RedisConfig{})
		},
	}
	for _, name := range []string{"embedded", "redis"} {
		for _, mode := range []string{"one-at-a-time", "burst"} {
			b.Run(name+"/"+mode, func(b *testing.B) { benchmarkQoS2Writes(b, stores[name](b), mode == "burst") })
		}
	}
}

func benchmarkQoS2Writes(b *testing.B, s store.Store, burst bool) {
	st := &countingStore{Store: s}
	e := newEdge(b, testserver.NATS(b), "edge-bench", func(_ *Config, n *node.Config) { n.State = st })
	sub, _, err := e.dialV5(&paho.Connect{ClientID: "bench-sub", KeepAlive: 30, Properties: expiry(300)})
	if err != nil {
		b.Fatal(err)
	}
	sub.subscribe(b, paho.SubscribeOptions{Topic: "bench/#", QoS: 2})
	pub := e.v5("bench-pub")
	ctx := context.Background()
	send := func() error {
		_, err := pub.Publish(ctx, &paho.Publish{Topic: "bench/x", QoS: 2, Payload: []byte("x")})
		return err
	}
	before := st.saves.Load()
	b.ResetTimer()
	if burst {
		errs := make(chan error, b.N)
		for range b.N {
			go func() { errs <- send() }()
		}
		for range b.N {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			sub.next(b)
		}
	} else {
		for range b.N {
			if err := send(); err != nil {
				b.Fatal(err)
			}
			sub.next(b)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(st.saves.Load()-before)/float64(b.N), "saves/msg")
}
