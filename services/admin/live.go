package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/control"
	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/topic"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Option adds data-plane connections to what New builds.
type Option func(*Server)

// WithStore gives the admin API the session store (retained messages,
// persistent sessions). Without it those calls answer UNIMPLEMENTED.
func WithStore(st store.Store) Option { return func(s *Server) { s.store = st } }

// WithBackbone gives the admin API the NATS JetStream backbone (server-side
// publish, clearing retained messages). Without it those calls answer
// UNIMPLEMENTED.
func WithBackbone(bb *backbone.Backbone) Option { return func(s *Server) { s.bb = bb } }

// liveService implements herald.admin.v1.LiveService. Each call checks the
// caller's access to the tenant first, so a scoped key learns nothing about
// other tenants, then that the tenant exists. Calls needing a part of the
// data plane the server was not given (WithStore, WithBackbone) answer
// UNIMPLEMENTED.
type liveService struct {
	adminv1.UnimplementedLiveServiceServer
	tenants *tenant.Etcd
	store   store.Store        // nil: not wired
	bb      *backbone.Backbone // nil: not wired
	edges   edges              // bb's control plane
	log     *slog.Logger
	// edgeTimeout bounds the wait for the edges' replies.
	edgeTimeout time.Duration
}

func notWired(ctx context.Context, tenantID, what, needs string) error {
	if err := tenantAccess(ctx, tenantID); err != nil {
		return err
	}
	return status.Errorf(codes.Unimplemented, "%s is not available: it needs %s, which this admin service is not connected to", what, needs)
}

const (
	needsEdges    = "the edges (control requests over NATS, --nats-url)"
	needsStore    = "the session store (--redis-addrs)"
	needsBackbone = "the NATS JetStream backbone (--nats-url)"
)

// defaultPage and maxPage bound live-state pages.
const (
	defaultPage = 100
	maxPage     = 1000
)

func pageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, invalid("page_size is negative")
	case n == 0:
		return defaultPage, nil
	default:
		return min(int(n), maxPage), nil
	}
}

// check authorizes the caller for tenantID, reports a missing dependency,
// and checks that the tenant exists.
func (l *liveService) check(ctx context.Context, tenantID, what, needs string, wired bool) error {
	_, err := l.tenant(ctx, tenantID, what, needs, wired)
	return err
}

// tenant is check returning the tenant.
func (l *liveService) tenant(ctx context.Context, tenantID, what, needs string, wired bool) (tenant.Tenant, error) {
	if !wired {
		return tenant.Tenant{}, notWired(ctx, tenantID, what, needs)
	}
	if err := tenantAccess(ctx, tenantID); err != nil {
		return tenant.Tenant{}, err
	}
	tn, err := l.tenants.Get(ctx, tenantID)
	if err != nil {
		return tenant.Tenant{}, grpcError(l.log, err)
	}
	return tn, nil
}

// storeError maps the session store's errors (pkg/fault's table, by
// kind); anything the store did not classify is its own failure, reported
// as unavailable without detail.
func (l *liveService) storeError(err error) error {
	switch k := fault.KindOf(err); k {
	case fault.NotFound:
		return status.Error(codes.NotFound, "no such session")
	case fault.Invalid, fault.Conflict, fault.Canceled, fault.Deadline:
		return status.Error(k.Codes().GRPC, err.Error())
	}
	l.log.Warn("admin API: session store failed", "err", err)
	return status.Error(codes.Unavailable, "session store unavailable")
}

// EdgeReplyTimeout is how long the admin API gathers the edges' replies
// to a connections request: every edge answers within it, and the call
// takes that long.
const EdgeReplyTimeout = 500 * time.Millisecond

// edges is the backbone's control plane as the admin API uses it: a
// request whose answers are gathered from every edge for a while, and a
// request one edge answers. backbone.Control implements it (and
// backbone.MemoryControl), both checked by the conformance suite of
// pkg/backbone/backbonetest.
type edges interface {
	Gather(ctx context.Context, subject string, data []byte, window time.Duration) ([]*control.Msg, error)
	Request(ctx context.Context, subject string, header map[string]string, data []byte) (*control.Msg, error)
}

