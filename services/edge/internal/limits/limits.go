// Package limits enforces a tenant's limits at an edge: connections across
// the cluster (a counter in Redis, with per-edge leases so that a dead
// edge's connections are released), publish rates (token buckets per
// tenant and per connection), payload size and subscriptions per
// connection. Limits are read from the tenant.Directory on every check, so
// a changed limit holds from the next check on.
package limits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/redis/go-redis/v9"
)

// Source gives a tenant's limits; *tenant.Directory implements it. ok
// false (an unknown tenant, such as an anonymous tenant not stored in
// etcd) means no limits. Lookups must not do I/O.
type Source interface {
	Limits(tenantID string) (tenant.Limits, bool)
}

// DefaultLeaseTTL is the default Config.LeaseTTL.
const DefaultLeaseTTL = 15 * time.Second

// Config configures Limits. The edge's flags map onto it: --edge-id,
// --redis-addrs and --redis-prefix (shared with the store),
// --connection-lease-ttl.
type Config struct {
	// EdgeID names this edge in the cluster-wide counter; unique per live
	// edge. Required.
	EdgeID string
	// Source is required.
	Source Source
	// Redis, if set, holds the cluster-wide connection counts. Without it
	// MaxConnections is enforced per edge, which is right only for a
	// single edge.
	Redis redis.UniversalClient
	// KeyPrefix starts the Redis keys; default "herald".
	KeyPrefix string
	// LeaseTTL is how long an edge's connection count outlives its last
	// heartbeat (sent every LeaseTTL/3 by Run): the time after which a
	// dead edge's connections no longer count. Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Log receives warnings (Redis unreachable); default slog.Default().
	Log *slog.Logger
	// Now returns the time for the token buckets; default time.Now.
	Now func() time.Time
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	switch {
	case c.EdgeID == "":
		return errors.New("limits: no EdgeID")
	case c.Source == nil:
		return errors.New("limits: no Source")
	case c.LeaseTTL < 0:
		return errors.New("limits: negative LeaseTTL")
	}
	return nil
}

// Limits enforces tenants' limits on one edge. Safe for concurrent use.
//
// Connections: Connect counts a connection in Redis against the tenant's
// MaxConnections, atomically with the check (one Lua script), so two edges
// cannot both take the last slot. Each edge's count is a hash field with a
// lease renewed by Run; a field whose lease expired is dropped by the next
// script that touches the tenant, so a dead edge's connections are
// released after LeaseTTL. Run also rewrites every field with the edge's
// exact count, so a lost Redis or a failed release heals within a
// heartbeat. If Redis fails, Connect admits up to MaxConnections on this
// edge alone (and logs): availability over exactness.
//
// Rates: the tenant-wide MaxMessagesPerSecond and MaxBytesPerSecond are
// split evenly among the edges that hold the tenant's connections (as the
// counter reports them), each enforcing its share in a local token bucket:
// no I/O per publish, at the price of under-serving a tenant whose traffic
// is concentrated on one edge of several. Per-connection rates are local
// buckets. Buckets hold one second of their rate.
type Limits struct {
	edge   string
	src    Source
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	tenants map[string]*tenantState
}

// tenantState is what an edge tracks of one tenant.
type tenantState struct {
	id string
	// slots is held shared by Connect and Close across their Redis round
	// trip and exclusively by the heartbeat while it writes the exact
	// count, so that no delta is lost under an absolute write.
	slots sync.RWMutex
	local atomic.Int64 // connections on this edge
	edges atomic.Int64 // edges holding the tenant's connections, >= 1
	refs  int          // Conns and operations using the state; guarded by Limits.mu
	used  time.Time    // last use; guarded by Limits.mu

	mu          sync.Mutex
	msgs, bytes bucket
}

// New returns Limits; call Run to keep the cluster-wide counts alive.
func New(cfg Config) (*Limits, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "herald"
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limits{
		edge: cfg.EdgeID, src: cfg.Source, rdb: cfg.Redis, prefix: cfg.KeyPrefix, ttl: cfg.LeaseTTL,
		log: cfg.Log, now: cfg.Now, tenants: map[string]*tenantState{},
	}, nil
}

// limitsOf reads a tenant's current limits.
func (l *Limits) limitsOf(tenantID string) tenant.Limits {
	lim, _ := l.src.Limits(tenantID)
	return lim
}

// acquire returns the tenant's state with a reference taken.
func (l *Limits) acquire(tenantID string) *tenantState {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.tenants[tenantID]
	if t == nil {
		t = &tenantState{id: tenantID}
		t.edges.Store(1)
		l.tenants[tenantID] = t
	}
	t.refs++
	t.used = l.now()
	return t
}

// release drops a reference taken by acquire.
func (l *Limits) release(t *tenantState) {
	l.mu.Lock()
	t.refs--
	l.mu.Unlock()
}

// Conn is one connection's share of the limits: its slot in the tenant's
// connection count and its own rate buckets. Close it when the connection
// ends.
type Conn struct {
	l      *Limits
	t      *tenantState
	closed atomic.Bool

	mu          sync.Mutex
	msgs, bytes bucket
}

// Connect counts a new connection of the tenant, refusing it with an error
// wrapping ErrConnectionLimit if the tenant holds MaxConnections across
// the cluster. The Conn must be closed.
func (l *Limits) Connect(ctx context.Context, tenantID string) (*Conn, error) {
	t := l.acquire(tenantID)
	max := l.limitsOf(tenantID).MaxConnections
	t.slots.RLock()
	ok, total, err := l.countConnect(ctx, t, max)
	if err == nil && ok {
		t.local.Add(1)
	}
	t.slots.RUnlock()
	if err != nil {
		l.log.Warn("limits: cluster connection count unavailable; counting this edge only", "tenant", tenantID, "err", err)
		// Fail open, bounded by what this edge alone may hold.
		if n := t.local.Add(1); max > 0 && n > max {
			t.local.Add(-1)
			ok, total = false, n-1
		} else {
			ok = true
		}
	}
	if !ok {
		l.release(t)
		return nil, fmt.Errorf("%w: tenant %s holds %d of %d", ErrConnectionLimit, tenantID, total, max)
	}
	return &Conn{l: l, t: t}, nil
}

