package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/telemetry/telemetrytest"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// TestTenantLabels ensures the first N tenants keep their own label, later
// ones share OtherTenant, and a label never changes once given.
func TestTenantLabels(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		seen  []string
		want  []string
	}{
		{"under the limit", 3, []string{"a", "b", "a"}, []string{"a", "b", "a"}},
		{"past the limit", 2, []string{"a", "b", "c", "a", "d", "b"}, []string{"a", "b", telemetry.OtherTenant, "a", telemetry.OtherTenant, "b"}},
		{"zero limit", 0, []string{"a", "b"}, []string{telemetry.OtherTenant, telemetry.OtherTenant}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := telemetry.NewTenantLabels(tc.limit)
			for i, tenant := range tc.seen {
				if got := l.Label(tenant); got != tc.want[i] {
					t.Errorf("Label(%q) #%d = %q, want %q", tenant, i, got, tc.want[i])
				}
			}
			if l.Len() > tc.limit {
				t.Errorf("Len = %d > limit %d", l.Len(), tc.limit)
			}
		})
	}
}

// TestConfigValidate ensures bad settings are refused and defaults pass.
func TestConfigValidate(t *testing.T) {
	ratio := func(f float64) *float64 { return &f }
	for _, tc := range []struct {
		name string
		cfg  telemetry.Config
		ok   bool
	}{
		{"defaults", telemetry.Config{}, true},
		{"grpc endpoint", telemetry.Config{Endpoint: "http://127.0.0.1:4317"}, true},
		{"http endpoint", telemetry.Config{Endpoint: "https://collector:4318", Protocol: telemetry.ProtocolHTTP}, true},
		{"endpoint without scheme", telemetry.Config{Endpoint: "collector:4317"}, false},
		{"unknown protocol", telemetry.Config{Protocol: "thrift"}, false},
		{"unknown sampler", telemetry.Config{Sampler: "sometimes"}, false},
		{"ratio above 1", telemetry.Config{Sampler: telemetry.SamplerTraceIDRatio, SamplerArg: ratio(2)}, false},
		{"ratio for always_on ignored", telemetry.Config{Sampler: telemetry.SamplerAlwaysOn, SamplerArg: ratio(2)}, true},
		{"no tenant labels", telemetry.Config{TenantLimit: -1}, true},
		{"negative export interval", telemetry.Config{ExportInterval: -time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestFromEnv ensures the standard variables map onto the config.
func TestFromEnv(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_TRACES_SAMPLER", "traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "5000")
	c, err := telemetry.FromEnv("herald-edge")
	if err != nil {
		t.Fatal(err)
	}
	if c.ServiceName != "herald-edge" || c.Endpoint != "http://127.0.0.1:4318" || c.Protocol != telemetry.ProtocolHTTP ||
		c.Sampler != telemetry.SamplerTraceIDRatio || c.SamplerArg == nil || *c.SamplerArg != 0.25 || c.ExportInterval != 5*time.Second {
		t.Errorf("FromEnv = %+v", c)
	}
	t.Setenv("OTEL_SDK_DISABLED", "true")
	if c, _ := telemetry.FromEnv("x"); c.Endpoint != "" {
		t.Errorf("OTEL_SDK_DISABLED=true kept endpoint %q", c.Endpoint)
	}
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "half")
	if _, err := telemetry.FromEnv("x"); err == nil {
		t.Error("a malformed sampler ratio was accepted")
	}
}

// TestLogHandler ensures records logged under a span carry its ids and
// others do not.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, nil))).With("svc", "test")
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	log.InfoContext(ctx, "inside")
	span.End()
	log.InfoContext(context.Background(), "outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %q", len(lines), buf.String())
	}
	var in, out map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &out); err != nil {
		t.Fatal(err)
	}
	if in["trace_id"] != span.SpanContext().TraceID().String() || in["span_id"] != span.SpanContext().SpanID().String() || in["svc"] != "test" {
		t.Errorf("record under a span = %v", in)
	}
	if _, ok := out["trace_id"]; ok {
		t.Errorf("record without a span has a trace id: %v", out)
	}
}

