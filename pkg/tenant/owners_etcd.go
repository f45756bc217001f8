package tenant

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Identity ownership. A credential that selects its tenant by itself — an
// API key id, a certificate fingerprint or subject — must belong to one
// tenant only, or whoever registered it last would take the devices that
// present it (and deleting that copy would lock the owner out). JWT key
// ids and issuers are owned the same way, so that one tenant's token
// issuer cannot be registered by another.
//
// Each owned identity has one owner key,
//
//	owners/<kind>/<identity>   {"tenant": ..., "id": ...}
//
// naming the record that holds it (an issuer names only the tenant: all
// of that tenant's JWT keys with that issuer share it). A record and its
// owner keys are created in one transaction that requires every owner key
// to be absent, so of two concurrent registrations exactly one wins. An
// owner key whose record is gone (deleted singly, or with its tenant) is
// stale: a registration takes it over in a transaction conditional on the
// record still being absent. Deleting a record deletes its own owner keys
// and never another tenant's: each deletion is conditional on the owner
// key's value.
//
// Data written before the index existed has no owner keys:
// ReconcileOwners builds them (the admin server runs it at start).
const (
	dirOwners = "owners/"

	ownAPIKey          = "api-key/"
	ownJWTKeyID        = "jwt-kid/"
	ownJWTIssuer       = "jwt-issuer/"
	ownMTLSFingerprint = "mtls-fingerprint/"
	ownMTLSSubject     = "mtls-subject/"
)

// owner is the value of an owner key.
type owner struct {
	Tenant string `json:"tenant,omitempty"`
	// ID is the record holding the identity; empty for a JWT issuer.
	ID string `json:"id,omitempty"`
	// Conflict marks an identity that several tenants held before the
	// index existed: nobody can register it, and a Directory resolves it to
	// nobody, until all holders but one are deleted and ReconcileOwners
	// runs again.
	Conflict bool `json:"conflict,omitempty"`
}

func (o owner) encode() string {
	b, _ := json.Marshal(o)
	return string(b)
}

// claim is one identity a record holds.
type claim struct {
	// key is the owner key.
	key string
	// name is the identity itself (an issuer URL, a subject, ...); what
	// names it in errors (never the tenant holding it).
	name, what string
	// owner is the value the record's owner key holds.
	owner owner
	// record is the etcd key of the record holding the identity; for a
	// shared identity, the directory of the tenant's records of its kind.
	record string
}

// shared reports whether several records of one tenant may hold the
// identity (a JWT issuer).
func (c claim) shared() bool { return c.owner.ID == "" }

// encodeName makes free text (a certificate subject, an issuer URL) one
// etcd key element.
func encodeName(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// claims lists the identities a record holds.
func (s *Etcd) claims(v any) []claim {
	own := s.prefix + dirOwners
	one := func(kind, ident, name, what, tenantID, id, dir string) claim {
		return claim{key: own + kind + ident, name: name, what: what + " " + name, owner: owner{Tenant: tenantID, ID: id},
			record: s.tenantDir(dir, tenantID) + id}
	}
	switch r := v.(type) {
	case APIKey:
		return []claim{one(ownAPIKey, r.ID, r.ID, "API key id", r.Tenant, r.ID, dirKeys)}
	case JWTKey:
		out := []claim{one(ownJWTKeyID, r.ID, r.ID, "JWT key id", r.Tenant, r.ID, dirJWTKeys)}
		if r.Issuer != "" {
			// Shared by the tenant's JWT keys: record is their directory.
			out = append(out, one(ownJWTIssuer, encodeName(r.Issuer), r.Issuer, "JWT issuer", r.Tenant, "", dirJWTKeys))
		}
		return out
	case MTLSIdentity:
		var out []claim
		if r.FingerprintSHA256 != "" {
			out = append(out, one(ownMTLSFingerprint, r.FingerprintSHA256, r.FingerprintSHA256, "certificate fingerprint", r.Tenant, r.ID, dirMTLS))
		}
		if r.Subject != "" {
			out = append(out, one(ownMTLSSubject, encodeName(r.Subject), r.Subject, "certificate subject", r.Tenant, r.ID, dirMTLS))
		}
		return out
	}
	return nil
}

// holdsIssuer reports whether any JWT key among kvs names issuer.
func holdsIssuer(kvs []*mvccpb.KeyValue, issuer string) bool {
	for _, kv := range kvs {
		if k, err := decodeRecord[JWTKey](kv); err == nil && k.Issuer == issuer {
			return true
		}
	}
	return false
}

// claimGuard decides, from the current owner key kv (nil if absent), how a
// record of c's tenant may take c: the comparisons that keep that decision
// true until the write, and whether the owner key must be written. It
// returns ErrIdentityTaken if another record holds the identity.
func (s *Etcd) claimGuard(ctx context.Context, c claim, kv *mvccpb.KeyValue) ([]clientv3.Cmp, bool, error) {
	if kv == nil {
		return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(c.key), "=", 0)}, true, nil
	}
	taken := fmt.Errorf("%w: %s", ErrIdentityTaken, c.what)
	var cur owner
	if err := json.Unmarshal(kv.Value, &cur); err != nil || cur.Conflict || cur.Tenant == "" || !ValidID(cur.Tenant) {
		return nil, false, taken
	}
	unchanged := clientv3.Compare(clientv3.ModRevision(c.key), "=", kv.ModRevision)
	if cur == c.owner {
		// It names this very record (or, for an issuer, its tenant): the
		// record's own existence decides.
		return []clientv3.Cmp{unchanged}, false, nil
	}
	if c.shared() {
		// Another tenant's issuer, unless none of its JWT keys names it
		// any more.
		dir := s.tenantDir(dirJWTKeys, cur.Tenant)
		resp, err := s.cli.Get(ctx, dir, clientv3.WithPrefix())
		if err != nil {
			return nil, false, fmt.Errorf("tenant: read %s: %w", dir, err)
		}
		if holdsIssuer(resp.Kvs, c.name) {
			return nil, false, taken
		}
		return []clientv3.Cmp{unchanged,
			clientv3.Compare(clientv3.ModRevision(dir), "<", resp.Header.Revision+1).WithPrefix()}, true, nil
	}
	// A record-bound identity: taken while the record it names exists.
	held := s.tenantDir(kindOf(c.key, s.prefix), cur.Tenant) + cur.ID
	resp, err := s.cli.Get(ctx, held, clientv3.WithCountOnly())
	if err != nil {
		return nil, false, fmt.Errorf("tenant: read %s: %w", held, err)
	}
	if resp.Count > 0 {
		return nil, false, taken
	}
	return []clientv3.Cmp{unchanged, clientv3.Compare(clientv3.CreateRevision(held), "=", 0)}, true, nil
}

