package telemetry

import (
	"context"
	"time"
)

// Flags are the telemetry settings every service's command line embeds
// (kong: `embed:""`). The OpenTelemetry variables (OTEL_*) configure the
// rest: see FromEnv.
type Flags struct {
	MetricsTenantLimit int    `name:"metrics-tenant-limit" help:"Tenants that get a metrics label of their own; the rest share _other." default:"100" env:"HERALD_METRICS_TENANT_LIMIT"`
	OTLPEndpoint       string `name:"otlp-endpoint" placeholder:"URL" help:"OTLP endpoint URL for metrics and traces (grpc: http://collector:4317; http/protobuf: http://collector:4318). Empty: no OTLP export, Prometheus /metrics only. The OpenTelemetry variables apply too: $OTEL_EXPORTER_OTLP_PROTOCOL, $OTEL_TRACES_SAMPLER, $OTEL_TRACES_SAMPLER_ARG, $OTEL_METRIC_EXPORT_INTERVAL, $OTEL_SERVICE_NAME, $OTEL_RESOURCE_ATTRIBUTES, $OTEL_SDK_DISABLED." env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
}

// Setup builds the SDK of service from the environment and the flags;
// instance names this process (service.instance.id), empty for the host
// name and pid.
func (f Flags) Setup(ctx context.Context, service, instance string) (*Telemetry, error) {
	cfg, err := FromEnv(service)
	if err != nil {
		return nil, err
	}
	if f.OTLPEndpoint != "" {
		cfg.Endpoint = f.OTLPEndpoint
	}
	cfg.InstanceID = instance
	cfg.TenantLimit = f.MetricsTenantLimit
	if f.MetricsTenantLimit == 0 {
		// 0 from the flag means "no tenant gets its own label", not "default".
		cfg.TenantLimit = -1
	}
	return Setup(ctx, cfg)
}

// shutdownTimeout bounds the final flush of Close.
const shutdownTimeout = 5 * time.Second

// Close flushes and stops the exporters within a few seconds; for a
// service's main, as a deferred call.
func (t *Telemetry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return t.Shutdown(ctx)
}
