package telemetry

import "slices"

// Instrument names (OpenTelemetry style: dotted, lower case, units apart).
// Their Prometheus names, as the exporter writes them, are in Metrics.
const (
	MetricEdgeConnections      = "herald.edge.connections"
	MetricEdgeConnects         = "herald.edge.connects"
	MetricEdgeDisconnects      = "herald.edge.disconnects"
	MetricEdgeMessagesReceived = "herald.edge.messages.received"
	MetricEdgeBytesReceived    = "herald.edge.received"
	MetricEdgeMessagesSent     = "herald.edge.messages.sent"
	MetricEdgeBytesSent        = "herald.edge.sent"
	MetricEdgeDeliveryDuration = "herald.edge.delivery.duration"
	MetricEdgeSubscriptions    = "herald.edge.subscriptions"
	MetricEdgeLiveQueueDepth   = "herald.edge.live.queue.depth"
	MetricEdgeLiveDropped      = "herald.edge.live.dropped"

	MetricBackbonePublishDuration = "herald.backbone.publish.duration"

	MetricSessionMessagesApplied = "herald.session.messages.applied"
	MetricSessionApplyDuration   = "herald.session.apply.duration"
	MetricSessionConsumerPending = "herald.session.consumer.pending"
	MetricSessionTenantsOwned    = "herald.session.tenants.owned"
	MetricSessionSessions        = "herald.session.sessions"
	MetricSessionRetainedDropped = "herald.session.retained.dropped"
	MetricSessionRetained        = "herald.session.retained"
	MetricSessionRetainedSize    = "herald.session.retained.size"
	MetricSessionStoreLosses     = "herald.session.store.losses"
	MetricSessionWillsPublished  = "herald.session.wills.published"

	MetricRedisCommandDuration = "herald.redis.command.duration"
	MetricEtcdRequestDuration  = "herald.etcd.request.duration"
	MetricAdminRequestDuration = "herald.admin.request.duration"
)

// Attribute (label) keys. Every one has a bounded set of values.
const (
	// LabelProtocol is mqtt, sse, ws, poll, http or internal.
	LabelProtocol = "protocol"
	// LabelTenant is a tenant id or OtherTenant (see TenantLabels).
	LabelTenant = "tenant"
	// LabelResult is the outcome of a connect or a call.
	LabelResult = "result"
	// LabelReason is why a connection ended.
	LabelReason = "reason"
	// LabelOperation names a store, etcd or admin API operation.
	LabelOperation = "operation"
)

// Metric is one Prometheus metric family Herald exports.
type Metric struct {
	// Name is the Prometheus family name.
	Name string
	// Type is counter, gauge or histogram.
	Type string
	// Unit is the UCUM unit of the instrument.
	Unit string
	// Labels are the family's labels (beyond the target's).
	Labels []string
	// Help describes it.
	Help string
}

