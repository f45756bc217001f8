package tenant

import (
	"context"

	"github.com/heraldmq/herald/pkg/authz"
)

// CreateAPIKey stores a new key, setting CreatedAt to now if zero: ErrInvalid
// for a bad key, ErrNotFound if its tenant does not exist, ErrAlreadyExists
// if its ID is taken in the tenant, ErrIdentityTaken if another tenant
// holds it. IDs from authz.NewID do not collide in practice (80 random
// bits); the ownership index makes sure.
func (s *Etcd) CreateAPIKey(ctx context.Context, k APIKey) (APIKey, error) {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	if err := k.Validate(); err != nil {
		return APIKey{}, err
	}
	rev, err := s.create(ctx, k.Tenant, s.tenantDir(dirKeys, k.Tenant)+k.ID, k, s.claims(k)...)
	k.Revision = rev
	return k, err
}

// GetAPIKey returns a key of the tenant; ErrNotFound if there is none.
func (s *Etcd) GetAPIKey(ctx context.Context, tenantID, id string) (APIKey, error) {
	if err := checkIDs(tenantID, id, authz.ValidKeyID); err != nil {
		return APIKey{}, err
	}
	return getRecord[APIKey](ctx, s, s.tenantDir(dirKeys, tenantID)+id)
}

// ListAPIKeys returns one page of the tenant's keys in ID order, paged as
// Source.List; ErrNotFound if the tenant does not exist.
func (s *Etcd) ListAPIKeys(ctx context.Context, tenantID string, pageSize int, pageToken string) ([]APIKey, string, error) {
	return listRecords[APIKey](ctx, s, dirKeys, tenantID, pageSize, pageToken, authz.ValidKeyID)
}

// UpdateAPIKey replaces a key; with k.Revision not 0 only if it is still at
// that revision (ErrConflict). ErrNotFound if it does not exist.
func (s *Etcd) UpdateAPIKey(ctx context.Context, k APIKey) (APIKey, error) {
	if err := k.Validate(); err != nil {
		return APIKey{}, err
	}
	rev, err := s.update(ctx, s.tenantDir(dirKeys, k.Tenant)+k.ID, k, k.Revision)
	k.Revision = rev
	return k, err
}

// DeleteAPIKey revokes a key: its record is gone, and every Directory drops
// it as soon as it sees the deletion. With rev not 0, only if the key is
// still at that revision.
func (s *Etcd) DeleteAPIKey(ctx context.Context, tenantID, id string, rev int64) error {
	if err := checkIDs(tenantID, id, authz.ValidKeyID); err != nil {
		return err
	}
	return removeOwned[APIKey](ctx, s, s.tenantDir(dirKeys, tenantID)+id, rev)
}

// CreateJWTKey stores a new JWT verification key, as CreateAPIKey. Its id
// ("kid") and its issuer, if set, belong to one tenant: ErrIdentityTaken
// if another tenant's JWT key has that id or that issuer (the tenant's
// own keys may share an issuer, for key rotation).
func (s *Etcd) CreateJWTKey(ctx context.Context, k JWTKey) (JWTKey, error) {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	if err := k.Validate(); err != nil {
		return JWTKey{}, err
	}
	rev, err := s.create(ctx, k.Tenant, s.tenantDir(dirJWTKeys, k.Tenant)+k.ID, k, s.claims(k)...)
	k.Revision = rev
	return k, err
}

// GetJWTKey returns a JWT key of the tenant.
func (s *Etcd) GetJWTKey(ctx context.Context, tenantID, id string) (JWTKey, error) {
	if err := checkIDs(tenantID, id, ValidJWTKeyID); err != nil {
		return JWTKey{}, err
	}
	return getRecord[JWTKey](ctx, s, s.tenantDir(dirJWTKeys, tenantID)+id)
}

// ListJWTKeys returns one page of the tenant's JWT keys in ID order.
func (s *Etcd) ListJWTKeys(ctx context.Context, tenantID string, pageSize int, pageToken string) ([]JWTKey, string, error) {
	return listRecords[JWTKey](ctx, s, dirJWTKeys, tenantID, pageSize, pageToken, ValidJWTKeyID)
}

