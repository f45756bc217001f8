package admin

import (
	"context"
	"log/slog"

	"github.com/heraldmq/herald/pkg/tenant"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tenantService implements herald.admin.v1.TenantService over the etcd
// store, which validates IDs and page tokens.
type tenantService struct {
	adminv1.UnimplementedTenantServiceServer
	store *tenant.Etcd
	log   *slog.Logger
}

// tenantMutable are the fields UpdateTenant may change.
var tenantMutable = []string{"display_name", "limits"}

// CreateTenant implements adminv1.TenantServiceServer.
func (t *tenantService) CreateTenant(ctx context.Context, req *adminv1.CreateTenantRequest) (*adminv1.Tenant, error) {
	if err := operatorOnly(ctx); err != nil {
		return nil, err
	}
	in := req.GetTenant()
	tn, err := t.store.Create(ctx, tenant.Tenant{ID: in.GetId(), DisplayName: in.GetDisplayName(), Limits: limitsFrom(in.GetLimits())})
	if err != nil {
		return nil, grpcError(t.log, err)
	}
	return tenantProto(tn), nil
}

// GetTenant implements adminv1.TenantServiceServer.
func (t *tenantService) GetTenant(ctx context.Context, req *adminv1.GetTenantRequest) (*adminv1.Tenant, error) {
	if err := tenantAccess(ctx, req.GetId()); err != nil {
		return nil, err
	}
	tn, err := t.store.Get(ctx, req.GetId())
	if err != nil {
		return nil, grpcError(t.log, err)
	}
	return tenantProto(tn), nil
}

// ListTenants implements adminv1.TenantServiceServer. A scoped admin key
// lists its own tenant only.
func (t *tenantService) ListTenants(ctx context.Context, req *adminv1.ListTenantsRequest) (*adminv1.ListTenantsResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetPageSize() < 0 {
		return nil, grpcError(t.log, tenant.ErrInvalidPage)
	}
	if p.tenant != "" {
		resp := &adminv1.ListTenantsResponse{}
		if req.GetPageToken() != "" {
			return resp, nil
		}
		tn, err := t.store.Get(ctx, p.tenant)
		if err != nil {
			return nil, grpcError(t.log, err)
		}
		resp.Tenants = []*adminv1.Tenant{tenantProto(tn)}
		return resp, nil
	}
	page, next, err := t.store.List(ctx, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, grpcError(t.log, err)
	}
	resp := &adminv1.ListTenantsResponse{
		Tenants:       make([]*adminv1.Tenant, len(page)),
		NextPageToken: next,
	}
	for i, tn := range page {
		resp.Tenants[i] = tenantProto(tn)
	}
	return resp, nil
}

// UpdateTenant implements adminv1.TenantServiceServer: read, apply the
// mask, write back conditionally on the revision read (or the one the
// client sent), so concurrent updates never silently overwrite each other.
func (t *tenantService) UpdateTenant(ctx context.Context, req *adminv1.UpdateTenantRequest) (*adminv1.Tenant, error) {
	in := req.GetTenant()
	if err := tenantAccess(ctx, in.GetId()); err != nil {
		return nil, err
	}
	cur, err := t.store.Get(ctx, in.GetId())
	if err != nil {
		return nil, grpcError(t.log, err)
	}
	if in.GetRevision() != 0 && in.GetRevision() != cur.Revision {
		return nil, status.Errorf(codes.Aborted, "tenant %s is at revision %d, not %d", cur.ID, cur.Revision, in.GetRevision())
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		paths = tenantMutable
	}
	merged := tenantProto(cur)
	if err := applyMask(merged, in, paths, tenantMutable, []string{"id", "revision"}); err != nil {
		return nil, err
	}
	next := cur
	next.DisplayName = merged.GetDisplayName()
	next.Limits = limitsFrom(merged.GetLimits())
	put, err := t.store.Put(ctx, next)
	if err != nil {
		return nil, grpcError(t.log, err)
	}
	return tenantProto(put), nil
}

// DeleteTenant implements adminv1.TenantServiceServer.
func (t *tenantService) DeleteTenant(ctx context.Context, req *adminv1.DeleteTenantRequest) (*adminv1.DeleteTenantResponse, error) {
	if err := operatorOnly(ctx); err != nil {
		return nil, err
	}
	if err := t.store.DeleteAt(ctx, req.GetId(), req.GetRevision()); err != nil {
		return nil, grpcError(t.log, err)
	}
	return &adminv1.DeleteTenantResponse{}, nil
}

var _ adminv1.TenantServiceServer = (*tenantService)(nil)
