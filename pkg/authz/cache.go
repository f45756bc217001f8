package authz

import (
	"crypto/sha256"
	"runtime"
	"sync"
)

// VerifyCache verifies secrets against argon2id hashes, remembering
// successes so that a client reconnecting with the same key costs one
// SHA-256 instead of a 19 MiB derivation, and running at most one
// derivation per CPU at a time so that a flood of wrong secrets cannot take
// more than the CPUs and bounded memory. Failures are never cached.
//
// A cached success is tied to the exact hash: rotating or revoking a key
// changes or removes its hash, so the cache never outlives a revocation
// (the caller looks the hash up fresh each time). Safe for concurrent use.
type VerifyCache struct {
	max  int
	slot chan struct{}

	mu sync.Mutex
	ok map[[sha256.Size]byte]struct{}
}

// NewVerifyCache returns a cache of up to max successes (default 10000 if
// max <= 0). When full it starts over empty, which is cheap and bounded.
func NewVerifyCache(max int) *VerifyCache {
	if max <= 0 {
		max = 10000
	}
	return &VerifyCache{max: max, slot: make(chan struct{}, runtime.GOMAXPROCS(0)), ok: make(map[[sha256.Size]byte]struct{})}
}

// Verify is VerifySecret(secret, hash), answered from the cache when the
// pair verified before.
func (c *VerifyCache) Verify(secret, hash string) error {
	h := sha256.New()
	h.Write([]byte(hash))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	var k [sha256.Size]byte
	h.Sum(k[:0])

	c.mu.Lock()
	_, hit := c.ok[k]
	c.mu.Unlock()
	if hit {
		return nil
	}
	c.slot <- struct{}{}
	err := VerifySecret(secret, hash)
	<-c.slot
	if err != nil {
		return err
	}
	c.mu.Lock()
	if len(c.ok) >= c.max {
		clear(c.ok)
	}
	c.ok[k] = struct{}{}
	c.mu.Unlock()
	return nil
}