// TestTraceParent ensures a sampled context yields a traceparent that
// parses back to it, and an unsampled one yields none.
func TestTraceParent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sampler sdktrace.Sampler
		want    bool
	}{
		{"sampled", sdktrace.AlwaysSample(), true},
		{"unsampled", sdktrace.NeverSample(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(tc.sampler))
			ctx, span := tp.Tracer("t").Start(context.Background(), "op")
			defer span.End()
			tp2 := telemetry.TraceParent(ctx)
			if (tp2 != "") != tc.want {
				t.Fatalf("TraceParent = %q, want present=%v", tp2, tc.want)
			}
			if !tc.want {
				return
			}
			sc := trace.SpanContextFromContext(telemetry.ContextWithTraceParent(context.Background(), tp2))
			if sc.TraceID() != span.SpanContext().TraceID() || sc.SpanID() != span.SpanContext().SpanID() || !sc.IsRemote() {
				t.Errorf("round trip = %v, want %v", sc, span.SpanContext())
			}
		})
	}
	if got := telemetry.ContextWithTraceParent(context.Background(), "garbage"); trace.SpanContextFromContext(got).IsValid() {
		t.Error("a malformed traceparent produced a span context")
	}
}

// TestEdgeRecords ensures the edge instruments count connections, messages
// and bytes per protocol and tenant, and that publish and deliver spans link.
func TestEdgeRecords(t *testing.T) {
	r := telemetrytest.New(t, "herald-edge", "a")
	e := telemetry.NewEdge(r.Providers(), func() int { return 3 }, nil)
	defer e.Close()
	e.Connected(telemetry.ProtocolMQTT, "t1", telemetry.ResultAccepted)
	e.Connected(telemetry.ProtocolMQTT, "t1", telemetry.ResultAccepted)
	e.Connected(telemetry.ProtocolMQTT, "t1", telemetry.ResultConnectionLimit)
	e.Disconnected(telemetry.ProtocolMQTT, "t1", telemetry.ReasonClosed)

	m := &message.Message{Tenant: "t1", Topic: "a/b", Payload: []byte("hello")}
	_, span, tp := e.StartPublish(context.Background(), telemetry.ProtocolMQTT, m, "")
	e.EndPublish(span, nil)
	if tp == "" {
		t.Fatal("a sampled publish carries no traceparent")
	}
	live := &message.Message{Tenant: "t1", Topic: "a/b", Payload: []byte("hello"), TraceParent: tp, Time: time.Now()}
	d := e.StartDeliver(live)
	e.Delivered(telemetry.ProtocolSSE, live, true)
	e.EndDeliver(d, 1)

	mqtt := []attribute.KeyValue{attribute.String(telemetry.LabelProtocol, telemetry.ProtocolMQTT), attribute.String(telemetry.LabelTenant, "t1")}
	sse := []attribute.KeyValue{attribute.String(telemetry.LabelProtocol, telemetry.ProtocolSSE), attribute.String(telemetry.LabelTenant, "t1")}
	for _, tc := range []struct {
		name  string
		attrs []attribute.KeyValue
		want  float64
	}{
		{telemetry.MetricEdgeConnections, mqtt, 1},
		{telemetry.MetricEdgeConnects, append(mqtt, attribute.String(telemetry.LabelResult, telemetry.ResultAccepted)), 2},
		{telemetry.MetricEdgeConnects, append(mqtt, attribute.String(telemetry.LabelResult, telemetry.ResultConnectionLimit)), 1},
		{telemetry.MetricEdgeDisconnects, mqtt, 1},
		{telemetry.MetricEdgeMessagesReceived, mqtt, 1},
		{telemetry.MetricEdgeBytesReceived, mqtt, 5},
		{telemetry.MetricEdgeMessagesSent, sse, 1},
		{telemetry.MetricEdgeBytesSent, sse, 5},
		{telemetry.MetricEdgeSubscriptions, nil, 3},
	} {
		if got, _ := r.Sum(t, tc.name, tc.attrs...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.attrs, got, tc.want)
		}
	}
	if n := r.HistogramCount(t, telemetry.MetricEdgeDeliveryDuration, sse...); n != 1 {
		t.Errorf("delivery latency count = %d, want 1", n)
	}
	pub, del := r.SpansNamed("publish"), r.SpansNamed("deliver")
	if len(pub) != 1 || len(del) != 1 {
		t.Fatalf("spans: %d publish, %d deliver", len(pub), len(del))
	}
	if del[0].Parent.SpanID() != pub[0].SpanContext.SpanID() || del[0].SpanContext.TraceID() != pub[0].SpanContext.TraceID() {
		t.Errorf("deliver's parent %v is not publish %v", del[0].Parent, pub[0].SpanContext)
	}
	if !hasAttr(del[0], "herald.subscribers", attribute.IntValue(1)) {
		t.Errorf("deliver span attributes %v lack the subscriber count", del[0].Attributes)
	}
	if live.TraceParent == tp {
		t.Error("StartDeliver left the publish span as the message's parent")
	}
}