// DeleteJWTKey removes a JWT key; tokens it verified stop working.
func (s *Etcd) DeleteJWTKey(ctx context.Context, tenantID, id string, rev int64) error {
	if err := checkIDs(tenantID, id, ValidJWTKeyID); err != nil {
		return err
	}
	return removeOwned[JWTKey](ctx, s, s.tenantDir(dirJWTKeys, tenantID)+id, rev)
}

// CreateMTLSIdentity stores a new certificate identity, as CreateAPIKey. Its
// fingerprint and its subject each belong to one identity of one tenant:
// ErrIdentityTaken if another identity (of any tenant) has either.
func (s *Etcd) CreateMTLSIdentity(ctx context.Context, m MTLSIdentity) (MTLSIdentity, error) {
	if m.CreatedAt.IsZero() {
		m.CreatedAt = now()
	}
	if err := m.Validate(); err != nil {
		return MTLSIdentity{}, err
	}
	rev, err := s.create(ctx, m.Tenant, s.tenantDir(dirMTLS, m.Tenant)+m.ID, m, s.claims(m)...)
	m.Revision = rev
	return m, err
}

// GetMTLSIdentity returns a certificate identity of the tenant.
func (s *Etcd) GetMTLSIdentity(ctx context.Context, tenantID, id string) (MTLSIdentity, error) {
	if err := checkIDs(tenantID, id, authz.ValidKeyID); err != nil {
		return MTLSIdentity{}, err
	}
	return getRecord[MTLSIdentity](ctx, s, s.tenantDir(dirMTLS, tenantID)+id)
}

// ListMTLSIdentities returns one page of the tenant's certificate
// identities in ID order.
func (s *Etcd) ListMTLSIdentities(ctx context.Context, tenantID string, pageSize int, pageToken string) ([]MTLSIdentity, string, error) {
	return listRecords[MTLSIdentity](ctx, s, dirMTLS, tenantID, pageSize, pageToken, authz.ValidKeyID)
}

// DeleteMTLSIdentity removes a certificate identity.
func (s *Etcd) DeleteMTLSIdentity(ctx context.Context, tenantID, id string, rev int64) error {
	if err := checkIDs(tenantID, id, authz.ValidKeyID); err != nil {
		return err
	}
	return removeOwned[MTLSIdentity](ctx, s, s.tenantDir(dirMTLS, tenantID)+id, rev)
}

// CreateAdminKey stores a new admin key; one scoped to a tenant only if
// that tenant exists.
func (s *Etcd) CreateAdminKey(ctx context.Context, k AdminKey) (AdminKey, error) {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	if err := k.Validate(); err != nil {
		return AdminKey{}, err
	}
	rev, err := s.create(ctx, k.Tenant, s.prefix+dirAdminKeys+k.ID, k)
	k.Revision = rev
	return k, err
}

// GetAdminKey returns an admin key; ErrNotFound if there is none.
func (s *Etcd) GetAdminKey(ctx context.Context, id string) (AdminKey, error) {
	if !authz.ValidKeyID(id) {
		return AdminKey{}, ErrNotFound
	}
	return getRecord[AdminKey](ctx, s, s.prefix+dirAdminKeys+id)
}

// ListAdminKeys returns one page of admin keys in ID order: all of them, or
// with tenantID set, those scoped to it (the page may then hold fewer than
// pageSize while more follow).
func (s *Etcd) ListAdminKeys(ctx context.Context, tenantID string, pageSize int, pageToken string) ([]AdminKey, string, error) {
	kvs, next, err := s.listKVs(ctx, s.prefix+dirAdminKeys, pageSize, pageToken, authz.ValidKeyID)
	if err != nil {
		return nil, "", err
	}
	out := make([]AdminKey, 0, len(kvs))
	for _, kv := range kvs {
		k, err := decodeRecord[AdminKey](kv)
		if err != nil {
			s.log.Warn("tenant: skipping undecodable admin key", "err", err)
			continue
		}
		if tenantID == "" || k.Tenant == tenantID {
			out = append(out, k)
		}
	}
	return out, next, nil
}

// DeleteAdminKey revokes an admin key.
func (s *Etcd) DeleteAdminKey(ctx context.Context, id string, rev int64) error {
	if !authz.ValidKeyID(id) {
		return ErrNotFound
	}
	return s.remove(ctx, s.prefix+dirAdminKeys+id, rev)
}
