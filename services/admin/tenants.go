package admin

import (
	"context"
	"log/slog"

	"github.com/heraldmq/herald/pkg/tenant"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// tenantService implements herald.admin.v1.TenantService over a
// tenant.Source. The source validates IDs and page tokens.
type tenantService struct {
	adminv1.UnimplementedTenantServiceServer
	src tenant.Source
	log *slog.Logger
}

// GetTenant implements adminv1.TenantServiceServer.
func (t *tenantService) GetTenant(ctx context.Context, req *adminv1.GetTenantRequest) (*adminv1.Tenant, error) {
	tn, err := t.src.Get(ctx, req.GetId())
	if err != nil {
		return nil, grpcError(t.log, err)
	}
	return tenantProto(tn), nil
}

// ListTenants implements adminv1.TenantServiceServer.
func (t *tenantService) ListTenants(ctx context.Context, req *adminv1.ListTenantsRequest) (*adminv1.ListTenantsResponse, error) {
	page, next, err := t.src.List(ctx, int(req.GetPageSize()), req.GetPageToken())
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

func tenantProto(t tenant.Tenant) *adminv1.Tenant {
	p := &adminv1.Tenant{Id: t.ID, DisplayName: t.DisplayName, Revision: t.Revision}
	if !t.CreatedAt.IsZero() {
		p.CreateTime = timestamppb.New(t.CreatedAt)
	}
	return p
}

var _ adminv1.TenantServiceServer = (*tenantService)(nil)
