package herald_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/telemetry/telemetrytest"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge"
	"github.com/heraldmq/herald/services/session"
	"github.com/nats-io/nats-server/v2/server"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const tenantID = "tel"

// runEdge starts an edge with its own NATS connection and telemetry and
// returns its MQTT and HTTP addresses.
func runEdge(t *testing.T, ns *server.Server, st *store.Embedded, id string, rec *telemetrytest.Recorder) (mqttAddr, httpAddr string) {
	t.Helper()
	bb, err := backbone.New(testserver.NATSConn(t, ns), backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20},
		backbone.WithTelemetry(rec.Providers()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := edge.New(edge.Config{ID: id, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AnonymousTenant: tenantID},
		bb, st, store.NewEdgeWriter(st), nil, edge.WithTelemetry(rec.Providers()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("edge %s: %v", id, err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	m, h, err := s.Addrs(wctx)
	if err != nil {
		t.Fatal(err)
	}
	return m.String(), h.String()
}

// TestTelemetryAcrossEdges ensures one MQTT 5 QoS 1 publish on edge A,
// received over SSE on edge B and applied by the session service, is
// counted once on each side (messages in on A for mqtt, out on B for sse,
// one latency recording, the connection gauges) and traced as one trace:
// the publisher's traceparent is the parent of A's publish span, which is
// the parent of B's deliver span and of the session's apply span, and an
// MQTT 5 subscriber on B gets B's deliver span as its traceparent.
func TestTelemetryAcrossEdges(t *testing.T) {
	ns := testserver.NATS(t)
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "session.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	recA := telemetrytest.New(t, "herald-edge", "edge-a")
	recB := telemetrytest.New(t, "herald-edge", "edge-b")
	recS := telemetrytest.New(t, "herald-session", "session-1")
	mqttA, _ := runEdge(t, ns, st, "edge-a", recA)
	mqttB, httpB := runEdge(t, ns, st, "edge-b", recB)

	sbb, err := backbone.New(testserver.NATSConn(t, ns), backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	scfg := session.Config{ReplicaID: "session-1", PollInterval: 100 * time.Millisecond, FetchWait: 50 * time.Millisecond,
		Telemetry: recS.Providers()}
	svc, err := session.New(scfg, sbb, sbb.Bucket(scfg.LeaseBucket()), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sctx, scancel := context.WithCancel(ctx)
	sdone := make(chan error, 1)
	go func() { sdone <- svc.Run(sctx) }()
	t.Cleanup(func() { scancel(); <-sdone })

	// The SSE stream on B is subscribed once its first line arrives.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpB+"/sse?topic=sensors/%23", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sse: %s", resp.Status)
	}
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "retry:") {
		t.Fatalf("sse first line %q", lines.Text())
	}

	// Two MQTT 5 subscribers on B as well: the one that asked at CONNECT
	// (herald-trace: 1) gets B's deliver span in its delivery's
	// traceparent user property, the other the publisher's, unaltered
	// [MQTT-3.3.2-17].
	mqttSubscriber := func(id string, user paho.UserProperties) <-chan *paho.Publish {
		subConn, err := net.Dial("tcp", mqttB)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *paho.Publish, 1)
		sub := paho.NewClient(paho.ClientConfig{Conn: subConn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { got <- pr.Packet; return true, nil }}})
		ca, err := sub.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, Properties: &paho.ConnectProperties{User: user}})
		if err != nil || ca.ReasonCode != 0 {
			t.Fatalf("connect subscriber: %v", err)
		}
		t.Cleanup(func() { _ = sub.Disconnect(&paho.Disconnect{}) })
		if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "sensors/#", QoS: 1}}}); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		return got
	}
	got := mqttSubscriber("sub1", paho.UserProperties{{Key: "herald-trace", Value: "1"}})
	gotPlain := mqttSubscriber("sub2", nil)

	conn, err := net.Dial("tcp", mqttA)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	if ca, err := c.Connect(ctx, &paho.Connect{ClientID: "pub1", CleanStart: true, KeepAlive: 30}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect: %v", err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	pr, err := c.Publish(ctx, &paho.Publish{Topic: "sensors/kitchen", QoS: 1, Payload: []byte("21.5"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "traceparent", Value: "00-" + clientTrace + "-" + clientSpan + "-01"}}}})
	if err != nil || pr.ReasonCode != 0 {
		t.Fatalf("publish: %v %+v", err, pr)
	}

	var data string
	for lines.Scan() {
		if d, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
			data = d
			break
		}
	}
	if !strings.Contains(data, "21.5") {
		t.Fatalf("sse data %q", data)
	}
	var delivered, deliveredPlain *paho.Publish
	for _, c := range []struct {
		ch <-chan *paho.Publish
		p  **paho.Publish
	}{{got, &delivered}, {gotPlain, &deliveredPlain}} {
		select {
		case *c.p = <-c.ch:
		case <-ctx.Done():
			t.Fatal("no MQTT delivery on B")
		}
	}

	mqtt := []attribute.KeyValue{attribute.String(telemetry.LabelProtocol, telemetry.ProtocolMQTT), attribute.String(telemetry.LabelTenant, tenantID)}
	sse := []attribute.KeyValue{attribute.String(telemetry.LabelProtocol, telemetry.ProtocolSSE), attribute.String(telemetry.LabelTenant, tenantID)}
	for _, tc := range []struct {
		rec   *telemetrytest.Recorder
		edge  string
		name  string
		attrs []attribute.KeyValue
		want  float64
	}{
		{recA, "A", telemetry.MetricEdgeMessagesReceived, mqtt, 1},
		{recA, "A", telemetry.MetricEdgeBytesReceived, mqtt, 4},
		{recA, "A", telemetry.MetricEdgeConnections, mqtt, 1},
		{recA, "A", telemetry.MetricEdgeMessagesSent, nil, 0},
		{recB, "B", telemetry.MetricEdgeMessagesSent, sse, 1},
		{recB, "B", telemetry.MetricEdgeBytesSent, sse, 4},
		{recB, "B", telemetry.MetricEdgeConnections, sse, 1},
		{recB, "B", telemetry.MetricEdgeMessagesSent, []attribute.KeyValue{attribute.String(telemetry.LabelProtocol, telemetry.ProtocolMQTT)}, 2},
		{recB, "B", telemetry.MetricEdgeMessagesReceived, nil, 0},
		{recB, "B", telemetry.MetricEdgeSubscriptions, nil, 3},
	} {
		if got, _ := tc.rec.Sum(t, tc.name, tc.attrs...); got != tc.want {
			t.Errorf("edge %s: %s%v = %v, want %v", tc.edge, tc.name, tc.attrs, got, tc.want)
		}
	}
	if n := recB.HistogramCount(t, telemetry.MetricEdgeDeliveryDuration, sse...); n != 1 {
		t.Errorf("edge B: delivery latency count = %d, want 1", n)
	}
	if n := recA.HistogramCount(t, telemetry.MetricBackbonePublishDuration, attribute.String(telemetry.LabelResult, telemetry.ResultOK)); n != 1 {
		t.Errorf("edge A: JetStream publish latency count = %d, want 1", n)
	}

	// Spans end on other goroutines than the SSE write: wait for them.
	publish := waitSpan(ctx, t, recA, "publish")
	deliver := waitSpan(ctx, t, recB, "deliver")
	apply := waitSpan(ctx, t, recS, "session.apply")
	store := waitSpan(ctx, t, recA, "jetstream.store")
	want, _ := trace.TraceIDFromHex(clientTrace)
	parent, _ := trace.SpanIDFromHex(clientSpan)
	if publish.SpanContext.TraceID() != want || publish.Parent.SpanID() != parent {
		t.Errorf("publish span %v has parent %v, want the client's %s/%s", publish.SpanContext, publish.Parent, clientTrace, clientSpan)
	}
	for _, s := range []tracetest.SpanStub{deliver, apply, store} {
		if s.SpanContext.TraceID() != want || s.Parent.SpanID() != publish.SpanContext.SpanID() {
			t.Errorf("%s span: trace %s parent %s, want trace %s parent %s (publish)", s.Name,
				s.SpanContext.TraceID(), s.Parent.SpanID(), want, publish.SpanContext.SpanID())
		}
	}
	if got := recB.SpansNamed("deliver"); len(got) != 1 {
		t.Errorf("edge B recorded %d deliver spans, want 1", len(got))
	}
	if got := recA.SpansNamed("deliver"); len(got) != 0 {
		t.Errorf("edge A (no subscriber) recorded %d deliver spans", len(got))
	}
	wantTP := "00-" + clientTrace + "-" + deliver.SpanContext.SpanID().String() + "-01"
	if tp := delivered.Properties.User.Get("traceparent"); tp != wantTP {
		t.Errorf("MQTT 5 delivery traceparent %q, want B's deliver span %q", tp, wantTP)
	}
	if tp, want := deliveredPlain.Properties.User.Get("traceparent"), "00-"+clientTrace+"-"+clientSpan+"-01"; tp != want || len(deliveredPlain.Properties.User) != 1 {
		t.Errorf("MQTT 5 delivery to a client that did not ask: user properties %v, want the publisher's traceparent %q alone", deliveredPlain.Properties.User, want)
	}
	if !spanAttr(deliver, "herald.subscribers", attribute.IntValue(3)) || !spanAttr(publish, "herald.protocol", attribute.StringValue("mqtt")) {
		t.Errorf("span attributes: deliver %v, publish %v", deliver.Attributes, publish.Attributes)
	}
	if got := resourceAttr(publish, "service.instance.id"); got != "edge-a" {
		t.Errorf("publish span from instance %q", got)
	}
	if got := resourceAttr(deliver, "service.instance.id"); got != "edge-b" {
		t.Errorf("deliver span from instance %q", got)
	}
}

func waitSpan(ctx context.Context, t *testing.T, rec *telemetrytest.Recorder, name string) tracetest.SpanStub {
	t.Helper()
	for {
		if s := rec.SpansNamed(name); len(s) > 0 {
			return s[0]
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %q span", name)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func spanAttr(s tracetest.SpanStub, key string, v attribute.Value) bool {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value == v
		}
	}
	return false
}

func resourceAttr(s tracetest.SpanStub, key string) string {
	if s.Resource == nil {
		return ""
	}
	v, _ := s.Resource.Set().Value(attribute.Key(key))
	return v.AsString()
}
