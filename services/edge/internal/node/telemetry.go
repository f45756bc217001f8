package node

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/limits"
	"go.opentelemetry.io/otel/trace"
)

// startPublish counts m as received and starts its publish span. The
// client's trace context is the span's parent: the traceparent an HTTP
// publisher sent (opts.TraceParent) or an MQTT 5 publisher's traceparent
// user property. opts.TraceParent is replaced by the span's own, or
// emptied when the span is not sampled, so that only sampled messages
// carry a trace header on the backbone.
func (n *Node) startPublish(ctx context.Context, m *message.Message, opts *backbone.PublishOptions) (context.Context, trace.Span) {
	parent := opts.TraceParent
	if parent == "" {
		for _, u := range m.UserProperties {
			if u.Key == telemetry.HeaderTraceParent {
				parent = u.Value
				break
			}
		}
	}
	protocol := opts.Protocol
	if protocol == "" {
		protocol = telemetry.ProtocolInternal
	}
	ctx, span, tp := n.tel.StartPublish(ctx, protocol, m, parent)
	opts.TraceParent = tp
	return ctx, span
}

// admissionTelemetry counts one connection from its admission to its
// release, once each.
type admissionTelemetry struct {
	e                *telemetry.Edge
	protocol, tenant string
	revoked          atomic.Bool // the close callback ran: credential or tenant gone, or kicked
	accepted         atomic.Bool
	done             atomic.Bool
}

// watchAdmission attaches telemetry to a (nil without Telemetry) and wraps
// close so that a revocation is told apart from an ordinary close.
func (n *Node) watchAdmission(a *Admission, info ClientInfo, close func(reason error)) func(reason error) {
	if n.tel == nil {
		return close
	}
	t := &admissionTelemetry{e: n.tel, protocol: info.Protocol, tenant: info.Identity.Tenant}
	a.tel = t
	return func(reason error) {
		t.revoked.Store(true)
		if close != nil {
			close(reason)
		}
	}
}

// admitted records the admission's outcome; nil-safe.
func (t *admissionTelemetry) admitted(err error) {
	if t == nil {
		return
	}
	result := telemetry.ResultAccepted
	switch {
	case err == nil:
		t.accepted.Store(true)
	case errors.Is(err, limits.ErrConnectionLimit):
		result = telemetry.ResultConnectionLimit
	case errors.Is(err, limits.ErrServerBusy):
		result = telemetry.ResultServerBusy
	case errors.Is(err, auth.ErrRevoked):
		result = telemetry.ResultRevoked
	default:
		result = telemetry.ResultError
	}
	t.e.Connected(t.protocol, t.tenant, result)
}

// released records the end of an accepted connection, once; nil-safe.
func (t *admissionTelemetry) released() {
	if t == nil || !t.accepted.Load() || !t.done.CompareAndSwap(false, true) {
		return
	}
	reason := telemetry.ReasonClosed
	if t.revoked.Load() {
		reason = telemetry.ReasonRevoked
	}
	t.e.Disconnected(t.protocol, t.tenant, reason)
}
