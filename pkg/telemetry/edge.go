package telemetry

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Protocol label values.
const (
	ProtocolMQTT = "mqtt"
	ProtocolSSE  = "sse"
	ProtocolWS   = "ws"
	ProtocolPoll = "poll"
	// ProtocolWebTransport is the WebSocket protocol carried over
	// WebTransport (HTTP/3).
	ProtocolWebTransport = "webtransport"
	ProtocolHTTPAPI      = "http"
	ProtocolInternal     = "internal"
)

// Connect results and disconnect reasons.
const (
	ResultAccepted        = "accepted"
	ResultConnectionLimit = "connection_limit"
	ResultServerBusy      = "server_busy"
	ResultRevoked         = "revoked"
	ResultError           = "error"
	ResultOK              = "ok"

	ReasonClosed  = "closed"
	ReasonRevoked = "revoked"
)

// maxTopicAttr bounds the topic recorded on spans: attributes are per span,
// not per series, but a 64 KiB topic would still bloat every exported span.
const maxTopicAttr = 256

// Edge records an edge's metrics and message spans. Its methods are safe
// for concurrent use and cheap on the per-message paths: pre-bound label
// sets, and no span work at all for a message that carries no sampled
// trace context when the tracer is a no-op.
type Edge struct {
	tracer  trace.Tracer
	tracing bool
	tenants *TenantLabels

	connections                 metric.Int64UpDownCounter
	connects, disconnects       metric.Int64Counter
	msgsIn, bytesIn             metric.Int64Counter
	latency                     metric.Float64Histogram
	liveDropped                 metric.Int64Counter
	mu                          sync.RWMutex
	sets                        map[edgeKey]*edgeSet
	subscriptions, liveQueueLen func() int
	observe                     metric.Registration
}

type edgeKey struct{ protocol, tenant string }

// edgeSet is a label set bound once: the option slices are reused so that
// recording allocates nothing. The per-delivery figures are plain atomics,
// read by the collection callback: recording through the SDK on every
// write to a subscriber took 27% of an edge's CPU in a 1→100 fan-out
// (attribute normalisation and aggregation per call).
type edgeSet struct {
	attrs attribute.Set
	add   []metric.AddOption
	rec   []metric.RecordOption

	sentMsgs, sentBytes atomic.Int64
	// delivered counts live deliveries, for the latency sample.
	delivered atomic.Uint64
}

// DeliverySample is how often a live delivery enters the delivery latency
// histogram: one in DeliverySample per protocol and tenant label, the
// first one included. The histogram describes latency; the number of
// deliveries is herald_edge_messages_sent_total.
const DeliverySample = 8