// countConnect takes a slot in Redis; without Redis it counts locally.
func (l *Limits) countConnect(ctx context.Context, t *tenantState, max int64) (ok bool, total int64, err error) {
	if l.rdb == nil {
		n := t.local.Load()
		return max == 0 || n < max, n, nil
	}
	// A CONNECT waits on this call: bound it well inside the clients'
	// connect timeouts (Paho's default is 5 s to 30 s) and fail open, as
	// for Redis being down. A Redis client following a Sentinel failover
	// was seen to hold such a call for 5 s.
	ctx, cancel := context.WithTimeout(ctx, AdmitTimeout)
	defer cancel()
	r, err := l.script(ctx, t, opAcquire, max, t.local.Load())
	if err != nil {
		return false, 0, err
	}
	return r.ok, r.total, nil
}

// AdmitTimeout bounds the cluster-wide connection count a new connection
// waits for; past it the connection is counted on this edge alone.
var AdmitTimeout = time.Second

// Close releases the connection's slot. Idempotent. A failed Redis write
// is healed by the next heartbeat.
func (c *Conn) Close() {
	if c.closed.Swap(true) {
		return
	}
	l, t := c.l, c.t
	t.slots.RLock()
	t.local.Add(-1)
	if l.rdb != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if _, err := l.script(ctx, t, opRelease, 0, t.local.Load()+1); err != nil {
			l.log.Warn("limits: releasing a connection slot failed; the next heartbeat corrects it", "tenant", t.id, "err", err)
		}
		cancel()
	}
	t.slots.RUnlock()
	l.release(t)
}

// Publish checks a publish of a payload of n bytes by this connection
// against the payload limit, the connection's rates and the tenant's, and
// if it is allowed takes it from every bucket. Errors wrap
// ErrPayloadTooLarge or ErrRateLimited; a refused publish takes nothing.
func (c *Conn) Publish(n int) error {
	lim := c.l.limitsOf(c.t.id)
	if err := payload(lim, n); err != nil {
		return err
	}
	now := c.l.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs.setRate(lim.MaxConnectionMessagesPerSecond, now)
	c.bytes.setRate(lim.MaxConnectionBytesPerSecond, now)
	if !c.msgs.allows(1, now) || !c.bytes.allows(float64(n), now) {
		return fmt.Errorf("%w: connection rate of %d msg/s, %d B/s", ErrRateLimited, lim.MaxConnectionMessagesPerSecond, lim.MaxConnectionBytesPerSecond)
	}
	if err := c.l.tenantPublish(c.t, lim, n, now); err != nil {
		return err
	}
	c.msgs.take(1, now)
	c.bytes.take(float64(n), now)
	return nil
}

// Subscriptions checks that a connection may hold n subscriptions (the
// count after the SUBSCRIBE being handled): an error wrapping
// ErrSubscriptionLimit if not.
func (c *Conn) Subscriptions(n int) error {
	if max := c.l.limitsOf(c.t.id).MaxSubscriptionsPerConnection; max > 0 && int64(n) > max {
		return fmt.Errorf("%w: %d of at most %d", ErrSubscriptionLimit, n, max)
	}
	return nil
}

// Limits returns the tenant's current limits, for the limits a transport
// applies itself (MaxQueuedMessages, ReplayWindow).
func (c *Conn) Limits() tenant.Limits { return c.l.limitsOf(c.t.id) }

// Publish checks a publish outside any connection (HTTP publish) against
// the payload limit and the tenant's rates, as Conn.Publish does.
func (l *Limits) Publish(tenantID string, n int) error {
	lim := l.limitsOf(tenantID)
	if err := payload(lim, n); err != nil {
		return err
	}
	t := l.acquire(tenantID)
	defer l.release(t)
	return l.tenantPublish(t, lim, n, l.now())
}

func payload(lim tenant.Limits, n int) error {
	if lim.MaxPayloadBytes > 0 && int64(n) > lim.MaxPayloadBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrPayloadTooLarge, n, lim.MaxPayloadBytes)
	}
	return nil
}

// tenantPublish checks and takes a publish from the tenant's buckets, at
// this edge's share of the tenant's rates.
func (l *Limits) tenantPublish(t *tenantState, lim tenant.Limits, n int, now time.Time) error {
	edges := max(1, t.edges.Load())
	share := func(rate int64) int64 {
		if rate == 0 {
			return 0
		}
		return max(1, rate/edges)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.msgs.setRate(share(lim.MaxMessagesPerSecond), now)
	t.bytes.setRate(share(lim.MaxBytesPerSecond), now)
	if !t.msgs.allows(1, now) || !t.bytes.allows(float64(n), now) {
		return fmt.Errorf("%w: tenant rate of %d msg/s, %d B/s", ErrRateLimited, lim.MaxMessagesPerSecond, lim.MaxBytesPerSecond)
	}
	t.msgs.take(1, now)
	t.bytes.take(float64(n), now)
	return nil
}

// Connections returns the tenant's connections on this edge.
func (l *Limits) Connections(tenantID string) int64 {
	l.mu.Lock()
	t := l.tenants[tenantID]
	l.mu.Unlock()
	if t == nil {
		return 0
	}
	return t.local.Load()
}
