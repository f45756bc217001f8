package hub

import (
	"context"
	"fmt"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
)

// sharedInterest is a fake backbone interest that records queue-group
// interest and lets the test play NATS choosing this edge for a message.
type sharedInterest struct {
	countingInterest
	deliver map[string]func(*message.Message)
	refs    map[string]int
}

func (s *sharedInterest) WatchShared(tenant, filter, queue string, deliver func(*message.Message)) (func(), error) {
	s.deliver[queue] = deliver
	s.refs[queue]++
	return func() { s.refs[queue]--; delete(s.deliver, queue) }, nil
}

// TestSharedRoundRobin ensures a shared group holds one queue interest per
// edge, hands each message to one local member in turn, ignores plain
// Dispatch, drops messages its filter does not match exactly, and releases
// the interest with its last member.
func TestSharedRoundRobin(t *testing.T) {
	in := &sharedInterest{countingInterest: countingInterest{refs: map[string]int{}},
		deliver: map[string]func(*message.Message){}, refs: map[string]int{}}
	h := New(in)
	a, b, plain := &recorder{}, &recorder{}, &recorder{}
	sa := &Subscription{Tenant: "t", Filter: "s/#", Group: "g", Subscriber: a}
	sb := &Subscription{Tenant: "t", Filter: "s/#", Group: "g", Subscriber: b}
	sp := &Subscription{Tenant: "t", Filter: "s/#", Subscriber: plain}
	for _, s := range []*Subscription{sa, sb, sp} {
		if err := h.Subscribe(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	if len(in.deliver) != 1 || h.Len() != 3 {
		t.Fatalf("queues %d, subscriptions %d; want 1 queue, 3 subscriptions", len(in.deliver), h.Len())
	}
	var deliver func(*message.Message)
	for _, d := range in.deliver {
		deliver = d
	}
	for i := range 4 {
		m := &message.Message{Tenant: "t", Topic: fmt.Sprintf("s/%d", i)}
		deliver(m)
		h.Dispatch(m)
	}
	deliver(&message.Message{Tenant: "t", Topic: "$s/x"})
	if len(a.got) != 2 || len(b.got) != 2 || len(plain.got) != 4 {
		t.Fatalf("members got %v and %v, plain %v", a.got, b.got, plain.got)
	}
	h.Unsubscribe(sa)
	h.Unsubscribe(sb)
	if len(in.deliver) != 0 || h.Len() != 1 {
		t.Fatalf("queue interest kept after the last member left (%d), subscriptions %d", len(in.deliver), h.Len())
	}
}

// TestSharedUnsupported ensures a hub whose interest cannot balance refuses
// shared subscriptions.
func TestSharedUnsupported(t *testing.T) {
	h := New(&countingInterest{refs: map[string]int{}})
	err := h.Subscribe(context.Background(), &Subscription{Tenant: "t", Filter: "x", Group: "g", Subscriber: &recorder{}})
	if err != ErrSharedUnsupported {
		t.Fatalf("got %v", err)
	}
}
