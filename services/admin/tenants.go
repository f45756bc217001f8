package admin

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"

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
	// erase removes a deleted tenant's data; nil without the data plane,
	// and then DeleteTenant is refused.
	erase *eraser
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
	if p, _ := caller(ctx); p.tenant != "" {
		if raised := raisedLimits(cur.Limits, next.Limits); len(raised) > 0 {
			return nil, status.Errorf(codes.PermissionDenied,
				"limits are the operator's: a tenant-scoped admin key may lower them, not raise them (raised: %s)", strings.Join(raised, ", "))
		}
	}
	put, err := t.store.Put(ctx, next)
	if err != nil {
		return nil, grpcError(t.log, err)
	}
	return tenantProto(put), nil
}

// raisedLimits names (as update-mask paths) the limits that next raises
// above cur. 0 means unlimited, so setting a limit to 0 raises it, and any
// value lowers an unlimited one.
func raisedLimits(cur, next tenant.Limits) []string {
	c, n := reflect.ValueOf(cur), reflect.ValueOf(next)
	var out []string
	for i := range c.NumField() {
		old, now := c.Field(i).Int(), n.Field(i).Int()
		if old != 0 && (now == 0 || now > old) {
			name, _, _ := strings.Cut(c.Type().Field(i).Tag.Get("json"), ",")
			out = append(out, "limits."+name)
		}
	}
	return out
}

// DeleteTenant implements adminv1.TenantServiceServer: the tenant and its
// credentials go from etcd at once, then its data (see eraser). Deleting
// a tenant whose deletion did not finish resumes it.
func (t *tenantService) DeleteTenant(ctx context.Context, req *adminv1.DeleteTenantRequest) (*adminv1.DeleteTenantResponse, error) {
	if err := operatorOnly(ctx); err != nil {
		return nil, err
	}
	if t.erase == nil {
		return nil, status.Errorf(codes.Unimplemented,
			"deleting a tenant deletes its data: it needs %s and %s, which this admin service is not connected to", needsStore, needsBackbone)
	}
	id := req.GetId()
	if err := t.store.DeleteAt(ctx, id, req.GetRevision()); errors.Is(err, tenant.ErrNotFound) {
		deleting, derr := t.store.IsDeleting(ctx, id)
		if derr != nil {
			return nil, grpcError(t.log, derr)
		}
		if !deleting {
			return nil, grpcError(t.log, err)
		}
	} else if err != nil {
		return nil, grpcError(t.log, err)
	}
	t.log.Info("admin API: tenant deleted; deleting its data", "tenant", id)
	if err := t.erase.finish(ctx, id); err != nil {
		if ctx.Err() != nil {
			return nil, grpcError(t.log, ctx.Err())
		}
		t.log.Warn("admin API: deleting a tenant's data failed; retrying later", "tenant", id, "err", err)
		return nil, status.Errorf(codes.Unavailable,
			"tenant %s is deleted, but deleting its data failed (%v); it is retried in the background, and DeleteTenant again resumes it", id, err)
	}
	return &adminv1.DeleteTenantResponse{}, nil
}

var _ adminv1.TenantServiceServer = (*tenantService)(nil)