// NewEdge creates the edge instruments. subscriptions and liveQueue, when
// set, are read at each collection (observable gauges).
func NewEdge(p Providers, subscriptions, liveQueue func() int) *Edge {
	m := p.meter()
	e := &Edge{tracer: p.tracer(), tracing: p.tracing(), tenants: p.tenants(), sets: map[edgeKey]*edgeSet{},
		subscriptions: subscriptions, liveQueueLen: liveQueue}
	e.connections, _ = m.Int64UpDownCounter(MetricEdgeConnections, metric.WithUnit("{connection}"), metric.WithDescription("Live client connections."))
	e.connects, _ = m.Int64Counter(MetricEdgeConnects, metric.WithUnit("{connection}"), metric.WithDescription("Connection admissions, by result."))
	e.disconnects, _ = m.Int64Counter(MetricEdgeDisconnects, metric.WithUnit("{connection}"), metric.WithDescription("Connections ended, by reason."))
	e.msgsIn, _ = m.Int64Counter(MetricEdgeMessagesReceived, metric.WithUnit("{message}"), metric.WithDescription("Messages published by clients of this edge."))
	e.bytesIn, _ = m.Int64Counter(MetricEdgeBytesReceived, metric.WithUnit("By"), metric.WithDescription("Payload bytes published by clients of this edge."))
	msgsOut, _ := m.Int64ObservableCounter(MetricEdgeMessagesSent, metric.WithUnit("{message}"), metric.WithDescription("Messages written to subscribers."))
	bytesOut, _ := m.Int64ObservableCounter(MetricEdgeBytesSent, metric.WithUnit("By"), metric.WithDescription("Payload bytes written to subscribers."))
	e.latency, _ = m.Float64Histogram(MetricEdgeDeliveryDuration, metric.WithUnit("s"),
		metric.WithDescription("From a live message's store on the backbone to its write to a subscriber (one live delivery in 8 per protocol and tenant)."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	e.liveDropped, _ = m.Int64Counter(MetricEdgeLiveDropped, metric.WithUnit("{event}"), metric.WithDescription("Slow-consumer events on live interest."))
	subs, _ := m.Int64ObservableGauge(MetricEdgeSubscriptions, metric.WithUnit("{subscription}"), metric.WithDescription("Subscriptions held by the hub."))
	depth, _ := m.Int64ObservableGauge(MetricEdgeLiveQueueDepth, metric.WithUnit("{message}"), metric.WithDescription("Live messages not yet fanned out."))
	e.observe, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if e.subscriptions != nil {
			o.ObserveInt64(subs, int64(e.subscriptions()))
		}
		if e.liveQueueLen != nil {
			o.ObserveInt64(depth, int64(e.liveQueueLen()))
		}
		e.mu.RLock()
		for _, s := range e.sets {
			if n := s.sentMsgs.Load(); n > 0 {
				o.ObserveInt64(msgsOut, n, metric.WithAttributeSet(s.attrs))
				o.ObserveInt64(bytesOut, s.sentBytes.Load(), metric.WithAttributeSet(s.attrs))
			}
		}
		e.mu.RUnlock()
		return nil
	}, subs, depth, msgsOut, bytesOut)
	return e
}

// Close unregisters the observable gauges.
func (e *Edge) Close() {
	if e != nil && e.observe != nil {
		_ = e.observe.Unregister()
	}
}

func (e *Edge) set(protocol, tenant string) *edgeSet {
	k := edgeKey{protocol, e.tenants.Label(tenant)}
	e.mu.RLock()
	s := e.sets[k]
	e.mu.RUnlock()
	if s != nil {
		return s
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s = e.sets[k]; s == nil {
		attrs := attribute.NewSet(attribute.String(LabelProtocol, k.protocol), attribute.String(LabelTenant, k.tenant))
		s = &edgeSet{attrs: attrs, add: []metric.AddOption{metric.WithAttributeSet(attrs)}, rec: []metric.RecordOption{metric.WithAttributeSet(attrs)}}
		e.sets[k] = s
	}
	return s
}

// Connected records an admission attempt: result is ResultAccepted (the
// connection gauge goes up) or why it was refused.
func (e *Edge) Connected(protocol, tenant, result string) {
	if e == nil {
		return
	}
	ctx := context.Background()
	s := e.set(protocol, tenant)
	e.connects.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String(LabelProtocol, protocol), attribute.String(LabelTenant, e.tenants.Label(tenant)), attribute.String(LabelResult, result))))
	if result == ResultAccepted {
		e.connections.Add(ctx, 1, s.add...)
	}
}

// Disconnected records the end of an accepted connection.
func (e *Edge) Disconnected(protocol, tenant, reason string) {
	if e == nil {
		return
	}
	ctx := context.Background()
	e.connections.Add(ctx, -1, e.set(protocol, tenant).add...)
	e.disconnects.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String(LabelProtocol, protocol), attribute.String(LabelTenant, e.tenants.Label(tenant)), attribute.String(LabelReason, reason))))
}

// LiveDropped records a slow-consumer event on the edge's live interest.
func (e *Edge) LiveDropped() {
	if e != nil {
		e.liveDropped.Add(context.Background(), 1)
	}
}

