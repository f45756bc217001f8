package telemetry

import (
	"context"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// SessionStats is what the session service reports at each collection.
type SessionStats struct {
	TenantsOwned    int
	RetainedDropped uint64
	StoreLosses     uint64
	WillsPublished  uint64
	// Sessions maps owned tenants to their stored session counts; nil
	// when not counted.
	Sessions map[string]int
}

// Session records the session service's work: applied messages and batch
// latency per tenant, consumer lag, and a "session.apply" span for each
// applied message that carries a sampled trace context. Nil-safe.
type Session struct {
	tracer  trace.Tracer
	tracing bool
	tenants *TenantLabels

	applied  metric.Int64Counter
	duration metric.Float64Histogram
	observe  metric.Registration

	mu       sync.Mutex
	pending  map[string]int64 // by tenant label
	retained map[string]retainedUsage
}

// retainedUsage is one tenant's retained messages as its last batch left
// them.
type retainedUsage struct {
	label string
	n     int64
	bytes int64
}

// NewSession creates the session instruments; stats, when set, is called
// at each collection for the service-wide gauges and counters.
func NewSession(p Providers, stats func(ctx context.Context) SessionStats) *Session {
	m := p.meter()
	s := &Session{tracer: p.tracer(), tracing: p.tracing(), tenants: p.tenants(), pending: map[string]int64{},
		retained: map[string]retainedUsage{}}
	s.applied, _ = m.Int64Counter(MetricSessionMessagesApplied, metric.WithUnit("{message}"), metric.WithDescription("Messages applied to the store."))
	s.duration, _ = m.Float64Histogram(MetricSessionApplyDuration, metric.WithUnit("s"), metric.WithDescription("Store write of one batch."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	pending, _ := m.Int64ObservableGauge(MetricSessionConsumerPending, metric.WithUnit("{message}"), metric.WithDescription("Messages not yet fetched (consumer lag)."))
	owned, _ := m.Int64ObservableGauge(MetricSessionTenantsOwned, metric.WithUnit("{tenant}"), metric.WithDescription("Tenants this replica owns."))
	sessions, _ := m.Int64ObservableGauge(MetricSessionSessions, metric.WithUnit("{session}"), metric.WithDescription("Persistent sessions stored."))
	dropped, _ := m.Int64ObservableCounter(MetricSessionRetainedDropped, metric.WithUnit("{message}"), metric.WithDescription("Retained messages refused by limits."))
	losses, _ := m.Int64ObservableCounter(MetricSessionStoreLosses, metric.WithUnit("{event}"), metric.WithDescription("Detected losses of stored state."))
	wills, _ := m.Int64ObservableCounter(MetricSessionWillsPublished, metric.WithUnit("{message}"), metric.WithDescription("Wills published."))
	retained, _ := m.Int64ObservableGauge(MetricSessionRetained, metric.WithUnit("{message}"), metric.WithDescription("Retained messages stored, of the tenants this replica owns."))
	retainedSize, _ := m.Int64ObservableGauge(MetricSessionRetainedSize, metric.WithUnit("By"), metric.WithDescription("Encoded size of the retained messages stored, of the tenants this replica owns."))
	s.observe, _ = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		s.mu.Lock()
		for t, n := range s.pending {
			o.ObserveInt64(pending, n, metric.WithAttributes(attribute.String(LabelTenant, t)))
		}
		retainedBy := map[string]retainedUsage{}
		for _, u := range s.retained {
			sum := retainedBy[u.label]
			sum.n += u.n
			sum.bytes += u.bytes
			retainedBy[u.label] = sum
		}
		s.mu.Unlock()
		for l, u := range retainedBy {
			o.ObserveInt64(retained, u.n, metric.WithAttributes(attribute.String(LabelTenant, l)))
			o.ObserveInt64(retainedSize, u.bytes, metric.WithAttributes(attribute.String(LabelTenant, l)))
		}
		if stats == nil {
			return nil
		}
		st := stats(ctx)
		o.ObserveInt64(owned, int64(st.TenantsOwned))
		o.ObserveInt64(dropped, int64(st.RetainedDropped))
		o.ObserveInt64(losses, int64(st.StoreLosses))
		o.ObserveInt64(wills, int64(st.WillsPublished))
		byLabel := map[string]int64{}
		for t, n := range st.Sessions {
			byLabel[s.tenants.Label(t)] += int64(n)
		}
		for t, n := range byLabel {
			o.ObserveInt64(sessions, n, metric.WithAttributes(attribute.String(LabelTenant, t)))
		}
		return nil
	}, pending, owned, sessions, dropped, losses, wills, retained, retainedSize)
	return s
}

// Close unregisters the observable instruments.
func (s *Session) Close() {
	if s != nil && s.observe != nil {
		_ = s.observe.Unregister()
	}
}

// Retained records a tenant's retained messages and their size as its last
// applied batch left them.
func (s *Session) Retained(tenant string, n int, bytes int64) {
	if s == nil {
		return
	}
	l := s.tenants.Label(tenant)
	s.mu.Lock()
	s.retained[tenant] = retainedUsage{label: l, n: int64(n), bytes: bytes}
	s.mu.Unlock()
}

// Pending records the tenant consumer's lag, as the last fetched message's
// metadata reports it. Tenants sharing the OtherTenant label report the
// last one's value.
func (s *Session) Pending(tenant string, n uint64) {
	if s == nil {
		return
	}
	l := s.tenants.Label(tenant)
	s.mu.Lock()
	s.pending[l] = int64(n)
	s.mu.Unlock()
}

// Released forgets the lag of a tenant this replica no longer owns.
func (s *Session) Released(tenant string) {
	if s == nil {
		return
	}
	l := s.tenants.Label(tenant)
	s.mu.Lock()
	delete(s.retained, tenant)
	if l != OtherTenant {
		delete(s.pending, l)
	}
	s.mu.Unlock()
}

// Applied records a batch of tenant's applied to the store between start
// and now, with a "session.apply" span (over that interval) for each
// message carrying a sampled trace context.
func (s *Session) Applied(tenant string, msgs []*message.Message, start time.Time) {
	if s == nil || len(msgs) == 0 {
		return
	}
	ctx := context.Background()
	attrs := metric.WithAttributes(attribute.String(LabelTenant, s.tenants.Label(tenant)))
	s.applied.Add(ctx, int64(len(msgs)), attrs)
	s.duration.Record(ctx, time.Since(start).Seconds(), attrs)
	if !s.tracing {
		return
	}
	end := time.Now()
	for _, m := range msgs {
		if m.TraceParent == "" {
			continue
		}
		_, span := s.tracer.Start(ContextWithTraceParent(ctx, m.TraceParent), "session.apply",
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(start),
			trace.WithAttributes(attribute.String("messaging.system", "herald"), attribute.String("herald.tenant", tenant),
				attribute.Int64("herald.seq", int64(m.Seq)), attribute.Int("herald.batch", len(msgs))))
		span.End(trace.WithTimestamp(end))
	}
}
