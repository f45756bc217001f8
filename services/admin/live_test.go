package admin

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// liveFixture is an admin server wired to an embedded store and a backbone
// on an embedded NATS, with tenants "acme" and "beta".
type liveFixture struct {
	fixture
	st store.Store
	bb *backbone.Backbone
	// nc is the backbone's NATS connection, on which tests play edges.
	nc *nats.Conn
}

// dataPlane returns an embedded store and a backbone on an embedded NATS,
// private to the test.
func dataPlane(t *testing.T) (store.Store, *backbone.Backbone) {
	t.Helper()
	st, bb, _ := dataPlaneConn(t)
	return st, bb
}

// dataPlaneConn is dataPlane with the backbone's NATS connection.
func dataPlaneConn(t *testing.T) (store.Store, *backbone.Backbone, *nats.Conn) {
	t.Helper()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	nc := testserver.NATSConn(t, testserver.NATS(t))
	bb, err := backbone.New(nc, backbone.Config{MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return st, bb, nc
}

// wired returns the options giving an admin server a private data plane.
func wired(t *testing.T) []Option {
	st, bb := dataPlane(t)
	return []Option{WithStore(st), WithBackbone(bb)}
}

func newLiveFixture(t *testing.T) liveFixture {
	t.Helper()
	st, bb, nc := dataPlaneConn(t)
	f := newFixture(t, Config{}, WithStore(st), WithBackbone(bb))
	for _, id := range []string{"acme", "beta"} {
		if err := f.store.Ensure(t.Context(), tenant.Tenant{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	return liveFixture{f, st, bb, nc}
}

// applyStream does the session service's job for tenant: applies every
// message of its stream to the store.
func (f liveFixture) applyStream(t *testing.T, tenantID string) {
	t.Helper()
	ctx := t.Context()
	epoch, err := f.bb.Epoch(ctx, tenantID)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*message.Message
	if err := f.bb.Range(ctx, tenantID, []string{"#"}, 0, 0, func(m *message.Message) error {
		msgs = append(msgs, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Apply(ctx, tenantID, epoch, msgs, store.ReplayLimits{}); err != nil {
		t.Fatal(err)
	}
}

// TestRetainedAndPublish ensures server-side publish stores messages in the tenant's stream, retained ones are listed (filtered, paged) and read through REST and gRPC once applied, and deleting one publishes an empty retained message that clears it.
func TestRetainedAndPublish(t *testing.T) {
	f := newLiveFixture(t)
	op := operatorToken

	// REST publish: payload is base64 in JSON.
	var positions []string
	for _, tp := range []string{"sensors/b/temp", "sensors/a/temp", "other/x", "sensors/c/hum"} {
		out := f.must(t, 200, "POST", "/v1/tenants/acme/publish", op, map[string]any{
			"topic": tp, "payload": base64.StdEncoding.EncodeToString([]byte("v " + tp)), "retain": true, "contentType": "text/plain"})
		pos, _ := out["position"].(string)
		if _, err := message.ParsePosition(pos); err != nil || pos == "" {
			t.Fatalf("publish %s: position %q", tp, pos)
		}
		positions = append(positions, pos)
	}
	// gRPC publish, not retained.
	g := f.grpc(t, op).live
	resp, err := g.Publish(t.Context(), &adminv1.PublishRequest{Tenant: "acme", Topic: "sensors/a/temp/live", Payload: []byte("x")})
	if err != nil || resp.GetPosition() == "" {
		t.Fatalf("gRPC publish: %v %v", resp, err)
	}
	f.must(t, 400, "POST", "/v1/tenants/acme/publish", op, map[string]any{"topic": "bad/+"})
	f.must(t, 404, "POST", "/v1/tenants/nobody/publish", op, map[string]any{"topic": "a"})

	// The stream has all five, in order, with the tenant from the request.
	var got []string
	f.bb.Range(t.Context(), "acme", []string{"#"}, 0, 0, func(m *message.Message) error {
		got = append(got, fmt.Sprintf("%s:%v:%s", m.Topic, m.Retain, m.ContentType))
		return nil
	})
	if fmt.Sprint(got) != "[sensors/b/temp:true:text/plain sensors/a/temp:true:text/plain other/x:true:text/plain sensors/c/hum:true:text/plain sensors/a/temp/live:false:]" {
		t.Fatalf("stream: %v", got)
	}

	f.applyStream(t, "acme")

	// Filtered, paged, in topic order.
	var topics []string
	for path := "/v1/tenants/acme/retained?filter=sensors/%23&page_size=2"; ; {
		page := f.must(t, 200, "GET", path, op, nil)
		for _, m := range page["messages"].([]any) {
			topics = append(topics, m.(map[string]any)["topic"].(string))
		}
		next, _ := page["nextPageToken"].(string)
		if next == "" {
			break
		}
		path = "/v1/tenants/acme/retained?filter=sensors/%23&page_size=2&page_token=" + next
	}
	if fmt.Sprint(topics) != "[sensors/a/temp sensors/b/temp sensors/c/hum]" {
		t.Fatalf("listed %v", topics)
	}
	all := f.must(t, 200, "GET", "/v1/tenants/acme/retained", op, nil)
	if n := len(all["messages"].([]any)); n != 4 {
		t.Fatalf("listed %d, want 4", n)
	}
	f.must(t, 400, "GET", "/v1/tenants/acme/retained?filter=a/%23/b", op, nil)

	m := f.must(t, 200, "GET", "/v1/tenants/acme/retained/sensors/a/temp", op, nil)
	if m["topic"] != "sensors/a/temp" || m["payload"] != base64.StdEncoding.EncodeToString([]byte("v sensors/a/temp")) ||
		m["position"] != positions[1] || m["contentType"] != "text/plain" || m["publishTime"] == nil {
		t.Fatalf("retained %v (positions %v)", m, positions)
	}
	f.must(t, 404, "GET", "/v1/tenants/acme/retained/sensors/none", op, nil)
	gm, err := g.GetRetained(t.Context(), &adminv1.GetRetainedRequest{Tenant: "acme", Topic: "other/x"})
	if err != nil || string(gm.GetPayload()) != "v other/x" {
		t.Fatalf("gRPC GetRetained: %v %v", gm, err)
	}
	// Another tenant sees none of it.
	if out := f.must(t, 200, "GET", "/v1/tenants/beta/retained", op, nil); len(out["messages"].([]any)) != 0 {
		t.Fatalf("beta retained %v", out)
	}

	// Delete: an empty retained message goes into the stream; once
	// applied, the topic has none.
	f.must(t, 200, "DELETE", "/v1/tenants/acme/retained/sensors/a/temp", op, nil)
	if _, err := g.DeleteRetained(t.Context(), &adminv1.DeleteRetainedRequest{Tenant: "acme", Topic: "other/x"}); err != nil {
		t.Fatal(err)
	}
	f.applyStream(t, "acme")
	f.must(t, 404, "GET", "/v1/tenants/acme/retained/sensors/a/temp", op, nil)
	if _, err := g.GetRetained(t.Context(), &adminv1.GetRetainedRequest{Tenant: "acme", Topic: "other/x"}); status.Code(err) != codes.NotFound {
		t.Fatalf("gRPC GetRetained after delete: %v", err)
	}
	if all := f.must(t, 200, "GET", "/v1/tenants/acme/retained", op, nil); len(all["messages"].([]any)) != 2 {
		t.Fatalf("after delete: %v", all)
	}
}

// TestSessions ensures persistent sessions are listed (paged), read and deleted through REST and gRPC, per tenant.
func TestSessions(t *testing.T) {
	f := newLiveFixture(t)
	op := operatorToken
	ctx := t.Context()
	disc := time.Now().Add(-time.Minute).Truncate(time.Second)
	for _, id := range []string{"c3", "c1", "c2"} {
		s := &store.Session{ClientID: id, ExpiryInterval: 3600, Subscriptions: map[string]store.Subscription{"b/#": {QoS: 1}, "a/+": {}}}
		if id == "c1" {
			s.ConnectedTo = "edge-a/7"
		} else {
			s.DisconnectedAt = disc
		}
		if err := f.st.SaveSession(ctx, "acme", s, store.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.st.SaveSession(ctx, "beta", &store.Session{ClientID: "other"}, store.Limits{}); err != nil {
		t.Fatal(err)
	}

	var ids []string
	for path := "/v1/tenants/acme/sessions?page_size=2"; ; {
		page := f.must(t, 200, "GET", path, op, nil)
		for _, s := range page["sessions"].([]any) {
			ids = append(ids, s.(map[string]any)["clientId"].(string))
		}
		next, _ := page["nextPageToken"].(string)
		if next == "" {
			break
		}
		path = "/v1/tenants/acme/sessions?page_size=2&page_token=" + next
	}
	if fmt.Sprint(ids) != "[c1 c2 c3]" {
		t.Fatalf("listed %v", ids)
	}
	s := f.must(t, 200, "GET", "/v1/tenants/acme/sessions/c1", op, nil)
	if s["connected"] != true || fmt.Sprint(s["subscriptions"]) != "[a/+ b/#]" || s["expireTime"] != nil || s["tenant"] != "acme" {
		t.Fatalf("c1 %v", s)
	}
	g := f.grpc(t, op).live
	gs, err := g.GetSession(ctx, &adminv1.GetSessionRequest{Tenant: "acme", ClientId: "c2"})
	if err != nil || gs.GetConnected() || !gs.GetExpireTime().AsTime().Equal(disc.Add(time.Hour)) {
		t.Fatalf("gRPC c2: %v %v", gs, err)
	}
	f.must(t, 404, "GET", "/v1/tenants/acme/sessions/other", op, nil)
	f.must(t, 404, "GET", "/v1/tenants/nobody/sessions", op, nil)
	f.must(t, 400, "GET", "/v1/tenants/acme/sessions?page_size=-1", op, nil)

	f.must(t, 200, "DELETE", "/v1/tenants/acme/sessions/c2", op, nil)
	f.must(t, 404, "DELETE", "/v1/tenants/acme/sessions/c2", op, nil)
	if _, err := g.DeleteSession(ctx, &adminv1.DeleteSessionRequest{Tenant: "acme", ClientId: "c3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.LoadSession(ctx, "acme", "c3"); err != store.ErrNoSession {
		t.Fatalf("c3 after delete: %v", err)
	}
	gl, err := g.ListSessions(ctx, &adminv1.ListSessionsRequest{Tenant: "acme"})
	if err != nil || len(gl.GetSessions()) != 1 || gl.GetSessions()[0].GetClientId() != "c1" || gl.GetNextPageToken() != "" {
		t.Fatalf("gRPC list after delete: %v %v", gl, err)
	}
	if _, err := f.st.LoadSession(ctx, "beta", "other"); err != nil {
		t.Fatalf("beta's session: %v", err)
	}
}

// TestLiveTenantScope ensures a tenant-scoped admin key reaches its own tenant's live state and gets PERMISSION_DENIED for another's, and that an admin server without the data plane still answers UNIMPLEMENTED.
func TestLiveTenantScope(t *testing.T) {
	f := newLiveFixture(t)
	ak, err := f.grpc(t, operatorToken).admin.CreateAdminKey(t.Context(), &adminv1.CreateAdminKeyRequest{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	tok := ak.GetToken()
	f.must(t, 200, "GET", "/v1/tenants/acme/sessions", tok, nil)
	f.must(t, 200, "GET", "/v1/tenants/acme/retained", tok, nil)
	f.must(t, 200, "POST", "/v1/tenants/acme/publish", tok, map[string]any{"topic": "t"})
	f.must(t, 200, "GET", "/v1/tenants/acme/messages?after=0", tok, nil)
	for _, req := range []struct{ method, path string }{
		{"GET", "/v1/tenants/beta/sessions"},
		{"GET", "/v1/tenants/beta/sessions/x"},
		{"DELETE", "/v1/tenants/beta/sessions/x"},
		{"GET", "/v1/tenants/beta/retained"},
		{"GET", "/v1/tenants/beta/retained/t"},
		{"DELETE", "/v1/tenants/beta/retained/t"},
		{"POST", "/v1/tenants/beta/publish"},
		{"GET", "/v1/tenants/beta/messages"},
		{"GET", "/v1/tenants/beta/messages?after=0"},
	} {
		var body any
		if req.method == "POST" {
			body = map[string]any{"topic": "t"}
		}
		f.must(t, http.StatusForbidden, req.method, req.path, tok, body)
	}
}

// fakeEdge answers the admin control requests for tenant "acme" like an
// edge holding conns, and records kicks.
func fakeEdge(t *testing.T, nc *nats.Conn, cfg backbone.Config, name string, conns []backbone.ConnectionInfo, kicked chan<- string) {
	t.Helper()
	sub, err := nc.Subscribe(cfg.AdminControlSubject("*", backbone.AdminConnections), func(m *nats.Msg) {
		var req backbone.ConnectionsRequest
		json.Unmarshal(m.Data, &req)
		r := backbone.ConnectionsReply{Edge: name, Count: len(conns)}
		if !req.CountOnly && strings.Contains(m.Subject, ".acme.") {
			r.Connections = conns
		}
		if !strings.Contains(m.Subject, ".acme.") {
			r.Count = 0
		}
		b, _ := json.Marshal(r)
		m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	ksub, err := nc.Subscribe(cfg.AdminControlSubject("*", backbone.AdminKick), func(m *nats.Msg) {
		var req backbone.KickRequest
		json.Unmarshal(m.Data, &req)
		if req.Edge != name {
			return
		}
		n := 0
		for _, c := range conns {
			if c.ID == req.ID {
				n++
				kicked <- name + "/" + c.ID
			}
		}
		b, _ := json.Marshal(backbone.KickReply{Kicked: n})
		m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ksub.Unsubscribe() })
}

// TestConnections ensures connections are gathered from every edge, listed in id order with paging through REST and gRPC with the filters each holds, kicked on the edge named in the id, and counted in the usage.
func TestConnections(t *testing.T) {
	f := newLiveFixture(t)
	op := operatorToken
	since := time.Now().Add(-time.Minute).Truncate(time.Second)
	kicked := make(chan string, 4)
	nc := f.nc
	fakeEdge(t, nc, f.bb.Config(), "edge-a", []backbone.ConnectionInfo{
		{ID: "m1", Protocol: "mqtt", ClientID: "m1", Credential: "key:k1", Remote: "10.0.0.1:1", Since: since, Subscriptions: []string{"a/#", "b"}},
		{ID: "s1", Protocol: "sse", ClientID: "svc", Since: since},
	}, kicked)
	fakeEdge(t, nc, f.bb.Config(), "edge-b", []backbone.ConnectionInfo{
		{ID: "m2", Protocol: "mqtt", ClientID: "m2", Since: since},
	}, kicked)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	var ids []string
	for path := "/v1/tenants/acme/connections?page_size=2"; ; {
		page := f.must(t, 200, "GET", path, op, nil)
		for _, c := range page["connections"].([]any) {
			e, id, _ := parseConnID(c.(map[string]any)["id"].(string))
			ids = append(ids, e+"/"+id)
		}
		next, _ := page["nextPageToken"].(string)
		if next == "" {
			break
		}
		path = "/v1/tenants/acme/connections?page_size=2&page_token=" + url.QueryEscape(next)
	}
	if fmt.Sprint(ids) != "[edge-a/m1 edge-a/s1 edge-b/m2]" {
		t.Fatalf("listed %v", ids)
	}
	g := f.grpc(t, op).live
	all, err := g.ListConnections(t.Context(), &adminv1.ListConnectionsRequest{Tenant: "acme"})
	if err != nil || len(all.GetConnections()) != 3 {
		t.Fatalf("gRPC list: %v %v", all, err)
	}
	c := all.GetConnections()[0]
	if c.GetEdge() != "edge-a" || c.GetProtocol() != "mqtt" || c.GetClientId() != "m1" || c.GetKeyId() != "key:k1" ||
		c.GetRemoteAddr() != "10.0.0.1:1" || !c.GetConnectTime().AsTime().Equal(since) || c.GetTenant() != "acme" ||
		fmt.Sprint(c.GetSubscriptions()) != "[a/# b]" {
		t.Fatalf("connection %v", c)
	}

	f.must(t, 200, "DELETE", "/v1/tenants/acme/connections/"+connID("edge-b", "m2"), op, nil)
	if got := <-kicked; got != "edge-b/m2" {
		t.Fatalf("kicked %s", got)
	}
	if _, err := g.KickConnection(t.Context(), &adminv1.KickConnectionRequest{Tenant: "acme", Id: connID("edge-a", "s1")}); err != nil {
		t.Fatal(err)
	}
	if got := <-kicked; got != "edge-a/s1" {
		t.Fatalf("kicked %s", got)
	}
	if _, err := g.KickConnection(t.Context(), &adminv1.KickConnectionRequest{Tenant: "acme", Id: connID("edge-a", "none")}); status.Code(err) != codes.NotFound {
		t.Fatalf("kick unknown: %v", err)
	}
	if _, err := g.KickConnection(t.Context(), &adminv1.KickConnectionRequest{Tenant: "acme", Id: connID("edge-z", "m1")}); status.Code(err) != codes.NotFound {
		t.Fatalf("kick on unknown edge: %v", err)
	}
	if _, err := g.KickConnection(t.Context(), &adminv1.KickConnectionRequest{Tenant: "acme", Id: "m1"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("kick without edge: %v", err)
	}

	if err := f.st.SaveSession(t.Context(), "acme", &store.Session{ClientID: "m1", ConnectedTo: "edge-a/conn-17"}, store.Limits{}); err != nil {
		t.Fatal(err)
	}
	u := f.must(t, 200, "GET", "/v1/tenants/acme/usage", op, nil)
	if u["connections"] != "3" || u["sessions"] != "1" || u["tenant"] != "acme" {
		t.Fatalf("usage %v", u)
	}
	if u := f.must(t, 200, "GET", "/v1/tenants/beta/usage", op, nil); u["connections"] != nil && u["connections"] != "0" {
		t.Fatalf("beta usage %v", u)
	}

	// Deleting a connected session closes the connection holding it.
	f.must(t, 200, "DELETE", "/v1/tenants/acme/sessions/m1", op, nil)
	select {
	case got := <-kicked:
		if got != "edge-a/m1" {
			t.Fatalf("kicked %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("deleted session's connection not kicked")
	}
}
