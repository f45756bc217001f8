package tenantauth

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReplayGuard remembers the JWT ids ("jti") already used, so that a
// single-use token admits one connection. Implementations are safe for
// concurrent use; one shared by all edges (RedisReplay) refuses a replay
// on any edge, a MemoryReplay only on its own.
type ReplayGuard interface {
	// FirstUse records the tenant's token id until exp and reports
	// whether it had not been seen before. A zero exp is remembered for
	// DefaultReplayTTL.
	FirstUse(ctx context.Context, tenant, jti string, exp time.Time) (bool, error)
}

// DefaultReplayTTL is how long a token id without an expiry is remembered.
const DefaultReplayTTL = 24 * time.Hour

// ErrReplayFull is returned by a MemoryReplay that holds its maximum of
// unexpired ids: it refuses rather than forget one that could be replayed.
var ErrReplayFull = errors.New("tenantauth: replay guard full")

// MemoryReplay is a ReplayGuard of one edge, bounded to max ids.
type MemoryReplay struct {
	max int
	now func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time // tenant "/" jti → expiry
}

// NewMemoryReplay returns a guard of up to max ids (default 1<<16).
func NewMemoryReplay(max int, now func() time.Time) *MemoryReplay {
	if max <= 0 {
		max = 1 << 16
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryReplay{max: max, now: now, seen: map[string]time.Time{}}
}

// FirstUse implements ReplayGuard.
func (m *MemoryReplay) FirstUse(_ context.Context, tenant, jti string, exp time.Time) (bool, error) {
	now := m.now()
	if exp.IsZero() {
		exp = now.Add(DefaultReplayTTL)
	}
	k := tenant + "/" + jti
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.seen[k]; ok && now.Before(e) {
		return false, nil
	}
	if len(m.seen) >= m.max {
		for k, e := range m.seen {
			if !now.Before(e) {
				delete(m.seen, k)
			}
		}
		if len(m.seen) >= m.max {
			return false, ErrReplayFull
		}
	}
	m.seen[k] = exp
	return true, nil
}

// RedisReplay is a ReplayGuard shared by the edges of a cluster: one
// SET NX per token id at "<prefix>:{<tenant>}:jti:<jti>", expiring with the
// token (plus the JWT leeway, so a token accepted late is still known).
type RedisReplay struct {
	rdb    redis.UniversalClient
	prefix string
	leeway time.Duration
}

// NewRedisReplay returns a guard over rdb with key prefix (default
// "herald"); leeway is added to every expiry.
func NewRedisReplay(rdb redis.UniversalClient, prefix string, leeway time.Duration) *RedisReplay {
	if prefix == "" {
		prefix = "herald"
	}
	return &RedisReplay{rdb: rdb, prefix: prefix, leeway: leeway}
}

// FirstUse implements ReplayGuard.
func (r *RedisReplay) FirstUse(ctx context.Context, tenant, jti string, exp time.Time) (bool, error) {
	ttl := DefaultReplayTTL
	if !exp.IsZero() {
		ttl = time.Until(exp) + r.leeway
	}
	ttl = max(ttl, time.Second)
	err := r.rdb.SetArgs(ctx, r.prefix+":{"+tenant+"}:jti:"+jti, "1", redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

var (
	_ ReplayGuard = (*MemoryReplay)(nil)
	_ ReplayGuard = (*RedisReplay)(nil)
)