// kindOf returns the record directory of an owner key's kind.
func kindOf(ownerKey, prefix string) string {
	switch {
	case strings.HasPrefix(ownerKey, prefix+dirOwners+ownAPIKey):
		return dirKeys
	case strings.HasPrefix(ownerKey, prefix+dirOwners+ownMTLSFingerprint),
		strings.HasPrefix(ownerKey, prefix+dirOwners+ownMTLSSubject):
		return dirMTLS
	}
	return dirJWTKeys
}

// releaseOps are the operations that delete a record's owner keys, each
// only while it still names that record: deleting one tenant's record
// never removes another tenant's ownership. An issuer's owner key is left
// to go stale: the tenant's other JWT keys may share it.
func releaseOps(cs []claim) []clientv3.Op {
	var ops []clientv3.Op
	for _, c := range cs {
		if c.shared() {
			continue
		}
		ops = append(ops, clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.Value(c.key), "=", c.owner.encode())},
			[]clientv3.Op{clientv3.OpDelete(c.key)}, nil))
	}
	return ops
}

// removeOwned deletes the record at key (if rev is not 0, only at that
// revision) with its owner keys: ErrNotFound or ErrConflict otherwise.
func removeOwned[T record, P recordPtr[T]](ctx context.Context, s *Etcd, key string, rev int64) error {
	for attempt := 0; ; attempt++ {
		kv, err := s.getKV(ctx, key)
		if err != nil {
			return err
		}
		if rev != 0 && kv.ModRevision != rev {
			return fmt.Errorf("%w: %s is no longer at revision %d", ErrConflict, strings.TrimPrefix(key, s.prefix), rev)
		}
		v, err := decodeRecord[T, P](kv)
		if err != nil {
			// Undecodable: it holds no identity an edge would resolve.
			return s.remove(ctx, key, kv.ModRevision)
		}
		err = s.remove(ctx, key, kv.ModRevision, releaseOps(s.claims(v))...)
		if err == nil || attempt == 5 || !errors.Is(err, ErrConflict) {
			return err
		}
		// Changed between the read and the delete: read it again.
	}
}

// reconcileBatch bounds the operations of one ReconcileOwners
// transaction, below etcd's default limit of 128.
const reconcileBatch = 64

// OwnersReport says what ReconcileOwners did.
type OwnersReport struct {
	// Indexed counts owner keys written for identities that had none.
	Indexed int
	// Conflicts counts identities held by several tenants' records: each
	// got a conflict marker (nobody can register it, and edges resolve it
	// to nobody) until all holders but one are deleted.
	Conflicts int
	// Stale counts owner keys removed because no record holds their
	// identity any more.
	Stale int
}

