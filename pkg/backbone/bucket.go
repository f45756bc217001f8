package backbone

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/nats-io/nats.go/jetstream"
)

// Sentinel errors of a Bucket.
var (
	// ErrKeyExists is returned by Create for a key that is present.
	ErrKeyExists = fault.New(fault.AlreadyExists, "backbone: key exists")
	// ErrKeyNotFound is returned by Get for a key that is absent (never
	// written, deleted, or expired).
	ErrKeyNotFound = fault.New(fault.NotFound, "backbone: key not found")
	// ErrRevision is returned by Update and Delete when the key is not at
	// the revision the caller holds.
	ErrRevision = fault.New(fault.Conflict, "backbone: key revision mismatch")
)

// BucketConfig configures a Bucket.
type BucketConfig struct {
	// Name names the bucket.
	Name        string
	Description string
	// TTL is how long a key lives after its last write.
	TTL time.Duration
	// Replicas is the bucket's replication factor; default 1.
	Replicas int
}

// Bucket is a key-value bucket whose keys expire one TTL after their last
// write: leases and heartbeats. It lives in memory on the NATS servers
// (JetStream key-value, history 1): what it holds is ephemeral by nature,
// and its users fence what matters elsewhere. Every write returns the key's
// new revision; Update and Delete are compare-and-set on it, so two writers
// never both believe they hold the same key. The bucket is created on first
// use, and again if it vanished (a NATS restart without it).
type Bucket struct {
	js  jetstream.JetStream
	cfg BucketConfig

	mu sync.Mutex
	kv jetstream.KeyValue // nil until opened, and again after the bucket vanished
}

// Bucket returns the bucket named in cfg.
func (b *Backbone) Bucket(cfg BucketConfig) *Bucket {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	return &Bucket{js: b.js, cfg: cfg}
}

func (k *Bucket) open(ctx context.Context) (jetstream.KeyValue, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kv != nil {
		return k.kv, nil
	}
	kv, err := k.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      k.cfg.Name,
		Description: k.cfg.Description,
		TTL:         k.cfg.TTL,
		History:     1,
		Storage:     jetstream.MemoryStorage,
		Replicas:    k.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %w", ErrUnavailable, k.cfg.Name, err)
	}
	k.kv = kv
	return kv, nil
}

// classify turns JetStream's key-value errors into the bucket's, and
// forgets the bucket after an error that says it is gone.
func (k *Bucket) classify(err error) error {
	switch {
	case err == nil:
		return nil
	// JetStream's "key exists" matches a revision mismatch too: a create
	// is an update at revision 0. Mismatches are told first.
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return fmt.Errorf("%w: %w", ErrRevision, err)
	case errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("%w: %w", ErrKeyExists, err)
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("%w: %w", ErrKeyNotFound, err)
	case errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		k.mu.Lock()
		k.kv = nil
		k.mu.Unlock()
	}
	return unavailable(err)
}

// Put writes key whatever it holds and returns its revision.
func (k *Bucket) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	kv, err := k.open(ctx)
	if err != nil {
		return 0, err
	}
	rev, err := kv.Put(ctx, key, value)
	return rev, k.classify(err)
}

// Create writes key if it is absent (ErrKeyExists otherwise).
func (k *Bucket) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	kv, err := k.open(ctx)
	if err != nil {
		return 0, err
	}
	rev, err := kv.Create(ctx, key, value)
	return rev, k.classify(err)
}

// Update writes key if it is at revision rev (ErrRevision otherwise).
func (k *Bucket) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	kv, err := k.open(ctx)
	if err != nil {
		return 0, err
	}
	rev, err = kv.Update(ctx, key, value, rev)
	return rev, k.classify(err)
}

// Get returns key's value and revision (ErrKeyNotFound when absent).
func (k *Bucket) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	kv, err := k.open(ctx)
	if err != nil {
		return nil, 0, err
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return nil, 0, k.classify(err)
	}
	return e.Value(), e.Revision(), nil
}

// Delete removes key; with rev above 0, only if the key is at that
// revision (ErrRevision otherwise). Deleting an absent key is not an
// error.
func (k *Bucket) Delete(ctx context.Context, key string, rev uint64) error {
	kv, err := k.open(ctx)
	if err != nil {
		return err
	}
	var opts []jetstream.KVDeleteOpt
	if rev > 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	return k.classify(kv.Delete(ctx, key, opts...))
}

// Keys lists the present keys matching filter (NATS subject wildcards: "*"
// one token, ">" the rest).
func (k *Bucket) Keys(ctx context.Context, filter string) ([]string, error) {
	kv, err := k.open(ctx)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeysFiltered(ctx, filter)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, k.classify(err)
	}
	defer lister.Stop()
	var out []string
	for key := range lister.Keys() {
		out = append(out, key)
	}
	return out, nil
}
