package telemetry

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Backbone records JetStream publishes: their round-trip latency and, for
// sampled messages, a "jetstream.store" span. Nil-safe.
type Backbone struct {
	tracer  trace.Tracer
	tracing bool
	tenants *TenantLabels
	latency metric.Float64Histogram

	mu   sync.RWMutex
	sets map[[2]string][]metric.RecordOption // tenant label, result
}

// NewBackbone creates the backbone instruments.
func NewBackbone(p Providers) *Backbone {
	b := &Backbone{tracer: p.tracer(), tracing: p.tracing(), tenants: p.tenants(), sets: map[[2]string][]metric.RecordOption{}}
	b.latency, _ = p.meter().Float64Histogram(MetricBackbonePublishDuration, metric.WithUnit("s"),
		metric.WithDescription("JetStream publish round trip, send to acknowledgement."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	return b
}

// StoreOp is one publish in flight, from StartStore to EndStore.
type StoreOp struct {
	start  time.Time
	tenant string
	span   trace.Span
}

// StartStore begins timing a publish of tenant's; a "jetstream.store" span
// is started only under a sampled span of ctx.
func (b *Backbone) StartStore(ctx context.Context, tenant string) StoreOp {
	if b == nil {
		return StoreOp{}
	}
	op := StoreOp{start: time.Now(), tenant: tenant}
	if b.tracing && trace.SpanContextFromContext(ctx).IsSampled() {
		_, op.span = b.tracer.Start(ctx, "jetstream.store", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("herald.tenant", tenant)))
	}
	return op
}

// EndStore records the publish's outcome.
func (b *Backbone) EndStore(op StoreOp, err error) {
	if b == nil || op.start.IsZero() {
		return
	}
	result := ResultOK
	if err != nil {
		result = ResultError
	}
	b.latency.Record(context.Background(), time.Since(op.start).Seconds(), b.set(op.tenant, result)...)
	if op.span != nil {
		if err != nil {
			op.span.RecordError(err)
			op.span.SetStatus(codes.Error, err.Error())
		}
		op.span.End()
	}
}

func (b *Backbone) set(tenant, result string) []metric.RecordOption {
	k := [2]string{b.tenants.Label(tenant), result}
	b.mu.RLock()
	s := b.sets[k]
	b.mu.RUnlock()
	if s != nil {
		return s
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if s = b.sets[k]; s == nil {
		s = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(
			attribute.String(LabelTenant, k[0]), attribute.String(LabelResult, k[1])))}
		b.sets[k] = s
	}
	return s
}
