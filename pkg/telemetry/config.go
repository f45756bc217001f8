package telemetry

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// OTLP protocols, as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Samplers, as OTEL_TRACES_SAMPLER names them.
const (
	SamplerAlwaysOn                = "always_on"
	SamplerAlwaysOff               = "always_off"
	SamplerTraceIDRatio            = "traceidratio"
	SamplerParentBasedAlwaysOn     = "parentbased_always_on"
	SamplerParentBasedAlwaysOff    = "parentbased_always_off"
	SamplerParentBasedTraceIDRatio = "parentbased_traceidratio"
)

// Defaults.
const (
	// DefaultSampleRatio samples one root trace in a hundred. A message
	// traced end to end costs a few spans on every edge that delivers it;
	// at 1% a cluster moving 100k messages/s still exports ~1k traces/s,
	// which a collector handles, and a client that sends a sampled
	// traceparent is always followed (parent based).
	DefaultSampleRatio = 0.01
	// DefaultTenantLimit is how many tenants get a label value of their
	// own before the rest share OtherTenant.
	DefaultTenantLimit = 100
	// DefaultExportInterval is how often metrics are pushed over OTLP.
	DefaultExportInterval = 30 * time.Second
)

// Config configures a service's telemetry. The zero Config, with defaults,
// serves Prometheus metrics and records no traces; Endpoint turns OTLP export
// of metrics and traces on.
type Config struct {
	// ServiceName is the service.name resource attribute (herald-edge, ...).
	ServiceName string
	// InstanceID is service.instance.id; default the host name and pid.
	InstanceID string
	// Endpoint is the OTLP endpoint URL (http://collector:4317 for gRPC,
	// http://collector:4318 for HTTP); empty disables OTLP export.
	Endpoint string
	// Protocol is ProtocolGRPC (the default) or ProtocolHTTP.
	Protocol string
	// Sampler is an OTEL_TRACES_SAMPLER name; default
	// SamplerParentBasedTraceIDRatio.
	Sampler string
	// SamplerArg is the ratio of the ratio samplers; default DefaultSampleRatio.
	SamplerArg *float64
	// TenantLimit bounds the tenant label's values; default
	// DefaultTenantLimit, negative for none (every tenant is OtherTenant).
	TenantLimit int
	// ExportInterval is the OTLP metrics push period; default DefaultExportInterval.
	ExportInterval time.Duration
	// DisablePrometheus drops the Prometheus exporter (no /metrics).
	DisablePrometheus bool
}

// FromEnv returns a Config read from the standard OpenTelemetry variables
// (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL,
// OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, OTEL_METRIC_EXPORT_INTERVAL)
// over the given service name. OTEL_SDK_DISABLED=true leaves the endpoint
// empty.
func FromEnv(service string) (Config, error) {
	c := Config{ServiceName: service}
	if v := os.Getenv("OTEL_SERVICE_NAME"); v != "" {
		c.ServiceName = v
	}
	if os.Getenv("OTEL_SDK_DISABLED") != "true" {
		c.Endpoint = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	c.Protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	c.Sampler = os.Getenv("OTEL_TRACES_SAMPLER")
	if v := os.Getenv("OTEL_TRACES_SAMPLER_ARG"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return c, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG: %w", err)
		}
		c.SamplerArg = &f
	}
	if v := os.Getenv("OTEL_METRIC_EXPORT_INTERVAL"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil {
			return c, fmt.Errorf("telemetry: OTEL_METRIC_EXPORT_INTERVAL: %w", err)
		}
		c.ExportInterval = time.Duration(ms) * time.Millisecond
	}
	return c, nil
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.ServiceName == "" {
		c.ServiceName = "herald"
	}
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		c.InstanceID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.Protocol == "" {
		c.Protocol = ProtocolGRPC
	}
	if c.Sampler == "" {
		c.Sampler = SamplerParentBasedTraceIDRatio
	}
	if c.SamplerArg == nil {
		r := DefaultSampleRatio
		c.SamplerArg = &r
	}
	if c.TenantLimit == 0 {
		c.TenantLimit = DefaultTenantLimit
	}
	if c.ExportInterval == 0 {
		c.ExportInterval = DefaultExportInterval
	}
	return c
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	switch c.Protocol {
	case ProtocolGRPC, ProtocolHTTP:
	default:
		errs = append(errs, fmt.Errorf("telemetry: protocol must be %q or %q, got %q", ProtocolGRPC, ProtocolHTTP, c.Protocol))
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("telemetry: endpoint %q must be an http:// or https:// URL", c.Endpoint))
		}
	}
	switch c.Sampler {
	case SamplerAlwaysOn, SamplerAlwaysOff, SamplerParentBasedAlwaysOn, SamplerParentBasedAlwaysOff:
	case SamplerTraceIDRatio, SamplerParentBasedTraceIDRatio:
		if r := *c.SamplerArg; r < 0 || r > 1 {
			errs = append(errs, fmt.Errorf("telemetry: sampler ratio must be 0..1, got %v", r))
		}
	default:
		errs = append(errs, fmt.Errorf("telemetry: unknown sampler %q", c.Sampler))
	}
	if c.ExportInterval < 0 {
		errs = append(errs, errors.New("telemetry: negative export interval"))
	}
	if strings.TrimSpace(c.ServiceName) == "" {
		errs = append(errs, errors.New("telemetry: empty service name"))
	}
	return errors.Join(errs...)
}
