package tenant

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Key layout under EtcdConfig.Prefix. Everything an edge needs to
// authenticate and authorize lives under the one prefix, so a Directory
// watches a single range:
//
//	tenants/<tenant>           Tenant (with its Limits)
//	keys/<tenant>/<id>         APIKey
//	jwtkeys/<tenant>/<id>      JWTKey
//	mtls/<tenant>/<id>         MTLSIdentity
//	adminkeys/<id>             AdminKey
//
// Values are JSON; a record's Revision is its key's mod revision.
const (
	dirTenants   = "tenants/"
	dirKeys      = "keys/"
	dirJWTKeys   = "jwtkeys/"
	dirMTLS      = "mtls/"
	dirAdminKeys = "adminkeys/"
)

// record is what the generic store helpers read and write.
type record interface {
	APIKey | JWTKey | MTLSIdentity | AdminKey
}

type recordPtr[T record] interface {
	*T
	setRevision(int64)
}

func (k *APIKey) setRevision(r int64)       { k.Revision = r }
func (k *JWTKey) setRevision(r int64)       { k.Revision = r }
func (m *MTLSIdentity) setRevision(r int64) { m.Revision = r }
func (k *AdminKey) setRevision(r int64)     { k.Revision = r }

func decodeRecord[T record, P recordPtr[T]](kv *mvccpb.KeyValue) (T, error) {
	var v T
	if err := json.Unmarshal(kv.Value, P(&v)); err != nil {
		return v, fmt.Errorf("tenant: key %q: %w", kv.Key, err)
	}
	P(&v).setRevision(kv.ModRevision)
	return v, nil
}

// tenantDir is the directory of a kind's records of one tenant.
func (s *Etcd) tenantDir(kind, tenantID string) string { return s.prefix + kind + tenantID + "/" }

// create stores value at key if nothing is there and, with tenantID set, if
// that tenant exists, together with the owner keys of the identities it
// claims: ErrAlreadyExists, ErrNotFound for a missing tenant, or
// ErrIdentityTaken if another record holds one of the identities. It
// returns the new revision. The checks and the writes are one
// transaction, so a credential never outlives a concurrently deleted
// tenant, and of two records claiming one identity at once only one is
// stored.
func (s *Etcd) create(ctx context.Context, tenantID, key string, value any, claims ...claim) (int64, error) {
	data, err := json.Marshal(value)
	if err != nil {
		return 0, fmt.Errorf("tenant: create %s: %w", key, err)
	}
	check := key
	if tenantID != "" {
		check = s.Key(tenantID)
	}
	for attempt := 0; ; attempt++ {
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
		if tenantID != "" {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.Key(tenantID)), ">", 0))
		}
		ops := []clientv3.Op{clientv3.OpPut(key, string(data))}
		if len(claims) > 0 {
			gets := make([]clientv3.Op, len(claims))
			for i, c := range claims {
				gets[i] = clientv3.OpGet(c.key)
			}
			cur, err := s.cli.Txn(ctx).Then(gets...).Commit()
			if err != nil {
				return 0, fmt.Errorf("tenant: create %s: %w", key, err)
			}
			for i, c := range claims {
				var kv *mvccpb.KeyValue
				if kvs := cur.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
					kv = kvs[0]
				}
				guard, write, err := s.claimGuard(ctx, c, kv)
				if err != nil {
					return 0, err
				}
				cmps = append(cmps, guard...)
				if write {
					ops = append(ops, clientv3.OpPut(c.key, c.owner.encode()))
				}
			}
		}
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(key), clientv3.OpGet(check)).Commit()
		if err != nil {
			return 0, fmt.Errorf("tenant: create %s: %w", key, err)
		}
		switch {
		case resp.Succeeded:
			return resp.Header.Revision, nil
		case len(resp.Responses[0].GetResponseRange().Kvs) > 0:
			return 0, fmt.Errorf("%w: %s", ErrAlreadyExists, strings.TrimPrefix(key, s.prefix))
		case tenantID != "" && len(resp.Responses[1].GetResponseRange().Kvs) == 0:
			return 0, fmt.Errorf("%w: tenant %s", ErrNotFound, tenantID)
		case attempt == 5:
			return 0, fmt.Errorf("%w: %s: its identities keep changing", ErrConflict, strings.TrimPrefix(key, s.prefix))
		}
		// An owner key changed between the read and the write: a
		// concurrent registration. Read again: it is now taken, or free.
	}
}

