package backbone_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/nats-io/nats.go"
)

// cutProxy forwards TCP to a NATS server and can cut every connection and
// refuse new ones, as when the server a client is attached to goes away.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns []net.Conn
	// hole drops every byte both ways without closing anything.
	hole atomic.Bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(s, c)
		go p.pipe(c, s)
	}
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.hole.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// TestLiveRepairsReconnectGap cuts a Live's NATS connection while messages
// are stored, and checks that after the reconnect the missed messages of the
// watched filter reach the handler, in stream order, before later live ones,
// and that none arrives twice. Without the repair core NATS loses them.
func TestLiveRepairsReconnectGap(t *testing.T) {
	ctx := context.Background()
	s := testserver.NATS(t)
	cfg := backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20}
	pub, err := backbone.New(testserver.NATSConn(t, s), cfg)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, strings.TrimPrefix(s.ClientURL(), "nats://"))
	nc, err := nats.Connect("nats://"+proxy.ln.Addr().String(), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := backbone.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *message.Message, 64)
	live := sub.NewLive(backbone.LiveConfig{}, func(m *message.Message) { got <- m })
	defer live.Close()
	if _, err := live.Watch("t1", "a/#"); err != nil {
		t.Fatal(err)
	}
	if err := live.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	publish := func(topic string) uint64 {
		t.Helper()
		pos, err := pub.Publish(ctx, &message.Message{Tenant: "t1", Topic: topic, Payload: []byte(topic)}, backbone.PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return pos.Seq
	}
	var want []uint64
	want = append(want, publish("a/0"))
	expect := func(seqs []uint64) {
		t.Helper()
		for _, w := range seqs {
			select {
			case m := <-got:
				if m.Seq != w {
					t.Fatalf("got seq %d (%s), want %d", m.Seq, m.Topic, w)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("seq %d never arrived", w)
			}
		}
	}
	expect(want)

	proxy.cut()
	for deadline := time.Now().Add(5 * time.Second); nc.IsConnected(); {
		if time.Now().After(deadline) {
			t.Fatal("connection still up after the cut")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var missed []uint64
	for i := 1; i <= 10; i++ {
		missed = append(missed, publish(fmt.Sprintf("a/%d", i)))
		publish(fmt.Sprintf("b/%d", i)) // not watched: must not be handed over
	}
	proxy.restore()
	expect(missed)
	// The next live message follows, with nothing handed over twice.
	expect([]uint64{publish("a/after")})
	select {
	case m := <-got:
		t.Fatalf("unexpected message seq %d (%s)", m.Seq, m.Topic)
	case <-time.After(300 * time.Millisecond):
	}
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
	proxy := newCutProxy(t, strings.TrimPrefix(s.ClientURL(), "nats://"))
	defer func(i time.Duration) { backbone.PingInterval = i }(backbone.PingInterval)
	backbone.PingInterval = 100 * time.Millisecond
	nc, err := backbone.Connect("nats://"+proxy.ln.Addr().String(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ready := backbone.Connected(nc)
	if err := ready(context.Background()); err != nil {
		t.Fatalf("not ready at start: %v", err)
	}
	proxy.hole.Store(true)
	start := time.Now()
	for ready(context.Background()) == nil {
		if time.Since(start) > 5*time.Second {
			t.Fatal("a black-holed link still reported up after 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("black hole noticed after %v", time.Since(start).Round(time.Millisecond))
	proxy.hole.Store(false)
	for ready(context.Background()) != nil {
		if time.Since(start) > 10*time.Second {
			t.Fatal("not reconnected after the heal")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
