package backbone_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/nats-io/nats-server/v2/server"
)

// TestSendStoresInOrderWithPublishAsync ensures a message sent without an
// acknowledgement request is stored and republished all the same, and
// that Send and PublishAsync from one goroutine keep their order in the
// stream, with a message id still deduplicating.
func TestSendStoresInOrderWithPublishAsync(t *testing.T) {
	ctx := context.Background()
	b := newBackbone(t)
	got := make(chan *message.Message, 64)
	live := b.NewLive(backbone.LiveConfig{}, func(m *message.Message) { got <- m })
	defer live.Close()
	if _, err := live.Watch("t1", "o/#"); err != nil {
		t.Fatal(err)
	}
	if err := live.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var last *backbone.Pending
	const n = 20
	for i := range n {
		m := &message.Message{Tenant: "t1", Topic: fmt.Sprintf("o/%d", i%3), Payload: []byte(fmt.Sprint(i))}
		if i%5 == 4 {
			m.QoS = 1
			p, err := b.PublishAsync(ctx, m, backbone.PublishOptions{})
			if err != nil {
				t.Fatal(err)
			}
			last = p
			continue
		}
		if err := b.Send(ctx, m, backbone.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The same message id twice: stored once.
	for range 2 {
		if err := b.Send(ctx, &message.Message{Tenant: "t1", Topic: "o/dup", Payload: []byte("d")}, backbone.PublishOptions{MsgID: "dup-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := last.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m := <-got
		if string(m.Payload) != fmt.Sprint(i) || m.Seq != uint64(i+1) {
			t.Fatalf("message %d: %q seq %d", i, m.Payload, m.Seq)
		}
	}
	if m := <-got; m.Topic != "o/dup" {
		t.Fatalf("after the ordered ones: %+v", m)
	}
	// A marker acknowledged after the duplicate proves it was dropped.
	p, err := b.PublishAsync(ctx, &message.Message{Tenant: "t1", Topic: "o/end", QoS: 1}, backbone.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pos, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pos.Seq != n+2 {
		t.Fatalf("end stored at %d, want %d: the duplicate was stored", pos.Seq, n+2)
	}
}

// TestSendWaitsForJetStreamInsteadOfLosing ensures Send slows its callers
// while JetStream falls behind rather than overflowing the stream's ingest
// queue, past which JetStream drops what arrives without telling a sender
// that asked for no acknowledgement: every message of a flood from several
// goroutines is stored, with a server whose ingest queue holds 100.
func TestSendWaitsForJetStreamInsteadOfLosing(t *testing.T) {
	ctx := context.Background()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		StreamMaxBufferedMsgs: 100, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	b, err := backbone.New(testserver.NATSConn(t, s), backbone.Config{MaxPendingPublishes: 64})
	if err != nil {
		t.Fatal(err)
	}
	const senders, n = 4, 5000
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for k := range n {
				m := &message.Message{Tenant: "t1", Topic: fmt.Sprintf("f/%d", i), Payload: []byte(fmt.Sprint(k))}
				if err := b.Send(ctx, m, backbone.PublishOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var last uint64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st, err := b.State(ctx, "t1")
		if err != nil {
			t.Fatal(err)
		}
		if last = st.LastSeq; last == senders*n {
			return
		}
	}
	t.Fatalf("stored %d of %d messages", last, senders*n)
}
