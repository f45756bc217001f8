package session

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// leases keeps tenant ownership in a NATS JetStream key-value bucket, so
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
	js       jetstream.JetStream
	bucket   string
	ttl      time.Duration
	replicas int
	id       string

	mu sync.Mutex
	kv jetstream.KeyValue // nil until opened, and again after the bucket vanished
}

func newLeases(js jetstream.JetStream, bucket string, ttl time.Duration, replicas int, id string) *leases {
	return &leases{js: js, bucket: bucket, ttl: ttl, replicas: replicas, id: id}
}

func tenantKey(tenant string) string { return "tenant." + tenant }
func replicaKey(id string) string    { return "replica." + id }

// store returns the bucket, creating it if needed (in memory: leases are
// ephemeral, and fencing covers a NATS restart that loses them).
func (l *leases) store(ctx context.Context) (jetstream.KeyValue, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kv != nil {
		return l.kv, nil
	}
	kv, err := l.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      l.bucket,
		Description: "Herald session service: replica heartbeats and tenant ownership",
		TTL:         l.ttl,
		History:     1,
		Storage:     jetstream.MemoryStorage,
		Replicas:    l.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket: %w", err)
	}
	l.kv = kv
	return kv, nil
}

// check forgets the bucket after an error that says it is gone.
func (l *leases) check(err error) error {
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		l.mu.Lock()
		l.kv = nil
		l.mu.Unlock()
	}
	return err
}

// heartbeat announces this replica for another TTL.
func (l *leases) heartbeat(ctx context.Context) error {
	kv, err := l.store(ctx)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, replicaKey(l.id), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	return l.check(err)
}

// live lists the replicas with a current heartbeat, this one included.
func (l *leases) live(ctx context.Context) ([]string, error) {
	kv, err := l.store(ctx)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeysFiltered(ctx, replicaKey(">"))
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return []string{l.id}, nil
		}
		return nil, l.check(err)
	}
	defer lister.Stop()
	out := []string{l.id}
	for k := range lister.Keys() {
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
	kv, err := l.store(ctx)
	if err != nil {
		return 0, err
	}
	rev, err := kv.Create(ctx, tenantKey(tenant), []byte(l.id))
	if err == nil {
		return rev, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return 0, l.check(err)
	}
	e, err := kv.Get(ctx, tenantKey(tenant))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, nil // expired in between: the next round creates it
	case err != nil:
		return 0, l.check(err)
	case string(e.Value()) != l.id:
		return 0, nil
	}
	rev, err = kv.Update(ctx, tenantKey(tenant), []byte(l.id), e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, nil
	}
	return rev, l.check(err)
}

// renew extends a held lease; it fails if the lease is no longer the one at
// rev (expired, or taken by another replica).
func (l *leases) renew(ctx context.Context, tenant string, rev uint64) (uint64, error) {
	kv, err := l.store(ctx)
	if err != nil {
		return 0, err
	}
	rev, err = kv.Update(ctx, tenantKey(tenant), []byte(l.id), rev)
	return rev, l.check(err)
}

// release gives a held lease up so that the desired owner can take it at
// once; a lease that moved on already is left alone.
func (l *leases) release(ctx context.Context, tenant string, rev uint64) error {
	kv, err := l.store(ctx)
	if err != nil {
		return err
	}
	err = kv.Delete(ctx, tenantKey(tenant), jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil
	}
	return l.check(err)
}

// leave removes this replica's heartbeat, so others rebalance at once.
func (l *leases) leave(ctx context.Context) error {
	kv, err := l.store(ctx)
	if err != nil {
		return err
	}
	return l.check(kv.Delete(ctx, replicaKey(l.id)))
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
