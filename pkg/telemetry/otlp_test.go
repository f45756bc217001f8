package telemetry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	metricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// collector counts what an OTLP/gRPC receiver got.
type collector struct {
	tracepb.UnimplementedTraceServiceServer
	mu      sync.Mutex
	spans   int
	metrics int
}

func (c *collector) Export(_ context.Context, r *tracepb.ExportTraceServiceRequest) (*tracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range r.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			c.spans += len(ss.Spans)
		}
	}
	return &tracepb.ExportTraceServiceResponse{}, nil
}

type metricsCollector struct {
	metricpb.UnimplementedMetricsServiceServer
	c *collector
}

func (m metricsCollector) Export(_ context.Context, r *metricpb.ExportMetricsServiceRequest) (*metricpb.ExportMetricsServiceResponse, error) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	for _, rm := range r.ResourceMetrics {
		for _, sm := range rm.ScopeMetrics {
			m.c.metrics += len(sm.Metrics)
		}
	}
	return &metricpb.ExportMetricsServiceResponse{}, nil
}

// record makes one sampled publish and its metrics, then flushes.
func record(t *testing.T, cfg telemetry.Config) {
	t.Helper()
	one := 1.0
	cfg.SamplerArg, cfg.Sampler = &one, telemetry.SamplerParentBasedTraceIDRatio
	tel, err := telemetry.Setup(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := telemetry.NewEdge(tel.Providers(), nil, nil)
	_, span, tp := e.StartPublish(context.Background(), telemetry.ProtocolHTTPAPI, &message.Message{Tenant: "t1", Topic: "a"}, "")
	e.EndPublish(span, nil)
	if tp == "" {
		t.Error("ratio 1 did not sample")
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestOTLPExport ensures Setup exports spans and metrics over both OTLP
// protocols to the configured endpoint, and flushes them on Shutdown.
func TestOTLPExport(t *testing.T) {
	t.Run("grpc", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c := &collector{}
		s := grpc.NewServer()
		tracepb.RegisterTraceServiceServer(s, c)
		metricpb.RegisterMetricsServiceServer(s, metricsCollector{c: c})
		go func() { _ = s.Serve(l) }()
		defer s.Stop()
		record(t, telemetry.Config{ServiceName: "herald-test", Endpoint: "http://" + l.Addr().String(), Protocol: telemetry.ProtocolGRPC})
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.spans != 1 || c.metrics == 0 {
			t.Errorf("received %d spans and %d metrics, want 1 and some", c.spans, c.metrics)
		}
	})
	t.Run("http/protobuf", func(t *testing.T) {
		var mu sync.Mutex
		got := map[string]int{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			got[r.URL.Path] += len(b)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		defer srv.Close()
		record(t, telemetry.Config{ServiceName: "herald-test", Endpoint: srv.URL, Protocol: telemetry.ProtocolHTTP})
		mu.Lock()
		defer mu.Unlock()
		if got["/v1/traces"] == 0 || got["/v1/metrics"] == 0 {
			t.Errorf("received %v, want bodies at /v1/traces and /v1/metrics", got)
		}
	})
}
