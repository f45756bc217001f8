package mqtt

import (
	"context"
	"strconv"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/mochi-mqtt/server/v2/packets"
)

// BenchmarkLiveFanOut measures the live delivery path of one message to
// subs MQTT connections of an edge: the hub's dispatch into each
// connection's feed, and each connection's writer taking it (packet
// identifier and acknowledgement included at QoS 1), without the network
// write and its encoding (BenchmarkEncodePublish).
func BenchmarkLiveFanOut(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		for _, subs := range []int{1, 100, 1000} {
			b.Run("qos"+strconv.Itoa(int(qos))+"/"+strconv.Itoa(subs), func(b *testing.B) {
				ctx := context.Background()
				n := edgetest.MemoryNode(b)
				s, err := New(Config{SoleEdge: true}, n, Deps{})
				if err != nil {
					b.Fatal(err)
				}
				conns := make([]*conn, subs)
				for i := range conns {
					c := newConn(s, nil, ctx)
					c.done, c.window, c.tenant = true, 100, edgetest.Tenant
					c.adm = edgetest.Admit(b, n)
					sub, err := c.subscribe(ctx, packets.Subscription{Filter: "sensors/+/temp", Qos: 1})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := sub.Replay(ctx, c.queueRetained); err != nil {
						b.Fatal(err)
					}
					b.Cleanup(c.feed.Close)
					conns[i] = c
				}
				m := &message.Message{Tenant: edgetest.Tenant, Topic: "sensors/kitchen/temp", Payload: make([]byte, 100), QoS: qos}
				var batch []delivery
				b.ReportAllocs()
				for b.Loop() {
					m.Seq++
					n.Dispatch(m)
					for _, c := range conns {
						c.mu.Lock()
						_, batch = c.takeLocked(batch[:0])
						for i := range batch {
							if batch[i].qos > 0 {
								c.completeOutboundLocked(batch[i].id) // the PUBACK
							}
						}
						c.mu.Unlock()
						if len(batch) != 1 {
							b.Fatalf("took %d deliveries", len(batch))
						}
					}
				}
			})
		}
	}
}
