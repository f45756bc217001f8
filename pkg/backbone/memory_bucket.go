package backbone

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// memBucket is a Bucket of a Memory backbone.
type memBucket struct {
	ttl  time.Duration
	now  func() time.Time
	mu   sync.Mutex
	rev  uint64
	keys map[string]memEntry
}

type memEntry struct {
	value []byte
	rev   uint64
	at    time.Time
}

// MemoryBucket is a Bucket of a Memory backbone, with its methods: keys
// expire one TTL after their last write.
type MemoryBucket struct{ b *memBucket }

// Bucket returns the bucket named in cfg; the same name gives the same
// bucket.
func (m *Memory) Bucket(cfg BucketConfig) *MemoryBucket {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.buckets[cfg.Name]
	if b == nil {
		b = &memBucket{ttl: cfg.TTL, now: time.Now, keys: map[string]memEntry{}}
		m.buckets[cfg.Name] = b
	}
	return &MemoryBucket{b: b}
}

// getLocked returns the live entry of key.
func (b *memBucket) getLocked(key string) (memEntry, bool) {
	e, ok := b.keys[key]
	if ok && b.ttl > 0 && b.now().Sub(e.at) >= b.ttl {
		delete(b.keys, key)
		return memEntry{}, false
	}
	return e, ok
}

func (b *memBucket) putLocked(key string, value []byte) uint64 {
	b.rev++
	b.keys[key] = memEntry{value: slices.Clone(value), rev: b.rev, at: b.now()}
	return b.rev
}

// Put writes key whatever it holds.
func (k *MemoryBucket) Put(_ context.Context, key string, value []byte) (uint64, error) {
	k.b.mu.Lock()
	defer k.b.mu.Unlock()
	return k.b.putLocked(key, value), nil
}

// Create writes key if it is absent.
func (k *MemoryBucket) Create(_ context.Context, key string, value []byte) (uint64, error) {
	k.b.mu.Lock()
	defer k.b.mu.Unlock()
	if _, ok := k.b.getLocked(key); ok {
		return 0, fmt.Errorf("%w: %s", ErrKeyExists, key)
	}
	return k.b.putLocked(key, value), nil
}

// Update writes key if it is at revision rev.
func (k *MemoryBucket) Update(_ context.Context, key string, value []byte, rev uint64) (uint64, error) {
	k.b.mu.Lock()
	defer k.b.mu.Unlock()
	if e, ok := k.b.getLocked(key); !ok || e.rev != rev {
		return 0, fmt.Errorf("%w: %s", ErrRevision, key)
	}
	return k.b.putLocked(key, value), nil
}

// Get returns key's value and revision.
func (k *MemoryBucket) Get(_ context.Context, key string) ([]byte, uint64, error) {
	k.b.mu.Lock()
	defer k.b.mu.Unlock()
	e, ok := k.b.getLocked(key)
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s", ErrKeyNotFound, key)
	}
	return slices.Clone(e.value), e.rev, nil
}

// Delete removes key, only at revision rev when rev is above 0.
func (k *MemoryBucket) Delete(_ context.Context, key string, rev uint64) error {
	k.b.mu.Lock()
	defer k.b.mu.Unlock()
	e, ok := k.b.getLocked(key)
	if rev > 0 && (!ok || e.rev != rev) {
		return fmt.Errorf("%w: %s", ErrRevision, key)
	}
	delete(k.b.keys, key)
	return nil
}

// Keys lists the present keys matching filter.
func (k *MemoryBucket) Keys(_ context.Context, filter string) ([]string, error) {
	k.b.mu.Lock()
	defer k.b.mu.Unlock()
	var out []string
	for key := range k.b.keys {
		if _, ok := k.b.getLocked(key); ok && covers(filter, key) {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out, nil
}
