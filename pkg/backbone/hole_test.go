package backbone_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/testserver"
)

// TestLiveRepairsBlackHoleGap black-holes a Live's NATS link long enough for
// the connection to be given up, stores messages meanwhile, heals it, and
// checks that the missed messages arrive in order, once.
func TestLiveRepairsBlackHoleGap(t *testing.T) {
	ctx := context.Background()
	s := testserver.NATS(t)
	cfg := backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20}
	pub, err := backbone.New(testserver.NATSConn(t, s), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func(i time.Duration) { backbone.PingInterval = i }(backbone.PingInterval)
	backbone.PingInterval = 100 * time.Millisecond
	proxy := newCutProxy(t, strings.TrimPrefix(s.ClientURL(), "nats://"))
	nc, err := backbone.Connect("nats://"+proxy.ln.Addr().String(), "test", nil)
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
	expect([]uint64{publish("a/0")})
	proxy.hole.Store(true)
	var missed []uint64
	for i := 1; i <= 10; i++ {
		missed = append(missed, publish(fmt.Sprintf("a/%d", i)))
		time.Sleep(50 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); nc.IsConnected(); {
		if time.Now().After(deadline) {
			t.Fatal("connection still up in the black hole")
		}
		time.Sleep(10 * time.Millisecond)
	}
	missed = append(missed, publish("a/late"))
	proxy.cut() // drop the black-holed sockets, as a peer's RST would
	proxy.restore()
	proxy.hole.Store(false)
	expect(missed)
	expect([]uint64{publish("a/after")})
}

// TestLiveRepairUnderSteadyTraffic reconnects a Live while messages are
// stored without pause, so that live messages arrive the moment the
// subscriptions are back, and checks the handler still gets every stored
// message once, in stream order.
func TestLiveRepairUnderSteadyTraffic(t *testing.T) {
	ctx := context.Background()
	s := testserver.NATS(t)
	cfg := backbone.Config{MemoryStorage: true, MaxBytes: 64 << 20}
	pub, err := backbone.New(testserver.NATSConn(t, s), cfg)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, strings.TrimPrefix(s.ClientURL(), "nats://"))
	nc, err := backbone.Connect("nats://"+proxy.ln.Addr().String(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := backbone.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 1<<16)
	live := sub.NewLive(backbone.LiveConfig{}, func(m *message.Message) { got <- m.Seq })
	defer live.Close()
	if _, err := live.Watch("t1", "a/#"); err != nil {
		t.Fatal(err)
	}
	if err := live.Flush(ctx); err != nil {
		t.Fatal(err)
	}
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
			pos, err := pub.Publish(ctx, &message.Message{Tenant: "t1", Topic: fmt.Sprintf("a/%d", i%7)}, backbone.PublishOptions{})
			if err == nil {
				seqs = append(seqs, pos.Seq)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for round := 0; round < 3; round++ {
		time.Sleep(200 * time.Millisecond)
		proxy.cut()
		time.Sleep(300 * time.Millisecond)
		proxy.restore()
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	want := <-done
	for i, w := range want {
		select {
		case g := <-got:
			if g != w {
				t.Fatalf("message %d of %d: got seq %d, want %d", i, len(want), g, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d of %d (seq %d) never arrived", i, len(want), w)
		}
	}
	select {
	case g := <-got:
		t.Fatalf("unexpected seq %d", g)
	case <-time.After(300 * time.Millisecond):
	}
	t.Logf("%d messages across 3 reconnects, all in order", len(want))
}
