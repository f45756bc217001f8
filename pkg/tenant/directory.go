package tenant

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/heraldmq/herald/pkg/authz"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Kind says what a Change is about.
type Kind uint8

// Kinds of records a Directory holds.
const (
	KindTenant Kind = iota + 1
	KindAPIKey
	KindJWTKey
	KindMTLSIdentity
	KindAdminKey
)

// String returns the name of k.
func (k Kind) String() string {
	switch k {
	case KindTenant:
		return "tenant"
	case KindAPIKey:
		return "api-key"
	case KindJWTKey:
		return "jwt-key"
	case KindMTLSIdentity:
		return "mtls-identity"
	case KindAdminKey:
		return "admin-key"
	}
	return "unknown"
}

// Change is one record a Directory saw created, changed or removed.
type Change struct {
	Kind Kind
	// Tenant owns the record; for KindTenant it is the tenant itself, for
	// an operator admin key it is empty.
	Tenant string
	// ID of the record (for KindTenant, the tenant's ID again).
	ID string
	// Deleted is true when the record is gone: a revoked key, a deleted
	// tenant. Edges disconnect the clients that used it.
	Deleted bool
	// Revision is the store revision of the change.
	Revision int64
}

// DirectoryConfig configures a Directory.
type DirectoryConfig struct {
	// OnChange, if set, is called after each change is visible through the
	// Directory's lookups, in revision order, from the goroutine running
	// Run; a slow OnChange holds back later changes. After a reload
	// (compaction, lost connection) it is called for every record that
	// differs from before, deletions first.
	OnChange func(Change)
}

// entry is one decoded record and the revision it was read at.
type entry struct {
	kind   Kind
	tenant string
	id     string
	rev    int64
	value  any // Tenant, APIKey, JWTKey, MTLSIdentity or AdminKey
	// verifier is the parsed form of a JWT key (ok false for JWKS keys).
	verifier authz.JWTKey
	ok       bool
}

// Directory is an edge's in-memory view of everything under the etcd
// prefix that authentication and authorization need: tenants and their
// limits, API keys by ID, JWT keys by tenant, certificate identities by
// fingerprint and subject, admin keys. Run keeps it current from one watch
// of the prefix; lookups never do I/O. Safe for concurrent use.
//
// It is eventually consistent: a change is visible once the watch delivers
// it, normally within milliseconds (the tests bound it at 2 s). Lookups
// answer from the last revision applied; Revision says which.
type Directory struct {
	src      *Etcd
	onChange func(Change)

	ready     chan struct{}
	readyOnce sync.Once

	mu            sync.RWMutex
	rev           int64
	entries       map[string]entry // by etcd key below the prefix
	tenants       map[string]Tenant
	apiKeys       map[string]APIKey
	jwtKeys       map[string]map[string]entry // tenant → id → entry
	byFingerprint map[string]MTLSIdentity
	bySubject     map[string]MTLSIdentity
	adminKeys     map[string]AdminKey
}

// NewDirectory returns a Directory over src's prefix; call Run to fill it.
func NewDirectory(src *Etcd, cfg DirectoryConfig) *Directory {
	d := &Directory{src: src, onChange: cfg.OnChange, ready: make(chan struct{})}
	d.clear()
	return d
}

func (d *Directory) clear() {
	d.entries = map[string]entry{}
	d.tenants = map[string]Tenant{}
	d.apiKeys = map[string]APIKey{}
	d.jwtKeys = map[string]map[string]entry{}
	d.byFingerprint = map[string]MTLSIdentity{}
	d.bySubject = map[string]MTLSIdentity{}
	d.adminKeys = map[string]AdminKey{}
}

// Run follows the store until ctx is done, then returns nil. The Directory
// is Ready once the first full load is applied. While etcd is unreachable
// it keeps serving what it last saw and retries.
func (d *Directory) Run(ctx context.Context) error {
	d.src.watch(ctx, d.src.prefix, 0, func(r rawEvent) bool {
		changes := d.apply(r)
		if r.typ == EventReset {
			d.readyOnce.Do(func() { close(d.ready) })
		}
		if d.onChange != nil {
			for _, c := range changes {
				d.onChange(c)
			}
		}
		return ctx.Err() == nil
	})
	return nil
}