// gather publishes a control request about tenant to every edge and
// returns the replies that arrive within l.edgeTimeout.
func (l *liveService) gather(ctx context.Context, tenantID string, req backbone.ConnectionsRequest) ([]backbone.ConnectionsReply, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	msgs, err := l.edges.Gather(ctx, l.bb.Config().AdminControlSubject(tenantID, backbone.AdminConnections), data, l.edgeTimeout)
	if err != nil {
		if ctx.Err() != nil {
			return nil, grpcError(l.log, ctx.Err())
		}
		return nil, l.natsError(err)
	}
	var out []backbone.ConnectionsReply
	for _, m := range msgs {
		var r backbone.ConnectionsReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			l.log.Warn("admin API: bad reply from an edge", "err", err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func (l *liveService) natsError(err error) error {
	l.log.Warn("admin API: NATS request failed", "err", err)
	return status.Error(codes.Unavailable, "backbone unavailable")
}

// connID makes a connection's cluster-wide id: "<edge>/<connection>" in
// unpadded base64url, so that it is one URL path segment whatever the edge
// id and MQTT client id hold.
func connID(edge, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(edge + "/" + id))
}

// parseConnID reverses connID.
func parseConnID(s string) (edge, id string, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", "", false
	}
	edge, id, ok = strings.Cut(string(b), "/")
	return edge, id, ok && edge != "" && id != ""
}

// kick asks edge to close the tenant's connections registered as id and
// returns how many it closed; an edge that does not answer is NOT_FOUND.
func (l *liveService) kick(ctx context.Context, tenantID, edge, id string) (int, error) {
	data, err := json.Marshal(backbone.KickRequest{Edge: edge, ID: id})
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithTimeout(ctx, 2*l.edgeTimeout)
	defer cancel()
	m, err := l.edges.Request(rctx, l.bb.Config().AdminControlSubject(tenantID, backbone.AdminKick), nil, data)
	switch {
	case errors.Is(err, control.ErrNoResponders), errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return 0, status.Errorf(codes.NotFound, "edge %q did not answer: no such connection", edge)
	case err != nil:
		return 0, l.natsError(err)
	}
	var r backbone.KickReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return 0, l.natsError(err)
	}
	return r.Kicked, nil
}

// ListConnections implements adminv1.LiveServiceServer: it asks every edge
// and lists the connections in (edge, connection) order; the page token is
// the last id of the previous page.
func (l *liveService) ListConnections(ctx context.Context, req *adminv1.ListConnectionsRequest) (*adminv1.ListConnectionsResponse, error) {
	if err := l.check(ctx, req.GetTenant(), "listing connections", needsEdges, l.bb != nil); err != nil {
		return nil, err
	}
	n, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	replies, err := l.gather(ctx, req.GetTenant(), backbone.ConnectionsRequest{})
	if err != nil {
		return nil, err
	}
	var conns []*adminv1.Connection
	for _, r := range replies {
		for _, c := range r.Connections {
			conns = append(conns, &adminv1.Connection{
				Id:            connID(r.Edge, c.ID),
				Tenant:        req.GetTenant(),
				Edge:          r.Edge,
				Protocol:      c.Protocol,
				ClientId:      c.ClientID,
				KeyId:         c.Credential,
				RemoteAddr:    c.Remote,
				ConnectTime:   timestamppb.New(c.Since),
				Subscriptions: c.Subscriptions,
			})
		}
	}
	key := func(c *adminv1.Connection) string {
		b, _ := base64.RawURLEncoding.DecodeString(c.GetId())
		return string(b)
	}
	slices.SortFunc(conns, func(a, b *adminv1.Connection) int { return strings.Compare(key(a), key(b)) })
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			return nil, invalid("bad page_token")
		}
		i := 0
		for i < len(conns) && key(conns[i]) <= string(b) {
			i++
		}
		conns = conns[i:]
	}
	resp := &adminv1.ListConnectionsResponse{}
	if len(conns) > n {
		conns = conns[:n]
		resp.NextPageToken = conns[n-1].GetId()
	}
	resp.Connections = conns
	return resp, nil
}

