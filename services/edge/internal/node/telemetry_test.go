package node

import (
	"context"
	"errors"
	"testing"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/telemetry/telemetrytest"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// TestAdmissionTelemetry ensures an admitted connection is counted up once
// and down once, with "revoked" as the reason when its close callback ran,
// and that a refused one never enters the gauge.
func TestAdmissionTelemetry(t *testing.T) {
	rec := telemetrytest.New(t, "herald-edge", "n")
	n := &Node{tel: telemetry.NewEdge(rec.Providers(), nil, nil), clients: NewClients(ClientsConfig{})}
	id := auth.Identity{Tenant: "t1", Credential: "k1"}
	a, err := n.Admit(context.Background(), ClientInfo{ID: "c1", Protocol: "ws", Identity: id}, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Admit(context.Background(), ClientInfo{ID: "c2", Protocol: "ws", Identity: id}, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	ws := []attribute.KeyValue{attribute.String(telemetry.LabelProtocol, "ws"), attribute.String(telemetry.LabelTenant, "t1")}
	if got, _ := rec.Sum(t, telemetry.MetricEdgeConnections, ws...); got != 2 {
		t.Fatalf("connections = %v, want 2", got)
	}
	n.clients.Kick("t1", "c1", errors.New("kicked"))
	n.clients.Kick("t1", "c2", errors.New("kicked"))
	a.Release()
	a.Release()
	b.Release()
	if got, _ := rec.Sum(t, telemetry.MetricEdgeConnections, ws...); got != 0 {
		t.Errorf("connections after release = %v, want 0", got)
	}
	if got, _ := rec.Sum(t, telemetry.MetricEdgeDisconnects, append(ws, attribute.String(telemetry.LabelReason, telemetry.ReasonRevoked))...); got != 2 {
		t.Errorf("revoked disconnects = %v, want 2", got)
	}
	if got, _ := rec.Sum(t, telemetry.MetricEdgeConnects, append(ws, attribute.String(telemetry.LabelResult, telemetry.ResultAccepted))...); got != 2 {
		t.Errorf("accepted connects = %v, want 2", got)
	}
}

// TestStartPublishParent ensures an MQTT 5 traceparent user property is
// the publish span's parent and the carried traceparent is the span's own.
func TestStartPublishParent(t *testing.T) {
	rec := telemetrytest.New(t, "herald-edge", "n")
	n := &Node{tel: telemetry.NewEdge(rec.Providers(), nil, nil)}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	m := &message.Message{Tenant: "t1", Topic: "a", UserProperties: []message.UserProperty{{Key: "traceparent", Value: parent}}}
	opts := backbone.PublishOptions{Protocol: telemetry.ProtocolMQTT}
	ctx, span := n.startPublish(context.Background(), m, &opts)
	span.End()
	sc := trace.SpanContextFromContext(ctx)
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace %s, want the publisher's", sc.TraceID())
	}
	if opts.TraceParent != telemetry.TraceParent(ctx) || opts.TraceParent == parent {
		t.Errorf("carried traceparent %q, want the publish span's", opts.TraceParent)
	}
	spans := rec.SpansNamed("publish")
	if len(spans) != 1 || spans[0].Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("publish spans %v", spans)
	}
}
