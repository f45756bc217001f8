package telemetry_test

import (
	"context"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/telemetry/telemetrytest"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkEdgeMessage measures what one message costs the edge's
// telemetry on its way in and out: metrics only (no OTLP endpoint), and
// with a tracer that samples nothing.
func BenchmarkEdgeMessage(b *testing.B) {
	r := telemetrytest.New(b, "herald-edge", "bench")
	for _, bc := range []struct {
		name   string
		tracer bool
	}{{"metrics", false}, {"unsampled", true}} {
		b.Run(bc.name, func(b *testing.B) {
			p := r.Providers()
			p.Tracer = nil
			if bc.tracer {
				p.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSyncer(tracetest.NewNoopExporter()))
			}
			e := telemetry.NewEdge(p, nil, nil)
			m := &message.Message{Tenant: "t1", Topic: "a/b", Payload: make([]byte, 100), Time: time.Now()}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_, span, _ := e.StartPublish(ctx, telemetry.ProtocolMQTT, m, "")
				e.EndPublish(span, nil)
				e.EndDeliver(e.StartDeliver(m), 1)
				e.Delivered(telemetry.ProtocolSSE, m, true)
			}
		})
	}
}
