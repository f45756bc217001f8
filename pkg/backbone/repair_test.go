package backbone_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// liveRig is a Live on its own NATS connection through a cutProxy, and a
// publisher on a direct one, over one test server.
type liveRig struct {
	t      *testing.T
	server *server.Server
	pub    *backbone.Backbone
	proxy  *testserver.CutProxy
	nc     *nats.Conn
	live   *backbone.Live
	got    chan *message.Message
}

// newLiveRig connects through the proxy with backbone.Connect (pinging
// every 100 ms) and watches "a/#" of tenant t1.
func newLiveRig(t *testing.T) *liveRig {
	t.Helper()
	s := testserver.NATS(t)
	cfg := backbone.Config{MemoryStorage: true, MaxBytes: 64 << 20}
	pub, err := backbone.New(testserver.NATSConn(t, s), cfg)
	if err != nil {
		t.Fatal(err)
	}
	interval := backbone.PingInterval
	backbone.PingInterval = 100 * time.Millisecond
	t.Cleanup(func() { backbone.PingInterval = interval })
	r := &liveRig{t: t, server: s, pub: pub, proxy: testserver.NewCutProxy(t, strings.TrimPrefix(s.ClientURL(), "nats://")),
		got: make(chan *message.Message, 1<<16)}
	if r.nc, err = backbone.Connect("nats://"+r.proxy.Addr(), "test", nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.nc.Close)
	sub, err := backbone.New(r.nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.live = sub.NewLive(backbone.LiveConfig{}, func(m *message.Message) { r.got <- m })
	t.Cleanup(r.live.Close)
	if _, err := r.live.Watch("t1", "a/#"); err != nil {
		t.Fatal(err)
	}
	if err := r.live.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// publish stores a message on topic and returns its sequence.
func (r *liveRig) publish(topic string) uint64 {
	r.t.Helper()
	pos, err := r.pub.Publish(context.Background(), &message.Message{Tenant: "t1", Topic: topic, Payload: []byte(topic)}, backbone.PublishOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	return pos.Seq
}

// expect checks that the handler gets exactly seqs next, in order.
func (r *liveRig) expect(seqs ...uint64) {
	r.t.Helper()
	for i, w := range seqs {
		select {
		case m := <-r.got:
			if m.Seq != w {
				r.t.Fatalf("message %d of %d: got seq %d (%s), want %d", i, len(seqs), m.Seq, m.Topic, w)
			}
		case <-time.After(10 * time.Second):
			r.t.Fatalf("message %d of %d (seq %d) never arrived", i, len(seqs), w)
		}
	}
}

// expectNothing checks that nothing more reaches the handler.
func (r *liveRig) expectNothing() {
	r.t.Helper()
	select {
	case m := <-r.got:
		r.t.Fatalf("unexpected message seq %d (%s)", m.Seq, m.Topic)
	case <-time.After(300 * time.Millisecond):
	}
}

// waitDown waits for the Live's connection to notice it is cut off.
func (r *liveRig) waitDown() {
	r.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); r.nc.IsConnected(); {
		if time.Now().After(deadline) {
			r.t.Fatal("connection still up after the cut")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLiveRepairsReconnectGap cuts a Live's NATS connection while messages
// are stored, and checks that after the reconnect the missed messages of the
// watched filter reach the handler, in stream order, before later live ones,
// and that none arrives twice. Without the repair core NATS loses them.
func TestLiveRepairsReconnectGap(t *testing.T) {
	r := newLiveRig(t)
	r.expect(r.publish("a/0"))
	r.proxy.Cut()
	r.waitDown()
	var missed []uint64
	for i := 1; i <= 10; i++ {
		missed = append(missed, r.publish(fmt.Sprintf("a/%d", i)))
		r.publish(fmt.Sprintf("b/%d", i)) // not watched: must not be handed over
	}
	r.proxy.Restore()
	r.expect(missed...)
	// The next live message follows, with nothing handed over twice.
	r.expect(r.publish("a/after"))
	r.expectNothing()
}

// TestLiveRepairsBlackHoleGap black-holes a Live's NATS link long enough for
// the connection to be given up, stores messages meanwhile, heals it, and
// checks that the missed messages arrive in order, once.
func TestLiveRepairsBlackHoleGap(t *testing.T) {
	r := newLiveRig(t)
	r.expect(r.publish("a/0"))
	r.proxy.BlackHole(true)
	var missed []uint64
	for i := 1; i <= 10; i++ {
		missed = append(missed, r.publish(fmt.Sprintf("a/%d", i)))
		time.Sleep(50 * time.Millisecond)
	}
	r.waitDown()
	missed = append(missed, r.publish("a/late"))
	r.proxy.Cut() // drop the black-holed sockets, as a peer's reset would
	r.proxy.Restore()
	r.proxy.BlackHole(false)
	r.expect(missed...)
	r.expect(r.publish("a/after"))
	r.expectNothing()
}

// TestLiveRepairUnderSteadyTraffic reconnects a Live while messages are
// stored without pause, so that live messages arrive the moment the
// subscriptions are back, and checks the handler still gets every stored
// message once, in stream order.
func TestLiveRepairUnderSteadyTraffic(t *testing.T) {
	r := newLiveRig(t)
	stop := make(chan struct{})
	done := make(chan []uint64)
	go func() {
		var seqs []uint64
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- seqs
				return
			default:
			}
			pos, err := r.pub.Publish(context.Background(), &message.Message{Tenant: "t1", Topic: fmt.Sprintf("a/%d", i%7)}, backbone.PublishOptions{})
			if err == nil {
				seqs = append(seqs, pos.Seq)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for range 3 {
		time.Sleep(200 * time.Millisecond)
		r.proxy.Cut()
		time.Sleep(300 * time.Millisecond)
		r.proxy.Restore()
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	want := <-done
	r.expect(want...)
	r.expectNothing()
	t.Logf("%d messages across 3 reconnects, all in order", len(want))
}

// TestLiveRepairsSlowConsumerGap overflows a Live's buffer while its handler
// is stuck, so that NATS drops live messages, and checks that every message
// still reaches the handler once and in order, read back from the stream.
func TestLiveRepairsSlowConsumerGap(t *testing.T) {
	ctx := context.Background()
	s := testserver.NATS(t)
	cfg := backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20}
	pub, err := backbone.New(testserver.NATSConn(t, s), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var live *backbone.Live
	var liveMu sync.Mutex
	drops := make(chan struct{}, 100)
	nc := testserver.NATSConn(t, s, nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		liveMu.Lock()
		l := live
		liveMu.Unlock()
		if l != nil {
			l.AsyncError(sub, err)
		}
	}))
	sub, err := backbone.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	got := make(chan *message.Message, 256)
	l := sub.NewLive(backbone.LiveConfig{Buffer: 4, OnDrop: func() { drops <- struct{}{} }}, func(m *message.Message) {
		<-gate
		got <- m
	})
	liveMu.Lock()
	live = l
	liveMu.Unlock()
	defer l.Close()
	if _, err := l.Watch("t1", "a/#"); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := 0; i < 50; i++ {
		pos, err := pub.Publish(ctx, &message.Message{Tenant: "t1", Topic: fmt.Sprintf("a/%d", i)}, backbone.PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, pos.Seq)
	}
	select {
	case <-drops:
	case <-time.After(5 * time.Second):
		t.Fatal("the buffer never overflowed: the test shows nothing")
	}
	close(gate)
	for _, w := range want {
		select {
		case m := <-got:
			if m.Seq != w {
				t.Fatalf("got seq %d, want %d", m.Seq, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("seq %d never arrived", w)
		}
	}
	select {
	case m := <-got:
		t.Fatalf("unexpected message seq %d", m.Seq)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestConnectNoticesBlackHole checks that a connection made by Connect gives
// up a server that stops answering without closing the socket, and that it
// is reported down (what /readyz checks) until the link heals.
func TestConnectNoticesBlackHole(t *testing.T) {
	s := testserver.NATS(t)
	proxy := testserver.NewCutProxy(t, strings.TrimPrefix(s.ClientURL(), "nats://"))
	defer func(i time.Duration) { backbone.PingInterval = i }(backbone.PingInterval)
	backbone.PingInterval = 100 * time.Millisecond
	nc, err := backbone.Connect("nats://"+proxy.Addr(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ready := backbone.Connected(nc)
	if err := ready(context.Background()); err != nil {
		t.Fatalf("not ready at start: %v", err)
	}
	proxy.BlackHole(true)
	start := time.Now()
	for ready(context.Background()) == nil {
		if time.Since(start) > 5*time.Second {
			t.Fatal("a black-holed link still reported up after 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("black hole noticed after %v", time.Since(start).Round(time.Millisecond))
	proxy.BlackHole(false)
	for ready(context.Background()) != nil {
		if time.Since(start) > 10*time.Second {
			t.Fatal("not reconnected after the heal")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLiveRepairsSharedGap ensures messages of a shared subscription that
// NATS routed to an edge while its link was a black hole reach the group
// after the heal: two Lives are members of one queue group, one of them
// through a proxy that black-holes its link while messages are stored (the
// server, not noticing, keeps giving it about half of them), and after the
// heal every message has reached at least one member. Without the repair
// the black-holed member's share is lost.
func TestLiveRepairsSharedGap(t *testing.T) {
	r := newLiveRig(t)
	direct, err := backbone.New(testserver.NATSConn(t, r.server), backbone.Config{MemoryStorage: true, MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	other := direct.NewLive(backbone.LiveConfig{}, func(*message.Message) {})
	t.Cleanup(other.Close)
	got := make(chan *message.Message, 1<<12)
	member := func(l *backbone.Live) {
		if _, err := l.WatchShared("t1", "s/#", "group", func(m *message.Message) { got <- m }); err != nil {
			t.Fatal(err)
		}
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	member(r.live)
	member(other)

	sent := map[uint64]bool{}
	r.proxy.BlackHole(true)
	for i := range 40 {
		sent[r.publish(fmt.Sprintf("s/%d", i))] = true
		time.Sleep(10 * time.Millisecond)
	}
	r.waitDown()
	r.proxy.Cut() // drop the black-holed sockets, as a peer's reset would
	r.proxy.Restore()
	r.proxy.BlackHole(false)
	after := r.publish("s/after")
	sent[after] = true

	seen := map[uint64]int{}
	deadline := time.After(15 * time.Second)
	for len(seen) < len(sent) {
		select {
		case m := <-got:
			seen[m.Seq]++
		case <-deadline:
			var missing []uint64
			for seq := range sent {
				if seen[seq] == 0 {
					missing = append(missing, seq)
				}
			}
			t.Fatalf("%d of %d messages reached no member of the group: %v", len(missing), len(sent), missing)
		}
	}
}

// TestLiveWarnsOnlyOnALostConnection ensures a Live warns when its
// connection is lost (live delivery pauses until the repair), and says
// nothing when the connection is closed, as every normal stop of a Herald
// process closes it.
func TestLiveWarnsOnlyOnALostConnection(t *testing.T) {
	s := testserver.NATS(t)
	proxy := testserver.NewCutProxy(t, strings.TrimPrefix(s.ClientURL(), "nats://"))
	nc, err := backbone.Connect("nats://"+proxy.Addr(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	// Callbacks run one after the other: the closed one runs after the
	// disconnect callback of the same close.
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	b, err := backbone.New(nc, backbone.Config{MemoryStorage: true, MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var logs testserver.Log
	live := b.NewLive(backbone.LiveConfig{Log: slog.New(slog.NewTextHandler(&logs, nil))}, func(*message.Message) {})
	defer live.Close()

	proxy.Cut()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "level=WARN"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning for a lost connection; logged:\n%s", logs.String())
		}
	}
	proxy.Restore()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "nats reconnected"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not reconnected; logged:\n%s", logs.String())
		}
	}
	before := len(logs.String())
	nc.Close()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection's closed callback never ran")
	}
	if after := logs.String()[before:]; strings.Contains(after, "level=WARN") || strings.Contains(after, "level=ERROR") {
		t.Fatalf("closing the connection logged:\n%s", after)
	}
}