// StartPublish records a message received from a client of protocol and
// starts its "publish" span, a child of parent (a client's traceparent,
// from an HTTP header or an MQTT 5 user property) or of ctx's span. It
// returns the context to publish under and the traceparent the message
// must carry: "" unless the span is sampled. End the span with EndPublish.
func (e *Edge) StartPublish(ctx context.Context, protocol string, m *message.Message, parent string) (context.Context, trace.Span, string) {
	if e == nil {
		return ctx, nil, passThrough(parent)
	}
	s := e.set(protocol, m.Tenant)
	e.msgsIn.Add(ctx, 1, s.add...)
	e.bytesIn.Add(ctx, int64(len(m.Payload)), s.add...)
	if !e.tracing {
		return ctx, nil, passThrough(parent)
	}
	ctx = ContextWithTraceParent(ctx, parent)
	ctx, span := e.tracer.Start(ctx, "publish", trace.WithSpanKind(trace.SpanKindProducer))
	if !span.IsRecording() {
		return ctx, span, ""
	}
	span.SetAttributes(
		attribute.String("messaging.system", "herald"),
		attribute.String("messaging.operation.type", "send"),
		attribute.String("messaging.destination.name", truncate(m.Topic, maxTopicAttr)),
		attribute.String("herald.protocol", protocol),
		attribute.String("herald.tenant", m.Tenant),
		attribute.Int("messaging.message.body.size", len(m.Payload)),
		attribute.Int("herald.qos", int(m.QoS)))
	return ctx, span, TraceParent(ctx)
}

// EndPublish ends a span from StartPublish; nil-safe.
func (e *Edge) EndPublish(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// StartDeliver starts the "deliver" span of a live message on this edge
// when the message carries a sampled trace context (and only then), and
// replaces m.TraceParent with the span's own so that MQTT 5 deliveries
// name it as parent. Call it before the message is shared with the
// subscribers, and EndDeliver with the number of subscribers it reached.
func (e *Edge) StartDeliver(m *message.Message) trace.Span {
	if e == nil || !e.tracing || m.TraceParent == "" {
		return nil
	}
	ctx := ContextWithTraceParent(context.Background(), m.TraceParent)
	ctx, span := e.tracer.Start(ctx, "deliver", trace.WithSpanKind(trace.SpanKindConsumer))
	if !span.IsRecording() {
		span.End()
		return nil
	}
	span.SetAttributes(
		attribute.String("messaging.system", "herald"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", truncate(m.Topic, maxTopicAttr)),
		attribute.String("herald.tenant", m.Tenant),
		attribute.Int64("herald.seq", int64(m.Seq)))
	m.TraceParent = TraceParent(ctx)
	return span
}

// EndDeliver ends a span from StartDeliver; nil-safe.
func (e *Edge) EndDeliver(span trace.Span, subscribers int) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.Int("herald.subscribers", subscribers))
	span.End()
}

// Delivered records a message written to a subscriber over protocol. live
// marks a message fanned out as it was stored (not replayed or retained):
// only those enter the latency histogram, measured from m.Time, the
// backbone's store time.
func (e *Edge) Delivered(protocol string, m *message.Message, live bool) {
	if e == nil {
		return
	}
	s := e.set(protocol, m.Tenant)
	s.sentMsgs.Add(1)
	s.sentBytes.Add(int64(len(m.Payload)))
	if live && !m.Time.IsZero() && (s.delivered.Add(1)-1)%DeliverySample == 0 {
		e.latency.Record(context.Background(), max(time.Since(m.Time).Seconds(), 0), s.rec...)
	}
}

// passThrough returns a client's traceparent when it is valid and sampled,
// for an edge that records no spans itself: the trace still links the
// services downstream.
func passThrough(parent string) string {
	if parent == "" {
		return ""
	}
	return TraceParent(ContextWithTraceParent(context.Background(), parent))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
