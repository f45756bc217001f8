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
// A credential never resolves to two tenants: an API key id, a
// fingerprint or a subject that several records hold (which the ownership
// index prevents, but records written before it or straight into etcd
// may) resolves to none of them, and is logged, until all but one are
// deleted. Refusing is safer than any rule picking one: whichever record
// it picked could be the one an attacker registered.
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
	apiKeys       holders[APIKey]
	jwtKeys       map[string]map[string]entry // tenant → id → entry
	byFingerprint holders[MTLSIdentity]
	bySubject     holders[MTLSIdentity]
	adminKeys     map[string]AdminKey
}

// holders maps an identity to every record holding it, by etcd key.
type holders[T any] map[string]map[string]T

// sole returns the one record holding ident; ok is false if none or
// several do.
func (h holders[T]) sole(ident string) (v T, ok bool) {
	if len(h[ident]) == 1 {
		for _, v := range h[ident] {
			return v, true
		}
	}
	return v, false
}

// add records that the record at key holds ident, and returns the keys of
// the other records holding it.
func (h holders[T]) add(ident, key string, v T) []string {
	if h[ident] == nil {
		h[ident] = map[string]T{}
	}
	h[ident][key] = v
	var others []string
	for k := range h[ident] {
		if k != key {
			others = append(others, k)
		}
	}
	slices.Sort(others)
	return others
}

// drop forgets that the record at key holds ident.
func (h holders[T]) drop(ident, key string) {
	delete(h[ident], key)
	if len(h[ident]) == 0 {
		delete(h, ident)
	}
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
	d.apiKeys = holders[APIKey]{}
	d.jwtKeys = map[string]map[string]entry{}
	d.byFingerprint = holders[MTLSIdentity]{}
	d.bySubject = holders[MTLSIdentity]{}
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
// in whichever tenant it is; none if several tenants hold the ID.
func (d *Directory) APIKey(id string) (APIKey, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.apiKeys.sole(id)
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
// fingerprint (Fingerprint); none if several identities hold it.
func (d *Directory) MTLSByFingerprint(fp string) (MTLSIdentity, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.byFingerprint.sole(fp)
}

// MTLSBySubject returns the identity of a certificate subject DN; none if
// several identities hold it.
func (d *Directory) MTLSBySubject(subject string) (MTLSIdentity, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.bySubject.sole(subject)
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
		clashed := map[string]bool{}
		for _, kv := range r.kvs {
			if e, ok := d.decode(kv); ok {
				for _, k := range d.put(string(kv.Key), e) {
					clashed[k], clashed[string(kv.Key)] = true, true
				}
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
			// A record in a clash counts as changed: its clients are
			// checked again (and refused).
			if e := d.entries[k]; old[k].rev != e.rev || clashed[k] {
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
		clashes := d.put(key, e)
		changes = append(changes, Change{Kind: e.kind, Tenant: e.tenant, ID: e.id, Revision: r.rev})
		// The other holders of a clashing identity no longer resolve:
		// their clients are checked again (and refused).
		for _, k := range clashes {
			o := d.entries[k]
			changes = append(changes, Change{Kind: o.kind, Tenant: o.tenant, ID: o.id, Revision: r.rev})
		}
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

// put adds a record and returns the keys of the other records holding an
// identity it holds (logged: the identity now resolves to nobody).
func (d *Directory) put(key string, e entry) []string {
	d.entries[key] = e
	var clashes []string
	switch v := e.value.(type) {
	case Tenant:
		d.tenants[v.ID] = v
	case APIKey:
		clashes = d.apiKeys.add(v.ID, key, v)
	case JWTKey:
		if d.jwtKeys[v.Tenant] == nil {
			d.jwtKeys[v.Tenant] = map[string]entry{}
		}
		d.jwtKeys[v.Tenant][v.ID] = e
	case MTLSIdentity:
		if v.FingerprintSHA256 != "" {
			clashes = d.byFingerprint.add(v.FingerprintSHA256, key, v)
		}
		if v.Subject != "" {
			for _, k := range d.bySubject.add(v.Subject, key, v) {
				if !slices.Contains(clashes, k) {
					clashes = append(clashes, k)
				}
			}
		}
	case AdminKey:
		d.adminKeys[v.ID] = v
	}
	if len(clashes) > 0 {
		d.src.log.Error("tenant directory: a credential identity is held by several records; it resolves to none of them until all but one are deleted",
			"key", key, "also_held_by", clashes)
	}
	return clashes
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
		d.apiKeys.drop(v.ID, key)
	case JWTKey:
		delete(d.jwtKeys[v.Tenant], v.ID)
		if len(d.jwtKeys[v.Tenant]) == 0 {
			delete(d.jwtKeys, v.Tenant)
		}
	case MTLSIdentity:
		d.byFingerprint.drop(v.FingerprintSHA256, key)
		d.bySubject.drop(v.Subject, key)
	case AdminKey:
		delete(d.adminKeys, v.ID)
	}
}