// KickConnection implements adminv1.LiveServiceServer: the edge named in the
// id closes the connection (MQTT: DISCONNECT; SSE, WebSocket: end of stream).
func (l *liveService) KickConnection(ctx context.Context, req *adminv1.KickConnectionRequest) (*adminv1.KickConnectionResponse, error) {
	if err := l.check(ctx, req.GetTenant(), "kicking a connection", needsEdges, l.bb != nil); err != nil {
		return nil, err
	}
	edge, id, ok := parseConnID(req.GetId())
	if !ok {
		return nil, invalid("id is not a connection id as listed by ListConnections")
	}
	n, err := l.kick(ctx, req.GetTenant(), edge, id)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, status.Errorf(codes.NotFound, "no connection %q", req.GetId())
	}
	l.log.Info("admin API: connection kicked", "tenant", req.GetTenant(), "id", req.GetId())
	return &adminv1.KickConnectionResponse{}, nil
}

func sessionProto(tenantID string, s *store.Session) *adminv1.Session {
	out := &adminv1.Session{
		Tenant:    tenantID,
		ClientId:  s.ClientID,
		Connected: s.ConnectedTo != "",
		Subscriptions: slices.Sorted(func(yield func(string) bool) {
			for f := range s.Subscriptions {
				if !yield(f) {
					return
				}
			}
		}),
	}
	if t, ok := s.ExpiresAt(); ok {
		out.ExpireTime = timestamppb.New(t)
	}
	return out
}

// ListSessions implements adminv1.LiveServiceServer.
func (l *liveService) ListSessions(ctx context.Context, req *adminv1.ListSessionsRequest) (*adminv1.ListSessionsResponse, error) {
	if err := l.check(ctx, req.GetTenant(), "listing sessions", needsStore, l.store != nil); err != nil {
		return nil, err
	}
	n, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	// One more than asked tells whether there is a next page.
	page, err := l.store.Sessions(ctx, req.GetTenant(), req.GetPageToken(), n+1)
	if err != nil {
		return nil, l.storeError(err)
	}
	resp := &adminv1.ListSessionsResponse{}
	if len(page) > n {
		page = page[:n]
		resp.NextPageToken = page[n-1].ClientID
	}
	for _, s := range page {
		resp.Sessions = append(resp.Sessions, sessionProto(req.GetTenant(), s))
	}
	return resp, nil
}

// GetSession implements adminv1.LiveServiceServer.
func (l *liveService) GetSession(ctx context.Context, req *adminv1.GetSessionRequest) (*adminv1.Session, error) {
	if err := l.check(ctx, req.GetTenant(), "reading a session", needsStore, l.store != nil); err != nil {
		return nil, err
	}
	if req.GetClientId() == "" {
		return nil, invalid("client_id is required")
	}
	s, err := l.store.LoadSession(ctx, req.GetTenant(), req.GetClientId())
	if err != nil {
		return nil, l.storeError(err)
	}
	return sessionProto(req.GetTenant(), s), nil
}

// DeleteSession implements adminv1.LiveServiceServer: the session is
// deleted, then (with the backbone) the connection holding it, if any, is
// closed by its edge; a save from that connection fails, the session being
// gone.
func (l *liveService) DeleteSession(ctx context.Context, req *adminv1.DeleteSessionRequest) (*adminv1.DeleteSessionResponse, error) {
	if err := l.check(ctx, req.GetTenant(), "deleting a session", needsStore, l.store != nil); err != nil {
		return nil, err
	}
	if req.GetClientId() == "" {
		return nil, invalid("client_id is required")
	}
	s, err := l.store.LoadSession(ctx, req.GetTenant(), req.GetClientId())
	if err != nil {
		return nil, l.storeError(err)
	}
	if err := l.store.DeleteSession(ctx, req.GetTenant(), req.GetClientId(), 0); err != nil {
		return nil, l.storeError(err)
	}
	l.log.Info("admin API: session deleted", "tenant", req.GetTenant(), "client_id", req.GetClientId())
	// ConnectedTo is "<edge>/<connection>"; the edge registers an MQTT
	// connection under its client id.
	if edge, _, ok := strings.Cut(s.ConnectedTo, "/"); ok && l.bb != nil {
		if _, err := l.kick(ctx, req.GetTenant(), edge, req.GetClientId()); err != nil {
			l.log.Warn("admin API: deleted session's connection not closed", "tenant", req.GetTenant(), "client_id", req.GetClientId(), "edge", edge, "err", err)
		}
	}
	return &adminv1.DeleteSessionResponse{}, nil
}

func messageProto(epoch string, m *message.Message) *adminv1.Message {
	out := &adminv1.Message{
		Topic:       m.Topic,
		Payload:     m.Payload,
		Position:    message.Position{Epoch: epoch, Seq: m.Seq}.String(),
		ContentType: m.ContentType,
	}
	if !m.Time.IsZero() {
		out.PublishTime = timestamppb.New(m.Time)
	}
	return out
}

