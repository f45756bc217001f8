// Package telemetrytest gives tests Providers that record into memory: an
// always-sampling TracerProvider over an in-memory span exporter and a
// MeterProvider over a ManualReader, with lookups of what they recorded.
package telemetrytest

import (
	"context"
	"testing"

	"github.com/heraldmq/herald/pkg/telemetry"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Recorder holds one service's in-memory telemetry.
type Recorder struct {
	Spans     *tracetest.InMemoryExporter
	Reader    *sdkmetric.ManualReader
	providers telemetry.Providers
}

// New returns a Recorder whose spans and metrics carry service.name
// service and service.instance.id instance; both providers shut down with
// the test. Spans are exported synchronously, so they are visible as soon
// as they end.
func New(t testing.TB, service, instance string) *Recorder {
	t.Helper()
	res := resource.NewWithAttributes("", attribute.String("service.name", service), attribute.String("service.instance.id", instance))
	r := &Recorder{Spans: tracetest.NewInMemoryExporter(), Reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSyncer(r.Spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(r.Reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	r.providers = telemetry.Providers{Tracer: tp, Meter: mp, Tenants: telemetry.NewTenantLabels(telemetry.DefaultTenantLimit)}
	return r
}

// Providers returns what components under test are given.
func (r *Recorder) Providers() telemetry.Providers { return r.providers }

// Collect reads the current metrics.
func (r *Recorder) Collect(t testing.TB) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	return rm
}

// Sum returns the value of the counter, up-down counter or gauge name at
// the data point whose attributes include every one of attrs, and whether
// such a point exists; the points that match are added up.
func (r *Recorder) Sum(t testing.TB, name string, attrs ...attribute.KeyValue) (float64, bool) {
	t.Helper()
	var total float64
	found := false
	for _, sm := range r.Collect(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if has(p.Attributes, attrs) {
						total += float64(p.Value)
						found = true
					}
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					if has(p.Attributes, attrs) {
						total += p.Value
						found = true
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if has(p.Attributes, attrs) {
						total += float64(p.Value)
						found = true
					}
				}
			}
		}
	}
	return total, found
}

// HistogramCount returns the number of recordings of histogram name at the
// data points whose attributes include attrs.
func (r *Recorder) HistogramCount(t testing.TB, name string, attrs ...attribute.KeyValue) uint64 {
	t.Helper()
	var n uint64
	for _, sm := range r.Collect(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if d, ok := m.Data.(metricdata.Histogram[float64]); ok {
				for _, p := range d.DataPoints {
					if has(p.Attributes, attrs) {
						n += p.Count
					}
				}
			}
		}
	}
	return n
}

// SpansNamed returns the ended spans called name.
func (r *Recorder) SpansNamed(name string) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range r.Spans.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func has(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		v, ok := set.Value(kv.Key)
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}