// Metrics lists every metric family Herald exports, with the names the
// Prometheus exporter gives them (unit and _total suffixes added). The
// acceptance test scrapes real services and checks it against what they
// serve; dashboards are checked against it.
var Metrics = []Metric{
	{"herald_edge_connections", "gauge", "{connection}", []string{LabelProtocol, LabelTenant}, "Live client connections."},
	{"herald_edge_connects_total", "counter", "{connection}", []string{LabelProtocol, LabelTenant, LabelResult}, "Connection admissions, by result: accepted, connection_limit, revoked, error."},
	{"herald_edge_disconnects_total", "counter", "{connection}", []string{LabelProtocol, LabelTenant, LabelReason}, "Connections ended, by reason: closed, revoked."},
	{"herald_edge_messages_received_total", "counter", "{message}", []string{LabelProtocol, LabelTenant}, "Messages published by clients of this edge (valid topic)."},
	{"herald_edge_received_bytes_total", "counter", "By", []string{LabelProtocol, LabelTenant}, "Payload bytes published by clients of this edge."},
	{"herald_edge_messages_sent_total", "counter", "{message}", []string{LabelProtocol, LabelTenant}, "Messages written to subscribers (live, replayed and retained)."},
	{"herald_edge_sent_bytes_total", "counter", "By", []string{LabelProtocol, LabelTenant}, "Payload bytes written to subscribers."},
	{"herald_edge_delivery_duration_seconds", "histogram", "s", []string{LabelProtocol, LabelTenant}, "From a live message's store on the backbone to its write to a subscriber."},
	{"herald_edge_subscriptions", "gauge", "{subscription}", nil, "Subscriptions held by this edge's hub."},
	{"herald_edge_live_queue_depth", "gauge", "{message}", nil, "Live messages received from NATS and not yet fanned out."},
	{"herald_edge_live_dropped_total", "counter", "{event}", nil, "Slow-consumer events: live messages NATS dropped for this edge."},
	{"herald_backbone_publish_duration_seconds", "histogram", "s", []string{LabelTenant, LabelResult}, "JetStream publish round trip, send to acknowledgement."},
	{"herald_session_messages_applied_total", "counter", "{message}", []string{LabelTenant}, "Messages applied to the store by the session service."},
	{"herald_session_apply_duration_seconds", "histogram", "s", []string{LabelTenant}, "Store write of one batch by the session service."},
	{"herald_session_consumer_pending", "gauge", "{message}", []string{LabelTenant}, "Messages of a tenant stream not yet fetched by the session service (consumer lag)."},
	{"herald_session_tenants_owned", "gauge", "{tenant}", nil, "Tenants whose lease this session replica holds."},
	{"herald_session_sessions", "gauge", "{session}", []string{LabelTenant}, "Persistent MQTT sessions stored, per owned tenant."},
	{"herald_session_retained_dropped_total", "counter", "{message}", nil, "Retained messages refused by tenants' limits."},
	{"herald_session_retained", "gauge", "{message}", []string{LabelTenant}, "Retained messages stored, of the tenants this replica owns."},
	{"herald_session_retained_size_bytes", "gauge", "By", []string{LabelTenant}, "Encoded size of the retained messages stored, of the tenants this replica owns."},
	{"herald_session_store_losses_total", "counter", "{event}", nil, "Detected losses of stored state, each followed by a rebuild."},
	{"herald_session_wills_published_total", "counter", "{message}", nil, "MQTT wills published by the session service."},
	{"herald_redis_command_duration_seconds", "histogram", "s", []string{LabelOperation, LabelResult}, "Redis commands and pipelines."},
	{"herald_etcd_request_duration_seconds", "histogram", "s", []string{LabelOperation, LabelResult}, "etcd client calls."},
	{"herald_admin_request_duration_seconds", "histogram", "s", []string{LabelOperation, LabelResult}, "Admin API calls (gRPC and REST through the gateway)."},
}

// RuntimeMetrics are the Go runtime and process families every service's
// Prometheus endpoint serves beside Herald's own (a selection: the
// dashboards may use these).
var RuntimeMetrics = []Metric{
	{"go_goroutines", "gauge", "{goroutine}", nil, "Goroutines."},
	{"go_memstats_heap_inuse_bytes", "gauge", "By", nil, "Heap bytes in use."},
	{"process_resident_memory_bytes", "gauge", "By", nil, "Resident memory."},
	{"process_cpu_seconds_total", "counter", "s", nil, "CPU time."},
}

// PrometheusNames returns the series names a Prometheus query may use for
// Herald's metrics: family names, and for histograms their _bucket, _sum and
// _count series.
func PrometheusNames() []string {
	var out []string
	for _, m := range slices.Concat(Metrics, RuntimeMetrics) {
		out = append(out, m.Name)
		if m.Type == "histogram" {
			out = append(out, m.Name+"_bucket", m.Name+"_sum", m.Name+"_count")
		}
	}
	slices.Sort(out)
	return out
}

// latencyBuckets are the boundaries (seconds) of every latency histogram:
// from 0.25 ms (an in-process hop) to 10 s (a stalled dependency).
var latencyBuckets = []float64{0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
