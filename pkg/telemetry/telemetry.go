// Package telemetry sets up Herald's OpenTelemetry SDK — metrics served to
// Prometheus on each service's ops port and pushed over OTLP, traces
// exported over OTLP — and holds the instruments the services record with.
//
// Components never reach for global providers: they take a Providers value
// (a TracerProvider, a MeterProvider and the bounded tenant labels), and the
// zero Providers records nothing, so tests and embedded uses pay nothing.
//
// Traces follow a message: the ingress edge's "publish" span, the
// backbone's "jetstream.store" span, the session service's "session.apply"
// span and one "deliver" span on every edge that fans the message out. The
// W3C traceparent travels in the message's NATS headers (the stream's
// RePublish keeps headers), and only sampled messages carry one.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Resource attribute keys (OpenTelemetry semantic conventions).
const (
	keyServiceName       = attribute.Key("service.name")
	keyServiceInstanceID = attribute.Key("service.instance.id")
	keyServiceNamespace  = attribute.Key("service.namespace")
)

// ScopeName is the instrumentation scope of every Herald instrument.
const ScopeName = "github.com/heraldmq/herald"

// Providers is what an instrumented component is given. The zero value
// records nothing.
type Providers struct {
	Tracer trace.TracerProvider
	Meter  metric.MeterProvider
	// Tenants bounds the tenant label; nil means a private set with
	// DefaultTenantLimit.
	Tenants *TenantLabels
}

func (p Providers) tracer() trace.Tracer {
	if p.Tracer == nil {
		return tracenoop.NewTracerProvider().Tracer(ScopeName)
	}
	return p.Tracer.Tracer(ScopeName)
}

// tracing reports whether spans can be recorded at all: with no provider
// the hot paths skip span creation entirely.
func (p Providers) tracing() bool {
	if p.Tracer == nil {
		return false
	}
	_, noop := p.Tracer.(tracenoop.TracerProvider)
	return !noop
}

func (p Providers) meter() metric.Meter {
	if p.Meter == nil {
		return metricnoop.NewMeterProvider().Meter(ScopeName)
	}
	return p.Meter.Meter(ScopeName)
}

func (p Providers) tenants() *TenantLabels {
	if p.Tenants == nil {
		return NewTenantLabels(DefaultTenantLimit)
	}
	return p.Tenants
}

// Telemetry is one service's SDK: its providers, the Prometheus handler and
// what Shutdown flushes.
type Telemetry struct {
	cfg     Config
	tp      *sdktrace.TracerProvider
	mp      *sdkmetric.MeterProvider
	tenants *TenantLabels
	handler http.Handler
}

// Setup builds the SDK from cfg: a MeterProvider with a Prometheus reader
// (its own registry, with the Go runtime and process collectors) and, when
// cfg.Endpoint is set, a periodic OTLP reader; a TracerProvider with the
// configured sampler and, when cfg.Endpoint is set, a batching OTLP span
// exporter. Without an endpoint spans are sampled but go nowhere, so the
// tracer provider is a no-op and costs nothing per message.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	res := resource.NewWithAttributes("",
		keyServiceName.String(cfg.ServiceName),
		keyServiceInstanceID.String(cfg.InstanceID),
		keyServiceNamespace.String("herald"))
	t := &Telemetry{cfg: cfg, tenants: NewTenantLabels(cfg.TenantLimit)}

	mopts := []sdkmetric.Option{sdkmetric.WithResource(res)}
	if !cfg.DisablePrometheus {
		reg := promclient.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
		if err != nil {
			return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(exp))
		t.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	}
	if cfg.Endpoint != "" {
		exp, err := metricExporter(ctx, cfg)
		if err != nil {
			return nil, err
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(cfg.ExportInterval))))
		sexp, err := spanExporter(ctx, cfg)
		if err != nil {
			_ = exp.Shutdown(ctx)
			return nil, err
		}
		t.tp = sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSampler(Sampler(cfg)),
			sdktrace.WithBatcher(sexp))
	}
	t.mp = sdkmetric.NewMeterProvider(mopts...)
	return t, nil
}

// Sampler returns the sampler cfg names.
func Sampler(cfg Config) sdktrace.Sampler {
	cfg = cfg.WithDefaults()
	ratio := *cfg.SamplerArg
	switch cfg.Sampler {
	case SamplerAlwaysOn:
		return sdktrace.AlwaysSample()
	case SamplerAlwaysOff:
		return sdktrace.NeverSample()
	case SamplerTraceIDRatio:
		return sdktrace.TraceIDRatioBased(ratio)
	case SamplerParentBasedAlwaysOn:
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	case SamplerParentBasedAlwaysOff:
		return sdktrace.ParentBased(sdktrace.NeverSample())
	default:
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	}
}

// otlpURL appends the signal path to an OTLP/HTTP base endpoint, as the
// specification does for OTEL_EXPORTER_OTLP_ENDPOINT.
func otlpURL(base, signal string) string {
	return strings.TrimRight(base, "/") + "/v1/" + signal
}

func metricExporter(ctx context.Context, cfg Config) (sdkmetric.Exporter, error) {
	var exp sdkmetric.Exporter
	var err error
	if cfg.Protocol == ProtocolHTTP {
		exp, err = otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(otlpURL(cfg.Endpoint, "metrics")))
	} else {
		exp, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpointURL(cfg.Endpoint))
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: otlp metric exporter: %w", err)
	}
	return exp, nil
}

func spanExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	var exp sdktrace.SpanExporter
	var err error
	if cfg.Protocol == ProtocolHTTP {
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(otlpURL(cfg.Endpoint, "traces")))
	} else {
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: otlp span exporter: %w", err)
	}
	return exp, nil
}

// Providers returns what the service's components are given.
func (t *Telemetry) Providers() Providers {
	p := Providers{Meter: t.mp, Tenants: t.tenants}
	if t.tp != nil {
		p.Tracer = t.tp
	}
	return p
}

// Config returns the effective configuration.
func (t *Telemetry) Config() Config { return t.cfg }

// MetricsHandler serves the Prometheus exposition (mounted at /metrics on
// the ops port); it answers 404 when Prometheus is disabled.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t.handler == nil {
		return http.NotFoundHandler()
	}
	return t.handler
}

// Shutdown flushes pending spans and metrics and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.tp != nil {
		errs = append(errs, t.tp.Shutdown(ctx))
	}
	errs = append(errs, t.mp.Shutdown(ctx))
	return errors.Join(errs...)
}