// TestPublishCostUnsampled ensures an unsampled message costs no
// allocation in the metrics path and carries no traceparent.
func TestPublishCostUnsampled(t *testing.T) {
	r := telemetrytest.New(t, "herald-edge", "a")
	p := r.Providers()
	p.Tracer = nil // no tracing: metrics only
	e := telemetry.NewEdge(p, nil, nil)
	m := &message.Message{Tenant: "t1", Topic: "a/b", Payload: []byte("x"), Time: time.Now()}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		_, span, tp := e.StartPublish(ctx, telemetry.ProtocolMQTT, m, "")
		e.EndPublish(span, nil)
		if tp != "" {
			t.Fatal("unsampled message got a traceparent")
		}
		if s := e.StartDeliver(m); s != nil {
			t.Fatal("deliver span for an untraced message")
		}
		e.Delivered(telemetry.ProtocolSSE, m, true)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message, want 0", allocs)
	}

	// With a tracer that samples nothing, only the publish span's
	// bookkeeping is paid; report it.
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSyncer(tracetest.NewNoopExporter()))
	p.Tracer = never
	e = telemetry.NewEdge(p, nil, nil)
	allocs = testing.AllocsPerRun(1000, func() {
		_, span, tp := e.StartPublish(ctx, telemetry.ProtocolMQTT, m, "")
		e.EndPublish(span, nil)
		if tp != "" {
			t.Fatal("unsampled message got a traceparent")
		}
	})
	t.Logf("unsampled publish with tracing on: %v allocations per message", allocs)
}

// TestSetupServesPrometheus ensures Setup without an endpoint serves the
// instruments at the Prometheus handler under the names Metrics lists.
func TestSetupServesPrometheus(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "herald-test", InstanceID: "i1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if tel.Providers().Tracer != nil {
		t.Error("a tracer provider without an endpoint")
	}
	e := telemetry.NewEdge(tel.Providers(), func() int { return 0 }, func() int { return 0 })
	m := &message.Message{Tenant: "t1", Topic: "a", Payload: []byte("x"), Time: time.Now()}
	e.Connected(telemetry.ProtocolMQTT, "t1", telemetry.ResultAccepted)
	e.Disconnected(telemetry.ProtocolMQTT, "t1", telemetry.ReasonClosed)
	_, span, _ := e.StartPublish(context.Background(), telemetry.ProtocolMQTT, m, "")
	e.EndPublish(span, nil)
	e.Delivered(telemetry.ProtocolSSE, m, true)
	e.LiveDropped()
	bb := telemetry.NewBackbone(tel.Providers())
	bb.EndStore(bb.StartStore(context.Background(), "t1"), nil)
	s := telemetry.NewSession(tel.Providers(), func(context.Context) telemetry.SessionStats {
		return telemetry.SessionStats{TenantsOwned: 1, Sessions: map[string]int{"t1": 2}}
	})
	s.Pending("t1", 4)
	s.Applied("t1", []*message.Message{m}, time.Now())
	s.Retained("t1", 3, 300)

	ctx := context.Background()
	_ = telemetry.RedisHook(tel.Providers()).ProcessHook(func(context.Context, redis.Cmder) error { return nil })(ctx, redis.NewStatusCmd(ctx, "ping"))
	_ = telemetry.EtcdInterceptor(tel.Providers())(ctx, "/etcdserverpb.KV/Range", nil, nil, nil,
		func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil })
	telemetry.AdminHandler(tel.Providers(), http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/tenants", nil))

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	families := telemetry.ScrapeFamilies(string(body))
	known := map[string]bool{}
	for _, m := range telemetry.Metrics {
		known[m.Name] = true
	}
	seen := map[string]bool{}
	for _, f := range families {
		if !strings.HasPrefix(f, "herald_") {
			continue
		}
		seen[f] = true
		if !known[f] {
			t.Errorf("served family %s is not in telemetry.Metrics", f)
		}
	}
	for _, m := range telemetry.Metrics {
		if !seen[m.Name] {
			t.Errorf("family %s listed but not served", m.Name)
		}
	}
	for _, m := range telemetry.RuntimeMetrics {
		if !slices.Contains(families, m.Name) {
			t.Errorf("runtime family %s listed but not served", m.Name)
		}
	}
	if !strings.Contains(string(body), `herald_session_retained{`) || !regexp.MustCompile(`herald_session_retained\{[^}]*tenant="t1"[^}]*\} 3\n`).Match(body) {
		t.Error("the retained gauge does not say t1 holds 3")
	}
	if !strings.Contains(string(body), `service_instance_id="i1"`) {
		t.Error("target_info lacks service.instance.id")
	}
}

func hasAttr(s tracetest.SpanStub, key string, v attribute.Value) bool {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value == v
		}
	}
	return false
}