// Ready is closed once the Directory holds a complete view.
func (d *Directory) Ready() <-chan struct{} { return d.ready }

// Revision returns the store revision the Directory reflects.
func (d *Directory) Revision() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.rev
}

// Tenant returns a tenant (with its Limits).
func (d *Directory) Tenant(id string) (Tenant, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	t, ok := d.tenants[id]
	return t, ok
}

// Limits returns a tenant's limits; ok is false if there is no such tenant.
func (d *Directory) Limits(tenantID string) (Limits, bool) {
	t, ok := d.Tenant(tenantID)
	return t.Limits, ok
}

// APIKey returns the API key with the ID from a token (authz.ParseToken),
// in whichever tenant it is.
func (d *Directory) APIKey(id string) (APIKey, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	k, ok := d.apiKeys[id]
	return k, ok
}

// JWTVerifiers returns the tenant's JWT keys in the form authz.VerifyJWT
// takes, in ID order. Keys that name a JWKS URL are not among them; the
// edge resolves those (JWKSKeys lists them).
func (d *Directory) JWTVerifiers(tenantID string) []authz.JWTKey {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []authz.JWTKey
	for _, id := range slices.Sorted(maps.Keys(d.jwtKeys[tenantID])) {
		if e := d.jwtKeys[tenantID][id]; e.ok {
			out = append(out, e.verifier)
		}
	}
	return out
}

// JWKSKeys returns the tenant's JWT keys that name a JWKS URL.
func (d *Directory) JWKSKeys(tenantID string) []JWTKey {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []JWTKey
	for _, id := range slices.Sorted(maps.Keys(d.jwtKeys[tenantID])) {
		if k := d.jwtKeys[tenantID][id].value.(JWTKey); k.JWKSURL != "" {
			out = append(out, k)
		}
	}
	return out
}

// MTLSByFingerprint returns the identity pinned to a certificate's SHA-256
// fingerprint (Fingerprint).
func (d *Directory) MTLSByFingerprint(fp string) (MTLSIdentity, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	m, ok := d.byFingerprint[fp]
	return m, ok
}

// MTLSBySubject returns the identity of a certificate subject DN.
func (d *Directory) MTLSBySubject(subject string) (MTLSIdentity, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	m, ok := d.bySubject[subject]
	return m, ok
}

// AdminKey returns an admin key by ID.
func (d *Directory) AdminKey(id string) (AdminKey, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	k, ok := d.adminKeys[id]
	return k, ok
}

// apply applies one event and returns the changes it made.
func (d *Directory) apply(r rawEvent) []Change {
	d.mu.Lock()
	defer d.mu.Unlock()
	var changes []Change
	switch r.typ {
	case EventReset:
		old := d.entries
		d.clear()
		for _, kv := range r.kvs {
			if e, ok := d.decode(kv); ok {
				d.put(string(kv.Key), e)
			}
		}
		// Deletions first, so that a consumer never sees a stale record
		// outlive its replacement.
		for _, k := range slices.Sorted(maps.Keys(old)) {
			if _, ok := d.entries[k]; !ok {
				e := old[k]
				changes = append(changes, Change{Kind: e.kind, Tenant: e.tenant, ID: e.id, Deleted: true, Revision: r.rev})
			}
		}
		for _, k := range slices.Sorted(maps.Keys(d.entries)) {
			if e := d.entries[k]; old[k].rev != e.rev {
				changes = append(changes, Change{Kind: e.kind, Tenant: e.tenant, ID: e.id, Revision: e.rev})
			}
		}
	case EventPut:
		key := string(r.kv.Key)
		e, ok := d.decode(r.kv)
		if !ok {
			return nil
		}
		d.remove(key)
		d.put(key, e)
		changes = append(changes, Change{Kind: e.kind, Tenant: e.tenant, ID: e.id, Revision: r.rev})
	case EventDelete:
		key := string(r.kv.Key)
		if e, ok := d.entries[key]; ok {
			d.remove(key)
			changes = append(changes, Change{Kind: e.kind, Tenant: e.tenant, ID: e.id, Deleted: true, Revision: r.rev})
		}
	}
	d.rev = max(d.rev, r.rev)
	return changes
}