// filteredPage checks a filtered list call's page size and topic filter:
// an empty filter means "#"; a malformed one is INVALID_ARGUMENT.
func filteredPage(size int32, filter string) (int, string, error) {
	n, err := pageSize(size)
	if err != nil {
		return 0, "", err
	}
	if filter == "" {
		filter = "#"
	}
	if err := topic.ValidateFilter(filter, topic.Limits{}); err != nil {
		return 0, "", invalid("filter: " + err.Error())
	}
	return n, filter, nil
}

// ListRetained implements adminv1.LiveServiceServer. The page token is the
// last topic of the previous page.
func (l *liveService) ListRetained(ctx context.Context, req *adminv1.ListRetainedRequest) (*adminv1.ListRetainedResponse, error) {
	if err := l.check(ctx, req.GetTenant(), "listing retained messages", needsStore, l.store != nil); err != nil {
		return nil, err
	}
	n, filter, err := filteredPage(req.GetPageSize(), req.GetFilter())
	if err != nil {
		return nil, err
	}
	st, err := l.store.State(ctx, req.GetTenant())
	if err != nil {
		return nil, l.storeError(err)
	}
	msgs, err := l.store.Retained(ctx, req.GetTenant(), filter)
	if err != nil {
		return nil, l.storeError(err)
	}
	if tok := req.GetPageToken(); tok != "" {
		i, _ := slices.BinarySearchFunc(msgs, tok, func(m *message.Message, t string) int { return strings.Compare(m.Topic, t) })
		for i < len(msgs) && msgs[i].Topic <= tok {
			i++
		}
		msgs = msgs[i:]
	}
	resp := &adminv1.ListRetainedResponse{}
	if len(msgs) > n {
		msgs = msgs[:n]
		resp.NextPageToken = msgs[n-1].Topic
	}
	for _, m := range msgs {
		resp.Messages = append(resp.Messages, messageProto(st.Epoch, m))
	}
	return resp, nil
}

// listRetainedREST serves GET /v1/tenants/{tenant}/retained as the
// generated gateway handler would.
func (l *liveService) listRetainedREST(gw *runtime.ServeMux) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		ctx := r.Context()
		_, outbound := runtime.MarshalerForRequest(gw, r)
		req := &adminv1.ListRetainedRequest{Tenant: params["tenant"]}
		if err := r.ParseForm(); err != nil {
			runtime.HTTPError(ctx, gw, outbound, w, r, invalid(err.Error()))
			return
		}
		if err := runtime.PopulateQueryParameters(req, r.Form, utilities.NewDoubleArray(nil)); err != nil {
			runtime.HTTPError(ctx, gw, outbound, w, r, invalid(err.Error()))
			return
		}
		resp, err := l.ListRetained(ctx, req)
		if err != nil {
			runtime.HTTPError(ctx, gw, outbound, w, r, err)
			return
		}
		runtime.ForwardResponseMessage(ctx, gw, outbound, w, r, resp)
	}
}

