package backbone_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/testserver"
)

// TestRangeOnClusterReadsEverything ensures that on a three-server NATS
// cluster with three stream replicas, a Range started right after an
// acknowledged publish yields every matching message up to it, although
// the consumer reading may be led by a replica that has not stored the
// newest ones yet (reliability.md, finding 9). A Range that fails is
// retried, as its callers do; one that returns short fails the test.
func TestRangeOnClusterReadsEverything(t *testing.T) {
	ctx := context.Background()
	srvs := testserver.NATSCluster(t, 3)
	nc := testserver.NATSConn(t, srvs[1])
	b, err := backbone.New(nc, backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(tp string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := b.Publish(ctx, &message.Message{Tenant: "t9", Topic: tp, Payload: []byte("x")}, backbone.PublishOptions{})
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	want := 0
	for r := 0; r < 150; r++ {
		for i := 0; i < 20; i++ {
			tp := fmt.Sprintf("other/%d", i)
			if i%7 == 0 {
				tp, want = fmt.Sprintf("hit/%d", i), want+1
			}
			publish(tp)
		}
		publish("other/sync")
		var got int
		deadline := time.Now().Add(10 * time.Second)
		for {
			got = 0
			err := b.Range(ctx, "t9", []string{"hit/#"}, 0, 0, func(*message.Message) error { got++; return nil })
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %v", r, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got != want {
			t.Fatalf("round %d: range read %d of the %d matching messages", r, got, want)
		}
	}
}
