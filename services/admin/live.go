package admin

import (
	"context"

	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// liveService implements herald.admin.v1.LiveService. Each call checks the
// caller's access to the tenant first, so a scoped key learns nothing about
// other tenants even from an unimplemented call, then answers
// UNIMPLEMENTED: live state lives in the data plane (edges, session store,
// backbone), which the admin service is not wired to yet.
type liveService struct {
	adminv1.UnimplementedLiveServiceServer
}

func notWired(ctx context.Context, tenantID, what, needs string) error {
	if err := tenantAccess(ctx, tenantID); err != nil {
		return err
	}
	return status.Errorf(codes.Unimplemented, "%s is not available yet: it needs %s, which the admin service is not connected to", what, needs)
}

const (
	needsEdges    = "the edges (a control subject on the backbone)"
	needsStore    = "the session store"
	needsBackbone = "the NATS JetStream backbone"
)

// ListConnections implements adminv1.LiveServiceServer.
func (liveService) ListConnections(ctx context.Context, req *adminv1.ListConnectionsRequest) (*adminv1.ListConnectionsResponse, error) {
	return nil, notWired(ctx, req.GetTenant(), "listing connections", needsEdges)
}

// KickConnection implements adminv1.LiveServiceServer.
func (liveService) KickConnection(ctx context.Context, req *adminv1.KickConnectionRequest) (*adminv1.KickConnectionResponse, error) {
	return nil, notWired(ctx, req.GetTenant(), "kicking a connection", needsEdges)
}

// ListSessions implements adminv1.LiveServiceServer.
func (liveService) ListSessions(ctx context.Context, req *adminv1.ListSessionsRequest) (*adminv1.ListSessionsResponse, error) {
	return nil, notWired(ctx, req.GetTenant(), "listing sessions", needsStore)
}

// GetSession implements adminv1.LiveServiceServer.
func (liveService) GetSession(ctx context.Context, req *adminv1.GetSessionRequest) (*adminv1.Session, error) {
	return nil, notWired(ctx, req.GetTenant(), "reading a session", needsStore)
}

// DeleteSession implements adminv1.LiveServiceServer.
func (liveService) DeleteSession(ctx context.Context, req *adminv1.DeleteSessionRequest) (*adminv1.DeleteSessionResponse, error) {
	return nil, notWired(ctx, req.GetTenant(), "deleting a session", needsStore+" and the edges")
}

// ListRetained implements adminv1.LiveServiceServer.
func (liveService) ListRetained(ctx context.Context, req *adminv1.ListRetainedRequest) (*adminv1.ListRetainedResponse, error) {
	return nil, notWired(ctx, req.GetTenant(), "listing retained messages", needsStore)
}

// GetRetained implements adminv1.LiveServiceServer.
func (liveService) GetRetained(ctx context.Context, req *adminv1.GetRetainedRequest) (*adminv1.Message, error) {
	return nil, notWired(ctx, req.GetTenant(), "reading a retained message", needsStore)
}

// DeleteRetained implements adminv1.LiveServiceServer.
func (liveService) DeleteRetained(ctx context.Context, req *adminv1.DeleteRetainedRequest) (*adminv1.DeleteRetainedResponse, error) {
	return nil, notWired(ctx, req.GetTenant(), "deleting a retained message", needsBackbone)
}

// Publish implements adminv1.LiveServiceServer.
func (liveService) Publish(ctx context.Context, req *adminv1.PublishRequest) (*adminv1.PublishResponse, error) {
	return nil, notWired(ctx, req.GetTenant(), "server-side publish", needsBackbone)
}

// GetUsage implements adminv1.LiveServiceServer.
func (liveService) GetUsage(ctx context.Context, req *adminv1.GetUsageRequest) (*adminv1.Usage, error) {
	return nil, notWired(ctx, req.GetTenant(), "usage counters", needsEdges+" and "+needsStore)
}

var _ adminv1.LiveServiceServer = liveService{}