// update replaces the value at key if it exists and, with rev not 0, is
// still at revision rev: ErrNotFound or ErrConflict otherwise.
func (s *Etcd) update(ctx context.Context, key string, value any, rev int64) (int64, error) {
	data, err := json.Marshal(value)
	if err != nil {
		return 0, fmt.Errorf("tenant: update %s: %w", key, err)
	}
	resp, err := s.cli.Txn(ctx).If(s.exists(key, rev)...).Then(clientv3.OpPut(key, string(data))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, fmt.Errorf("tenant: update %s: %w", key, err)
	}
	if !resp.Succeeded {
		return 0, s.missingOrConflict(resp, key, rev)
	}
	return resp.Header.Revision, nil
}

// remove deletes key (and the extra ops) if it exists and, with rev not 0,
// is still at revision rev.
func (s *Etcd) remove(ctx context.Context, key string, rev int64, also ...clientv3.Op) error {
	resp, err := s.cli.Txn(ctx).If(s.exists(key, rev)...).
		Then(append([]clientv3.Op{clientv3.OpDelete(key)}, also...)...).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return fmt.Errorf("tenant: delete %s: %w", key, err)
	}
	if !resp.Succeeded {
		return s.missingOrConflict(resp, key, rev)
	}
	return nil
}

func (s *Etcd) exists(key string, rev int64) []clientv3.Cmp {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), ">", 0)}
	if rev != 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", rev))
	}
	return cmps
}

func (s *Etcd) missingOrConflict(resp *clientv3.TxnResponse, key string, rev int64) error {
	name := strings.TrimPrefix(key, s.prefix)
	if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return fmt.Errorf("%w: %s is no longer at revision %d", ErrConflict, name, rev)
}

func (s *Etcd) getKV(ctx context.Context, key string) (*mvccpb.KeyValue, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("tenant: get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, strings.TrimPrefix(key, s.prefix))
	}
	return resp.Kvs[0], nil
}

// listKVs reads one page of the keys directly under dir in byte order. The
// page token is the last name of the previous page, base64url-encoded;
// validName vets it.
func (s *Etcd) listKVs(ctx context.Context, dir string, pageSize int, pageToken string, validName func(string) bool) ([]*mvccpb.KeyValue, string, error) {
	switch {
	case pageSize < 0:
		return nil, "", fmt.Errorf("%w: page size %d", ErrInvalidPage, pageSize)
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	from := dir
	if pageToken != "" {
		last, err := base64.RawURLEncoding.DecodeString(pageToken)
		if err != nil || !validName(string(last)) {
			return nil, "", fmt.Errorf("%w: token %q", ErrInvalidPage, pageToken)
		}
		// The first key after last: keys are compared bytewise.
		from = dir + string(last) + "\x00"
	}
	resp, err := s.cli.Get(ctx, from,
		clientv3.WithRange(clientv3.GetPrefixRangeEnd(dir)),
		clientv3.WithLimit(int64(pageSize)))
	if err != nil {
		return nil, "", fmt.Errorf("tenant: list %s: %w", strings.TrimPrefix(dir, s.prefix), err)
	}
	var next string
	if resp.More && len(resp.Kvs) > 0 {
		lastKey := string(resp.Kvs[len(resp.Kvs)-1].Key)
		next = base64.RawURLEncoding.EncodeToString([]byte(strings.TrimPrefix(lastKey, dir)))
	}
	return resp.Kvs, next, nil
}

// listRecords lists one page of a tenant's records of a kind; ErrNotFound
// if the tenant does not exist.
func listRecords[T record, P recordPtr[T]](ctx context.Context, s *Etcd, kind, tenantID string, pageSize int, pageToken string, validName func(string) bool) ([]T, string, error) {
	if !ValidID(tenantID) {
		return nil, "", fmt.Errorf("%w: %q", ErrInvalidID, tenantID)
	}
	if _, err := s.getKV(ctx, s.Key(tenantID)); err != nil {
		return nil, "", err
	}
	kvs, next, err := s.listKVs(ctx, s.tenantDir(kind, tenantID), pageSize, pageToken, validName)
	if err != nil {
		return nil, "", err
	}
	out := make([]T, 0, len(kvs))
	for _, kv := range kvs {
		v, err := decodeRecord[T, P](kv)
		if err != nil {
			s.log.Warn("tenant: skipping undecodable record", "err", err)
			continue
		}
		out = append(out, v)
	}
	return out, next, nil
}

func getRecord[T record, P recordPtr[T]](ctx context.Context, s *Etcd, key string) (T, error) {
	kv, err := s.getKV(ctx, key)
	if err != nil {
		var zero T
		return zero, err
	}
	return decodeRecord[T, P](kv)
}

func checkIDs(tenantID, id string, validName func(string) bool) error {
	if !ValidID(tenantID) {
		return fmt.Errorf("%w: %q", ErrInvalidID, tenantID)
	}
	if !validName(id) {
		return fmt.Errorf("%w: id %q", ErrInvalid, id)
	}
	return nil
}

func now() time.Time { return time.Now().UTC() }
