package backbone_test

import (
	"context"
	"testing"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/natsserver"
	"github.com/heraldmq/herald/pkg/testserver"
)

// BenchmarkPublishAsyncWindow measures stored messages per second through
// the backbone alone, with 64 publishes awaiting their store (an MQTT
// connection's receive maximum), on a file-backed stream.
func BenchmarkPublishAsyncWindow(b *testing.B) {
	s, err := natsserver.Start(natsserver.Config{Addr: "127.0.0.1:0", StoreDir: b.TempDir(), NoAuth: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown()
	bb, err := backbone.New(testserver.NATSConn(b, s), backbone.Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	m := &message.Message{Tenant: "bench", Topic: "a/b", Payload: make([]byte, 100), QoS: 1}
	window := make(chan *backbone.Pending, 64)
	done := make(chan struct{})
	go func() {
		for p := range window {
			if _, err := p.Wait(ctx); err != nil {
				b.Error(err)
			}
		}
		close(done)
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := bb.PublishAsync(ctx, m, backbone.PublishOptions{})
		if err != nil {
			b.Fatal(err)
		}
		window <- p
	}
	close(window)
	<-done
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSend measures messages per second through Send (no
// acknowledgement requested, MQTT QoS 0), up to the store of the last:
// one acknowledged publish at the end waits for everything before it.
func BenchmarkSend(b *testing.B) {
	s, err := natsserver.Start(natsserver.Config{Addr: "127.0.0.1:0", StoreDir: b.TempDir(), NoAuth: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown()
	bb, err := backbone.New(testserver.NATSConn(b, s), backbone.Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	m := &message.Message{Tenant: "bench", Topic: "a/b", Payload: make([]byte, 100)}
	if _, err := bb.EnsureTenant(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := bb.Send(ctx, m, backbone.PublishOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := bb.Publish(ctx, m, backbone.PublishOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