// GetRetained implements adminv1.LiveServiceServer.
func (l *liveService) GetRetained(ctx context.Context, req *adminv1.GetRetainedRequest) (*adminv1.Message, error) {
	if err := l.check(ctx, req.GetTenant(), "reading a retained message", needsStore, l.store != nil); err != nil {
		return nil, err
	}
	name := req.GetTopic()
	if err := topic.ValidateName(name, topic.Limits{}); err != nil {
		return nil, invalid("topic: " + err.Error())
	}
	st, err := l.store.State(ctx, req.GetTenant())
	if err != nil {
		return nil, l.storeError(err)
	}
	// A topic name is a filter matching only itself.
	msgs, err := l.store.Retained(ctx, req.GetTenant(), name)
	if err != nil {
		return nil, l.storeError(err)
	}
	for _, m := range msgs {
		if m.Topic == name {
			return messageProto(st.Epoch, m), nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no retained message on topic %q", name)
}

// DeleteRetained implements adminv1.LiveServiceServer: it publishes an empty
// retained message, which the session service applies as a deletion; it
// answers once the deletion is in the stream, so a read right after may
// still see the old message for a moment.
func (l *liveService) DeleteRetained(ctx context.Context, req *adminv1.DeleteRetainedRequest) (*adminv1.DeleteRetainedResponse, error) {
	if err := l.check(ctx, req.GetTenant(), "deleting a retained message", needsBackbone, l.bb != nil); err != nil {
		return nil, err
	}
	if err := topic.ValidateName(req.GetTopic(), topic.Limits{}); err != nil {
		return nil, invalid("topic: " + err.Error())
	}
	m := &message.Message{Tenant: req.GetTenant(), Topic: req.GetTopic(), Retain: true, QoS: 1, Origin: "admin"}
	if _, err := l.bb.Publish(ctx, m, backbone.PublishOptions{}); err != nil {
		return nil, l.publishError(err)
	}
	l.log.Info("admin API: retained message cleared", "tenant", req.GetTenant(), "topic", req.GetTopic())
	return &adminv1.DeleteRetainedResponse{}, nil
}

func (l *liveService) publishError(err error) error {
	switch k := fault.KindOf(err); k {
	case fault.Invalid, fault.Canceled, fault.Deadline:
		return status.Error(k.Codes().GRPC, err.Error())
	}
	l.log.Warn("admin API: publish failed", "err", err)
	return status.Error(codes.Unavailable, "backbone unavailable: message not stored")
}

// DefaultMaxPayload bounds a server-side publish's payload when its tenant
// sets no MaxPayloadBytes: the edges' own default bound (their largest
// MQTT packet and HTTP publish body), so that the admin API never stores a
// message no client could have published.
const DefaultMaxPayload = 1 << 20

// Publish implements adminv1.LiveServiceServer: the message is stored in
// the tenant's stream (QoS 1) before it answers. Its payload obeys the
// tenant's limit, as a client's would.
func (l *liveService) Publish(ctx context.Context, req *adminv1.PublishRequest) (*adminv1.PublishResponse, error) {
	tn, err := l.tenant(ctx, req.GetTenant(), "server-side publish", needsBackbone, l.bb != nil)
	if err != nil {
		return nil, err
	}
	if err := topic.ValidateName(req.GetTopic(), topic.Limits{}); err != nil {
		return nil, invalid("topic: " + err.Error())
	}
	limit := tn.Limits.MaxPayloadBytes
	if limit == 0 {
		limit = DefaultMaxPayload
	}
	if n := int64(len(req.GetPayload())); n > limit {
		return nil, invalid(fmt.Sprintf("payload of %d bytes is over the tenant's limit of %d bytes", n, limit))
	}
	m := &message.Message{
		Tenant:      req.GetTenant(),
		Topic:       req.GetTopic(),
		Payload:     req.GetPayload(),
		QoS:         1,
		Retain:      req.GetRetain(),
		ContentType: req.GetContentType(),
		Origin:      "admin",
	}
	pos, err := l.bb.Publish(ctx, m, backbone.PublishOptions{})
	if err != nil {
		return nil, l.publishError(err)
	}
	return &adminv1.PublishResponse{Position: pos.String()}, nil
}

// GetUsage implements adminv1.LiveServiceServer: connections from the
// edges (with the backbone), sessions and retained messages from the store
// (with the store); message rates are not measured yet (0).
func (l *liveService) GetUsage(ctx context.Context, req *adminv1.GetUsageRequest) (*adminv1.Usage, error) {
	if err := l.check(ctx, req.GetTenant(), "usage counters", needsEdges+" or "+needsStore, l.bb != nil || l.store != nil); err != nil {
		return nil, err
	}
	u := &adminv1.Usage{Tenant: req.GetTenant()}
	if l.store != nil {
		n, err := l.store.CountSessions(ctx, req.GetTenant())
		if err != nil {
			return nil, l.storeError(err)
		}
		u.Sessions = int64(n)
		ret, err := l.store.Retained(ctx, req.GetTenant(), "#")
		if err != nil {
			return nil, l.storeError(err)
		}
		u.RetainedMessages = int64(len(ret))
	}
	if l.bb != nil {
		replies, err := l.gather(ctx, req.GetTenant(), backbone.ConnectionsRequest{CountOnly: true})
		if err != nil {
			return nil, err
		}
		for _, r := range replies {
			u.Connections += int64(r.Count)
		}
	}
	return u, nil
}

var _ adminv1.LiveServiceServer = (*liveService)(nil)
