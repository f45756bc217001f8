package admin

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strings"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// credentialService implements herald.admin.v1.CredentialService.
type credentialService struct {
	adminv1.UnimplementedCredentialServiceServer
	store *tenant.Etcd
	log   *slog.Logger
	// kdf are the argon2id parameters of new key hashes.
	kdf authz.Argon2Params
}

// apiKeyMutable are the fields UpdateApiKey may change.
var apiKeyMutable = []string{"description", "capabilities", "expire_time"}

// CreateApiKey implements adminv1.CredentialServiceServer.
func (c *credentialService) CreateApiKey(ctx context.Context, req *adminv1.CreateApiKeyRequest) (*adminv1.CreateApiKeyResponse, error) {
	if err := tenantAccess(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	caps, err := capabilities(req.GetCapabilities())
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	if !tenant.ValidID(req.GetTenant()) {
		return nil, grpcError(c.log, tenant.ErrInvalidID)
	}
	token, id, secret := authz.NewToken(authz.KindAPIKey)
	k, err := c.store.CreateAPIKey(ctx, tenant.APIKey{
		ID: id, Tenant: req.GetTenant(), Description: req.GetDescription(),
		Hash: authz.HashSecret(secret, c.kdf), Capabilities: caps, ExpiresAt: timeFrom(req.GetExpireTime()),
	})
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	return &adminv1.CreateApiKeyResponse{Key: apiKeyProto(k), Token: token}, nil
}

// GetApiKey implements adminv1.CredentialServiceServer.
func (c *credentialService) GetApiKey(ctx context.Context, req *adminv1.GetApiKeyRequest) (*adminv1.ApiKey, error) {
	if err := tenantAccess(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	k, err := c.store.GetAPIKey(ctx, req.GetTenant(), req.GetId())
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	return apiKeyProto(k), nil
}

// ListApiKeys implements adminv1.CredentialServiceServer.
func (c *credentialService) ListApiKeys(ctx context.Context, req *adminv1.ListApiKeysRequest) (*adminv1.ListApiKeysResponse, error) {
	if err := tenantAccess(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	page, next, err := c.store.ListAPIKeys(ctx, req.GetTenant(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	resp := &adminv1.ListApiKeysResponse{NextPageToken: next}
	for _, k := range page {
		resp.Keys = append(resp.Keys, apiKeyProto(k))
	}
	return resp, nil
}

// UpdateApiKey implements adminv1.CredentialServiceServer.
func (c *credentialService) UpdateApiKey(ctx context.Context, req *adminv1.UpdateApiKeyRequest) (*adminv1.ApiKey, error) {
	in := req.GetKey()
	if err := tenantAccess(ctx, in.GetTenant()); err != nil {
		return nil, err
	}
	cur, err := c.store.GetAPIKey(ctx, in.GetTenant(), in.GetId())
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	if in.GetRevision() != 0 && in.GetRevision() != cur.Revision {
		return nil, status.Errorf(codes.Aborted, "key %s is at revision %d, not %d", cur.ID, cur.Revision, in.GetRevision())
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		paths = apiKeyMutable
	}
	merged := apiKeyProto(cur)
	if err := applyMask(merged, in, paths, apiKeyMutable, []string{"id", "tenant", "revision"}); err != nil {
		return nil, err
	}
	caps, err := capabilities(merged.GetCapabilities())
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	next := cur
	next.Description = merged.GetDescription()
	next.Capabilities = caps
	next.ExpiresAt = timeFrom(merged.GetExpireTime())
	k, err := c.store.UpdateAPIKey(ctx, next)
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	return apiKeyProto(k), nil
}

// RevokeApiKey implements adminv1.CredentialServiceServer.
func (c *credentialService) RevokeApiKey(ctx context.Context, req *adminv1.RevokeApiKeyRequest) (*adminv1.RevokeApiKeyResponse, error) {
	if err := tenantAccess(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	if err := c.store.DeleteAPIKey(ctx, req.GetTenant(), req.GetId(), req.GetRevision()); err != nil {
		return nil, grpcError(c.log, err)
	}
	return &adminv1.RevokeApiKeyResponse{}, nil
}

// CreateJwtKey implements adminv1.CredentialServiceServer.
func (c *credentialService) CreateJwtKey(ctx context.Context, req *adminv1.CreateJwtKeyRequest) (*adminv1.CreateJwtKeyResponse, error) {
	in := req.GetKey()
	if err := tenantAccess(ctx, in.GetTenant()); err != nil {
		return nil, err
	}
	caps, err := capabilities(in.GetDefaultCapabilities())
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	k := tenant.JWTKey{
		ID: in.GetId(), Tenant: in.GetTenant(), Description: in.GetDescription(), Algorithm: in.GetAlgorithm(),
		Secret: in.GetHmacSecret(), PublicKeyPEM: in.GetPublicKeyPem(), JWKSURL: in.GetJwksUrl(),
		Issuer: in.GetIssuer(), Audience: in.GetAudience(), CapabilitiesClaim: in.GetCapabilitiesClaim(),
		DefaultCapabilities: caps,
	}
	var generated []byte
	if strings.HasPrefix(k.Algorithm, "HS") && len(k.Secret) == 0 && k.PublicKeyPEM == "" && k.JWKSURL == "" {
		generated = make([]byte, authz.MinHMACSecret)
		rand.Read(generated)
		k.Secret = generated
	}
	k, err = c.store.CreateJWTKey(ctx, k)
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	return &adminv1.CreateJwtKeyResponse{Key: jwtKeyProto(k), GeneratedHmacSecret: generated}, nil
}

// GetJwtKey implements adminv1.CredentialServiceServer.
func (c *credentialService) GetJwtKey(ctx context.Context, req *adminv1.GetJwtKeyRequest) (*adminv1.JwtKey, error) {
	if err := tenantAccess(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	k, err := c.store.GetJWTKey(ctx, req.GetTenant(), req.GetId())
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	return jwtKeyProto(k), nil
}

// ListJwtKeys implements adminv1.CredentialServiceServer.
func (c *credentialService) ListJwtKeys(ctx context.Context, req *adminv1.ListJwtKeysRequest) (*adminv1.ListJwtKeysResponse, error) {
	if err := tenantAccess(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	page, next, err := c.store.ListJWTKeys(ctx, req.GetTenant(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	resp := &adminv1.ListJwtKeysResponse{NextPageToken: next}
	for _, k := range page {
		resp.Keys = append(resp.Keys, jwtKeyProto(k))
	}
	return resp, nil
}

// DeleteJwtKey implements adminv1.CredentialServiceServer.
func (c *credentialService) DeleteJwtKey(ctx context.Context, req *adminv1.DeleteJwtKeyRequest) (*adminv1.DeleteJwtKeyResponse, error) {
	if err := tenantAccess(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	if err := c.store.DeleteJWTKey(ctx, req.GetTenant(), req.GetId(), req.GetRevision()); err != nil {
		return nil, grpcError(c.log, err)
	}
	return &adminv1.DeleteJwtKeyResponse{}, nil
}

// CreateMtlsIdentity implements adminv1.CredentialServiceServer. The
// fingerprint may be given in any case and with colons, as tools print it.
// A fingerprint or subject that any identity holds already is
// ALREADY_EXISTS, whichever tenant holds it, and the answer does not say
// which.
func (c *credentialService) CreateMtlsIdentity(ctx context.Context, req *adminv1.CreateMtlsIdentityRequest) (*adminv1.MtlsIdentity, error) {
	in := req.GetIdentity()
	if err := tenantAccess(ctx, in.GetTenant()); err != nil {
		return nil, err
	}
	caps, err := capabilities(in.GetCapabilities())
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	m, err := c.store.CreateMTLSIdentity(ctx, tenant.MTLSIdentity{
		ID: authz.NewID(), Tenant: in.GetTenant(), Description: in.GetDescription(),
		FingerprintSHA256: strings.ToLower(strings.ReplaceAll(in.GetFingerprintSha256(), ":", "")),
		Subject:           in.GetSubject(), Capabilities: caps,
	})
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	return mtlsProto(m), nil
}

// GetMtlsIdentity implements adminv1.CredentialServiceServer.
func (c *credentialService) GetMtlsIdentity(ctx context.Context, req *adminv1.GetMtlsIdentityRequest) (*adminv1.MtlsIdentity, error) {
	if err := tenantAccess(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	m, err := c.store.GetMTLSIdentity(ctx, req.GetTenant(), req.GetId())
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	return mtlsProto(m), nil
}

// ListMtlsIdentities implements adminv1.CredentialServiceServer.
func (c *credentialService) ListMtlsIdentities(ctx context.Context, req *adminv1.ListMtlsIdentitiesRequest) (*adminv1.ListMtlsIdentitiesResponse, error) {
	if err := tenantAccess(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	page, next, err := c.store.ListMTLSIdentities(ctx, req.GetTenant(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, grpcError(c.log, err)
	}
	resp := &adminv1.ListMtlsIdentitiesResponse{NextPageToken: next}
	for _, m := range page {
		resp.Identities = append(resp.Identities, mtlsProto(m))
	}
	return resp, nil
}

// DeleteMtlsIdentity implements adminv1.CredentialServiceServer.
func (c *credentialService) DeleteMtlsIdentity(ctx context.Context, req *adminv1.DeleteMtlsIdentityRequest) (*adminv1.DeleteMtlsIdentityResponse, error) {
	if err := tenantAccess(ctx, req.GetTenant()); err != nil {
		return nil, err
	}
	if err := c.store.DeleteMTLSIdentity(ctx, req.GetTenant(), req.GetId(), req.GetRevision()); err != nil {
		return nil, grpcError(c.log, err)
	}
	return &adminv1.DeleteMtlsIdentityResponse{}, nil
}

// adminKeyService implements herald.admin.v1.AdminKeyService; every call is
// the operator's.
type adminKeyService struct {
	adminv1.UnimplementedAdminKeyServiceServer
	store *tenant.Etcd
	log   *slog.Logger
	kdf   authz.Argon2Params
}

// CreateAdminKey implements adminv1.AdminKeyServiceServer.
func (a *adminKeyService) CreateAdminKey(ctx context.Context, req *adminv1.CreateAdminKeyRequest) (*adminv1.CreateAdminKeyResponse, error) {
	if err := operatorOnly(ctx); err != nil {
		return nil, err
	}
	token, id, secret := authz.NewToken(authz.KindAdminKey)
	k, err := a.store.CreateAdminKey(ctx, tenant.AdminKey{
		ID: id, Tenant: req.GetTenant(), Description: req.GetDescription(), Hash: authz.HashSecret(secret, a.kdf),
	})
	if err != nil {
		return nil, grpcError(a.log, err)
	}
	return &adminv1.CreateAdminKeyResponse{Key: adminKeyProto(k), Token: token}, nil
}

// ListAdminKeys implements adminv1.AdminKeyServiceServer.
func (a *adminKeyService) ListAdminKeys(ctx context.Context, req *adminv1.ListAdminKeysRequest) (*adminv1.ListAdminKeysResponse, error) {
	if err := operatorOnly(ctx); err != nil {
		return nil, err
	}
	page, next, err := a.store.ListAdminKeys(ctx, req.GetTenant(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, grpcError(a.log, err)
	}
	resp := &adminv1.ListAdminKeysResponse{NextPageToken: next}
	for _, k := range page {
		resp.Keys = append(resp.Keys, adminKeyProto(k))
	}
	return resp, nil
}

// DeleteAdminKey implements adminv1.AdminKeyServiceServer.
func (a *adminKeyService) DeleteAdminKey(ctx context.Context, req *adminv1.DeleteAdminKeyRequest) (*adminv1.DeleteAdminKeyResponse, error) {
	if err := operatorOnly(ctx); err != nil {
		return nil, err
	}
	if err := a.store.DeleteAdminKey(ctx, req.GetId(), 0); err != nil {
		return nil, grpcError(a.log, err)
	}
	return &adminv1.DeleteAdminKeyResponse{}, nil
}

var (
	_ adminv1.CredentialServiceServer = (*credentialService)(nil)
	_ adminv1.AdminKeyServiceServer   = (*adminKeyService)(nil)
)
