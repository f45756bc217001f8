package limits

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Operations of the connection script.
const (
	opAcquire = "acquire"
	opRelease = "release"
	opSync    = "sync"
)

// connScript counts connections of one tenant, atomically.
//
// Keys, for prefix P and tenant T (hash tag {T}, one Cluster slot):
//
//	KEYS[1] P:{T}:conns        hash  edge id -> its connections
//	KEYS[2] P:{T}:conn_leases  zset  edge id, score: lease expiry (Unix ms, Redis clock)
//
// ARGV: edge id, operation, limit (0 = none), lease TTL in ms, the edge's
// own count before the operation.
//
// Edges whose lease expired are dropped first. The edge's own count is
// taken from ARGV for "sync" and whenever its lease was lost (Redis
// restarted, or the edge stalled past its lease), otherwise from the hash,
// so that concurrent acquires and releases combine as deltas. It returns
// {1 or 0 (admitted), the tenant's connections after the operation, the
// number of edges holding some}.
var connScript = redis.NewScript(`
local edge, op = ARGV[1], ARGV[2]
local limit, ttl, given = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  if e ~= edge then
    redis.call('HDEL', KEYS[1], e)
    redis.call('ZREM', KEYS[2], e)
  end
end
local mine = tonumber(redis.call('HGET', KEYS[1], edge) or '0')
local leased = redis.call('ZSCORE', KEYS[2], edge)
if op == 'sync' or not leased or tonumber(leased) <= now then
  mine = given
end
local others, edges = 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= edge then
    local n = tonumber(all[i + 1])
    others = others + n
    if n > 0 then edges = edges + 1 end
  end
end
local ok = 1
if op == 'acquire' then
  if limit > 0 and others + mine + 1 > limit then ok = 0 else mine = mine + 1 end
elseif op == 'release' then
  mine = math.max(0, mine - 1)
end
if mine > 0 then
  redis.call('HSET', KEYS[1], edge, mine)
  redis.call('ZADD', KEYS[2], now + ttl, edge)
  edges = edges + 1
else
  redis.call('HDEL', KEYS[1], edge)
  redis.call('ZREM', KEYS[2], edge)
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], 2 * ttl)
  redis.call('PEXPIRE', KEYS[2], 2 * ttl)
end
return {ok, others + mine, edges}
`)

type scriptResult struct {
	ok           bool
	total, edges int64
}

func (l *Limits) connKeys(tenantID string) []string {
	p := l.prefix + ":{" + tenantID + "}:"
	return []string{p + "conns", p + "conn_leases"}
}

func (l *Limits) scriptArgs(op string, limit, mine int64) []any {
	return []any{l.edge, op, limit, l.ttl.Milliseconds(), mine}
}

// script runs connScript for one tenant and records the edge count.
func (l *Limits) script(ctx context.Context, t *tenantState, op string, limit, mine int64) (scriptResult, error) {
	v, err := connScript.Run(ctx, l.rdb, l.connKeys(t.id), l.scriptArgs(op, limit, mine)...).Int64Slice()
	if err != nil {
		return scriptResult{}, err
	}
	return t.record(v), nil
}

// record stores the edge count of a script's reply.
func (t *tenantState) record(v []int64) scriptResult {
	if len(v) != 3 {
		return scriptResult{}
	}
	t.edges.Store(max(1, v[2]))
	return scriptResult{ok: v[0] == 1, total: v[1], edges: v[2]}
}

// heartbeatBatch bounds the tenants synced in one pipelined round trip,
// and so the tenants whose connects wait for it.
const heartbeatBatch = 100

// Run renews this edge's leases every LeaseTTL/3, writing its exact count
// of every tenant's connections, until ctx is done; then it removes this
// edge's counts (a clean shutdown releases at once, a crash after the
// lease) and returns nil. Without Redis it only forgets idle tenants.
func (l *Limits) Run(ctx context.Context) error {
	tick := time.NewTicker(l.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if l.rdb != nil {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				l.sync(sctx, true)
				cancel()
			}
			return nil
		case <-tick.C:
			if l.rdb != nil {
				l.sync(ctx, false)
			}
			l.forget()
		}
	}
}

// sync writes this edge's count of every tenant it tracks (0 for all when
// final). Each batch holds its tenants' slots exclusively for one round
// trip, so no delta in flight is overwritten.
func (l *Limits) sync(ctx context.Context, final bool) {
	l.mu.Lock()
	ts := make([]*tenantState, 0, len(l.tenants))
	for _, t := range l.tenants {
		ts = append(ts, t)
	}
	l.mu.Unlock()
	for batch := range slices.Chunk(ts, heartbeatBatch) {
		for _, t := range batch {
			t.slots.Lock()
		}
		// EVAL, not EVALSHA: a pipeline cannot fall back after NOSCRIPT,
		// and a heartbeat every LeaseTTL/3 can afford sending the script.
		pipe := l.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(batch))
		for i, t := range batch {
			n := t.local.Load()
			if final {
				n = 0
			}
			cmds[i] = connScript.Eval(ctx, pipe, l.connKeys(t.id), l.scriptArgs(opSync, 0, n)...)
		}
		_, _ = pipe.Exec(ctx)
		var failed error
		for i, t := range batch {
			v, err := cmds[i].Int64Slice()
			if err != nil {
				failed = err
				continue
			}
			t.record(v)
		}
		for _, t := range batch {
			t.slots.Unlock()
		}
		if failed != nil {
			l.log.Warn("limits: connection count heartbeat failed", "tenants", len(batch), "err", failed)
		}
	}
}

// forget drops tenants without connections unused for two leases; their
// buckets start full again on next use.
func (l *Limits) forget() {
	cutoff := l.now().Add(-2 * l.ttl)
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, t := range l.tenants {
		if t.refs == 0 && t.local.Load() == 0 && t.used.Before(cutoff) {
			delete(l.tenants, id)
		}
	}
}

// ClusterConnections returns the tenant's connections across the cluster
// as the counter holds them (edges whose lease has not expired by this
// edge's clock), for usage reporting.
func (l *Limits) ClusterConnections(ctx context.Context, tenantID string) (int64, error) {
	if l.rdb == nil {
		return l.Connections(tenantID), nil
	}
	keys := l.connKeys(tenantID)
	counts, err := l.rdb.HGetAll(ctx, keys[0]).Result()
	if err != nil {
		return 0, err
	}
	live, err := l.rdb.ZRangeByScore(ctx, keys[1], &redis.ZRangeBy{Min: "(" + strconv.FormatInt(l.now().UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range live {
		n, _ := strconv.ParseInt(counts[e], 10, 64)
		total += n
	}
	return total, nil
}
