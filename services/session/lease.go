package session

import (
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
)

// leases keeps tenant ownership in a key-value bucket of the backbone
// (LeaseBucket; NATS JetStream key-value in memory on the servers: leases
// are ephemeral, and fencing covers a NATS restart that loses them), so
// replicas need nothing but the NATS they already consume from.
//
// Keys, in bucket "<durable>-leases" whose TTL is the lease TTL:
//
//	replica.<id>   a replica's heartbeat: live replicas are the keys present
//	tenant.<t>     the owner of tenant t: the value is the owner's replica id
//
// Every key disappears one TTL after its last write, so a replica that dies
// stops being listed and loses its tenants within a TTL. Taking a tenant is
// a create (which fails while another replica holds it), renewing and
// releasing are compare-and-set on the revision the owner holds: two
// replicas can never both believe they hold the same lease. The tenant's
// desired owner is chosen by rendezvous hashing over the live replicas, so
// every replica computes the same answer from the same view, and a joining
// or leaving replica moves only the tenants it wins or held.
type leases struct {
	b  LeaseBucket
	id string
}

func tenantKey(tenant string) string { return "tenant." + tenant }
func replicaKey(id string) string    { return "replica." + id }

// heartbeat announces this replica for another TTL.
func (l *leases) heartbeat(ctx context.Context) error {
	_, err := l.b.Put(ctx, replicaKey(l.id), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	return err
}

// live lists the replicas with a current heartbeat, this one included.
func (l *leases) live(ctx context.Context) ([]string, error) {
	keys, err := l.b.Keys(ctx, replicaKey(">"))
	if err != nil {
		return nil, err
	}
	out := []string{l.id}
	for _, k := range keys {
		if id, ok := strings.CutPrefix(k, "replica."); ok && id != l.id {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// acquire takes the tenant's lease and returns its revision, or 0 if
// another replica holds it. A lease held under this replica's id (left by
// its previous incarnation, killed before releasing) is taken over at once.
func (l *leases) acquire(ctx context.Context, tenant string) (uint64, error) {
	rev, err := l.b.Create(ctx, tenantKey(tenant), []byte(l.id))
	if err == nil {
		return rev, nil
	}
	if !errors.Is(err, backbone.ErrKeyExists) {
		return 0, err
	}
	holder, rev, err := l.b.Get(ctx, tenantKey(tenant))
	switch {
	case errors.Is(err, backbone.ErrKeyNotFound):
		return 0, nil // expired in between: the next round creates it
	case err != nil:
		return 0, err
	case string(holder) != l.id:
		return 0, nil
	}
	rev, err = l.b.Update(ctx, tenantKey(tenant), []byte(l.id), rev)
	if errors.Is(err, backbone.ErrRevision) {
		return 0, nil
	}
	return rev, err
}

// renew extends a held lease; it fails (backbone.ErrRevision,
// backbone.ErrKeyNotFound) if the lease is no longer the one at rev
// (expired, or taken by another replica).
func (l *leases) renew(ctx context.Context, tenant string, rev uint64) (uint64, error) {
	return l.b.Update(ctx, tenantKey(tenant), []byte(l.id), rev)
}

// release gives a held lease up so that the desired owner can take it at
// once; a lease that moved on already is left alone.
func (l *leases) release(ctx context.Context, tenant string, rev uint64) error {
	err := l.b.Delete(ctx, tenantKey(tenant), rev)
	if errors.Is(err, backbone.ErrRevision) {
		return nil
	}
	return err
}

// leave removes this replica's heartbeat, so others rebalance at once.
func (l *leases) leave(ctx context.Context) error {
	return l.b.Delete(ctx, replicaKey(l.id), 0)
}

// owner is the desired owner of tenant among replicas: the one with the
// highest hash of (replica, tenant) — rendezvous hashing.
func owner(tenant string, replicas []string) string {
	var best string
	var bestScore uint64
	for _, r := range replicas {
		h := fnv.New64a()
		h.Write([]byte(r))
		h.Write([]byte{0})
		h.Write([]byte(tenant))
		// fnv mixes the last bytes weakly: finish with a 64-bit mixer so that
		// tenants sharing a prefix spread evenly.
		if s := mix(h.Sum64()); best == "" || s > bestScore || (s == bestScore && r < best) {
			best, bestScore = r, s
		}
	}
	return best
}

// mix is the splitmix64 finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}