// ReconcileOwners makes the ownership index match the identity records:
// it writes the owner keys missing for records stored before the index
// existed (or by a writer that bypassed it), marks identities that
// several tenants hold as conflicts, and removes owner keys no record
// holds. Each write is conditional on what it read, so it is safe beside
// concurrent registrations and deletions; running it again finds nothing
// to do. Conflicts are logged with the records involved.
func (s *Etcd) ReconcileOwners(ctx context.Context) (OwnersReport, error) {
	var rep OwnersReport
	// Read the owners first: a record created after this read either
	// wrote its owner key after it (and is not touched below, every write
	// being conditional on the owner key as read), or is read below.
	owners, _, err := s.readAll(ctx, s.prefix+dirOwners)
	if err != nil {
		return rep, fmt.Errorf("tenant: reconcile owners: %w", err)
	}
	held := map[string][]claim{} // owner key → the claims of every record holding it
	for _, dir := range []string{dirKeys, dirJWTKeys, dirMTLS} {
		kvs, _, err := s.readAll(ctx, s.prefix+dir)
		if err != nil {
			return rep, fmt.Errorf("tenant: reconcile owners: %w", err)
		}
		for _, kv := range kvs {
			var v any
			switch dir {
			case dirKeys:
				v, err = decodeRecord[APIKey](kv)
			case dirJWTKeys:
				v, err = decodeRecord[JWTKey](kv)
			default:
				v, err = decodeRecord[MTLSIdentity](kv)
			}
			if err != nil {
				continue
			}
			for _, c := range s.claims(v) {
				if c.record == string(kv.Key) || c.shared() && strings.HasPrefix(string(kv.Key), c.record) {
					held[c.key] = append(held[c.key], c)
				}
			}
		}
	}
	var (
		cmps []clientv3.Cmp
		ops  []clientv3.Op
	)
	// flush writes a batch in one transaction; if anything in it changed
	// since it was read, it writes the rest one by one, leaving what
	// changed to the next run.
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err == nil && !resp.Succeeded {
			for i := range ops {
				if _, err = s.cli.Txn(ctx).If(cmps[i]).Then(ops[i]).Commit(); err != nil {
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("tenant: reconcile owners: %w", err)
		}
		cmps, ops = cmps[:0], ops[:0]
		return nil
	}
	add := func(cmp clientv3.Cmp, op clientv3.Op) error {
		cmps, ops = append(cmps, cmp), append(ops, op)
		if len(ops) < reconcileBatch {
			return nil
		}
		return flush()
	}
	byKey := make(map[string]*mvccpb.KeyValue, len(owners))
	for _, kv := range owners {
		byKey[string(kv.Key)] = kv
	}
	for _, key := range slices.Sorted(maps.Keys(held)) {
		cs, holders := held[key], distinctHolders(held[key])
		guard := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		var cur owner
		if kv, ok := byKey[key]; ok {
			guard = clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
			if json.Unmarshal(kv.Value, &cur) != nil {
				cur = owner{}
			}
		}
		switch {
		case cur.Conflict && len(holders) > 1:
			continue // still a conflict, already marked
		case !cur.Conflict && cur.Tenant != "" && slices.ContainsFunc(cs, func(c claim) bool { return c.owner == cur }):
			// The index names a holder. Others registered beside it
			// (before the index, or bypassing it) make edges resolve the
			// identity to nobody: say so.
			if len(holders) > 1 {
				s.log.Error("tenant: identity held by several records; edges resolve it to nobody until all but the indexed one are deleted",
					"owner_key", key, "records", holders)
			}
			continue
		}
		value := cs[0].owner
		if len(holders) > 1 {
			s.log.Error("tenant: identity held by several tenants' records; marked as a conflict: delete all but one",
				"owner_key", key, "records", holders)
			value = owner{Conflict: true}
			rep.Conflicts++
		} else {
			rep.Indexed++
		}
		if err := add(guard, clientv3.OpPut(key, value.encode())); err != nil {
			return rep, err
		}
	}
	for _, kv := range owners {
		if _, ok := held[string(kv.Key)]; ok {
			continue
		}
		rep.Stale++
		if err := add(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision), clientv3.OpDelete(string(kv.Key))); err != nil {
			return rep, err
		}
	}
	return rep, flush()
}

// distinctHolders lists the holders of one identity: records, or for a
// shared identity tenants.
func distinctHolders(cs []claim) []string {
	set := map[string]bool{}
	for _, c := range cs {
		if c.shared() {
			set[c.owner.Tenant] = true
		} else {
			set[c.record] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}