// decode classifies and decodes a key-value under the prefix; ok is false
// for keys outside the layout and for undecodable values, which are logged
// and skipped so that one damaged record hides nothing else.
func (d *Directory) decode(kv *mvccpb.KeyValue) (entry, bool) {
	s := d.src
	rel := strings.TrimPrefix(string(kv.Key), s.prefix)
	dir, rest, _ := strings.Cut(rel, "/")
	var (
		e   entry
		err error
	)
	switch dir + "/" {
	case dirTenants:
		var t Tenant
		if t, err = s.decode(kv.Key, kv.Value, kv.ModRevision); err == nil {
			e = entry{kind: KindTenant, tenant: t.ID, id: t.ID, value: t}
		}
	case dirKeys:
		var k APIKey
		if k, err = decodeRecord[APIKey](kv); err == nil {
			e = entry{kind: KindAPIKey, tenant: k.Tenant, id: k.ID, value: k}
		}
	case dirJWTKeys:
		var k JWTKey
		if k, err = decodeRecord[JWTKey](kv); err == nil {
			e = entry{kind: KindJWTKey, tenant: k.Tenant, id: k.ID, value: k}
			e.verifier, e.ok, err = k.Verifier()
		}
	case dirMTLS:
		var m MTLSIdentity
		if m, err = decodeRecord[MTLSIdentity](kv); err == nil {
			e = entry{kind: KindMTLSIdentity, tenant: m.Tenant, id: m.ID, value: m}
		}
	case dirAdminKeys:
		var k AdminKey
		if k, err = decodeRecord[AdminKey](kv); err == nil {
			e = entry{kind: KindAdminKey, tenant: k.Tenant, id: k.ID, value: k}
		}
	default:
		return entry{}, false
	}
	if err != nil {
		s.log.Warn("tenant directory: skipping undecodable record", "key", string(kv.Key), "err", err)
		return entry{}, false
	}
	// The key names the record: a value claiming another tenant or ID
	// than its place in the layout is refused, so that nobody who can
	// write one tenant's directory can mint another tenant's credential.
	if e.kind != KindTenant && e.kind != KindAdminKey && rest != e.tenant+"/"+e.id ||
		e.kind == KindAdminKey && rest != e.id {
		s.log.Warn("tenant directory: record does not match its key", "key", string(kv.Key))
		return entry{}, false
	}
	e.rev = kv.ModRevision
	return e, true
}

func (d *Directory) put(key string, e entry) {
	d.entries[key] = e
	switch v := e.value.(type) {
	case Tenant:
		d.tenants[v.ID] = v
	case APIKey:
		d.apiKeys[v.ID] = v
	case JWTKey:
		if d.jwtKeys[v.Tenant] == nil {
			d.jwtKeys[v.Tenant] = map[string]entry{}
		}
		d.jwtKeys[v.Tenant][v.ID] = e
	case MTLSIdentity:
		if v.FingerprintSHA256 != "" {
			d.byFingerprint[v.FingerprintSHA256] = v
		}
		if v.Subject != "" {
			d.bySubject[v.Subject] = v
		}
	case AdminKey:
		d.adminKeys[v.ID] = v
	}
}

func (d *Directory) remove(key string) {
	e, ok := d.entries[key]
	if !ok {
		return
	}
	delete(d.entries, key)
	switch v := e.value.(type) {
	case Tenant:
		delete(d.tenants, v.ID)
	case APIKey:
		if d.apiKeys[v.ID].Tenant == v.Tenant {
			delete(d.apiKeys, v.ID)
		}
	case JWTKey:
		delete(d.jwtKeys[v.Tenant], v.ID)
		if len(d.jwtKeys[v.Tenant]) == 0 {
			delete(d.jwtKeys, v.Tenant)
		}
	case MTLSIdentity:
		if d.byFingerprint[v.FingerprintSHA256].ID == v.ID {
			delete(d.byFingerprint, v.FingerprintSHA256)
		}
		if d.bySubject[v.Subject].ID == v.ID {
			delete(d.bySubject, v.Subject)
		}
	case AdminKey:
		delete(d.adminKeys, v.ID)
	}
}
