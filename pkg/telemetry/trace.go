package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HeaderTraceParent is the W3C trace context field, as NATS header, HTTP
// header and MQTT 5 user property.
const HeaderTraceParent = "traceparent"

var tracecontext = propagation.TraceContext{}

// traceparentCarrier reads and writes one traceparent value without the
// map a propagation.MapCarrier would allocate.
type traceparentCarrier struct{ v string }

func (c *traceparentCarrier) Get(key string) string {
	if key == HeaderTraceParent {
		return c.v
	}
	return ""
}

func (c *traceparentCarrier) Set(key, value string) {
	if key == HeaderTraceParent {
		c.v = value
	}
}

func (c *traceparentCarrier) Keys() []string { return []string{HeaderTraceParent} }

// ContextWithTraceParent returns ctx with the remote span context that
// traceparent names as parent; ctx itself when traceparent is empty or
// malformed.
func ContextWithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return tracecontext.Extract(ctx, &traceparentCarrier{v: traceparent})
}

// TraceParent returns the traceparent of ctx's span when it is sampled, and
// "" otherwise: unsampled messages carry no trace header at all.
func TraceParent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return ""
	}
	c := traceparentCarrier{}
	tracecontext.Inject(ctx, &c)
	return c.v
}
