package backbone_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
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
