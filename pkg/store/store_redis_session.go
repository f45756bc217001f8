package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// unedgeLua removes a session from the edge index: session_edge holds
// "<edge>\0<client id>" members (score 0, read by lex range) and
// session_edge_of the edge of each listed client id.
const unedgeLua = `
local function unedge(id)
  local e = redis.call('HGET', KEYS[7], id)
  if e then
    redis.call('ZREM', KEYS[6], e .. '\0' .. id)
    redis.call('HDEL', KEYS[7], id)
  end
end
`

// saveSessionScript implements SaveSession.
//
// KEYS: see redisKeys.session. ARGV: client id, expected revision, JSON,
// expiry deadline (Unix ms, -1 for none), max sessions, due (Unix ms, -1
// for none), edge to list the session under ("" for none).
var saveSessionScript = redis.NewScript(unedgeLua + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local rev = 0
if cur then
  rev = tonumber(string.sub(cur, 1, string.find(cur, ':', 1, true) - 1))
end
if rev ~= tonumber(ARGV[2]) then
  return redis.error_reply('` + replyConflict + `')
end
if (not cur) and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return redis.error_reply('` + replyLimit + `')
end
local new = string.format('%d', redis.call('INCR', KEYS[4]))
redis.call('HSET', KEYS[1], ARGV[1], new .. ':' .. ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if ARGV[4] == '-1' then
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
end
if ARGV[6] == '-1' then
  redis.call('ZREM', KEYS[5], ARGV[1])
else
  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[1])
end
unedge(ARGV[1])
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[6], 0, ARGV[7] .. '\0' .. ARGV[1])
  redis.call('HSET', KEYS[7], ARGV[1], ARGV[7])
end
return new
`)

// deleteSessionScript implements DeleteSession. ARGV: client id, revision
// (0 for any).
var deleteSessionScript = redis.NewScript(unedgeLua + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then
  return 0
end
local rev = tonumber(string.sub(cur, 1, string.find(cur, ':', 1, true) - 1))
if ARGV[2] ~= '0' and rev ~= tonumber(ARGV[2]) then
  return redis.error_reply('` + replyConflict + `')
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
unedge(ARGV[1])
return 1
`)

// expireSessionsScript implements ExpireSessions. ARGV: now (Unix ms), max.
// Returns client id, stored value pairs.
var expireSessionsScript = redis.NewScript(unedgeLua + `
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local cur = redis.call('HGET', KEYS[1], id)
  if cur then
    out[#out + 1] = id
    out[#out + 1] = cur
  end
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[5], id)
  unedge(id)
end
return out
`)

// parseStoredSession splits "<revision>:<JSON>".
func parseStoredSession(clientID, v string) (*Session, error) {
	revText, body, ok := strings.Cut(v, ":")
	rev, err := strconv.ParseUint(revText, 10, 64)
	if !ok || err != nil {
		return nil, fmt.Errorf("%w: session %q", ErrCorrupt, clientID)
	}
	return decodeSession(clientID, rev, []byte(body))
}

// LoadSession implements SessionStore.
func (r *Redis) LoadSession(ctx context.Context, tenant, clientID string) (*Session, error) {
	if err := checkClientID(tenant, clientID); err != nil {
		return nil, err
	}
	v, err := r.rdb.HGet(ctx, r.keys(tenant).sessions, clientID).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("store: load session %s: %w", tenant, err)
	}
	return parseStoredSession(clientID, v)
}

// SaveSession implements SessionStore.
func (r *Redis) SaveSession(ctx context.Context, tenant string, s *Session, lim Limits) error {
	if err := checkSession(tenant, s); err != nil {
		return err
	}
	if err := lim.Validate(); err != nil {
		return err
	}
	body, err := encodeSession(s)
	if err != nil {
		return err
	}
	rev, err := saveSessionScript.Run(ctx, r.rdb, r.keys(tenant).session(),
		s.ClientID, strconv.FormatUint(s.Revision, 10), body, deadlineMillis(s), lim.WithDefaults().Sessions, dueMillis(s),
		edgeIndex(s)).Text()
	if err != nil {
		return fmt.Errorf("store: save session %s: %w", tenant, scriptErr(err))
	}
	n, err := strconv.ParseUint(rev, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: revision %q", ErrCorrupt, rev)
	}
	s.Revision = n
	return nil
}

// DeleteSession implements SessionStore.
func (r *Redis) DeleteSession(ctx context.Context, tenant, clientID string, revision uint64) error {
	if err := checkClientID(tenant, clientID); err != nil {
		return err
	}
	err := deleteSessionScript.Run(ctx, r.rdb, r.keys(tenant).session(), clientID, strconv.FormatUint(revision, 10)).Err()
	if err != nil {
		return fmt.Errorf("store: delete session %s: %w", tenant, scriptErr(err))
	}
	return nil
}

// Sessions implements SessionStore: a page of the lex-ordered id index,
// then the sessions themselves (one read each step; an id whose session
// went in between is left out).
func (r *Redis) Sessions(ctx context.Context, tenant, after string, max int) ([]*Session, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultSessionPage
	}
	k := r.keys(tenant)
	start := "-"
	if after != "" {
		start = "(" + after
	}
	ids, err := r.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: k.sessionIDs, Start: start, Stop: "+", ByLex: true, Count: int64(max)}).Result()
	if err != nil || len(ids) == 0 {
		if err != nil {
			return nil, fmt.Errorf("store: sessions %s: %w", tenant, err)
		}
		return nil, nil
	}
	vals, err := r.rdb.HMGet(ctx, k.sessions, ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("store: sessions %s: %w", tenant, err)
	}
	out := make([]*Session, 0, len(ids))
	for i, v := range vals {
		sv, ok := v.(string)
		if !ok {
			continue
		}
		s, err := parseStoredSession(ids[i], sv)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// CountSessions implements SessionStore.
func (r *Redis) CountSessions(ctx context.Context, tenant string) (int, error) {
	if err := checkTenant(tenant); err != nil {
		return 0, err
	}
	n, err := r.rdb.HLen(ctx, r.keys(tenant).sessions).Result()
	if err != nil {
		return 0, fmt.Errorf("store: count sessions %s: %w", tenant, err)
	}
	return int(n), nil
}

// ExpireSessions implements SessionStore.
func (r *Redis) ExpireSessions(ctx context.Context, tenant string, now time.Time, max int) ([]*Session, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultSessionPage
	}
	kv, err := expireSessionsScript.Run(ctx, r.rdb, r.keys(tenant).session(), now.UnixMilli(), max).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("store: expire sessions %s: %w", tenant, err)
	}
	out := make([]*Session, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		s, err := parseStoredSession(kv[i], kv[i+1])
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// DueSessions implements SessionStore: a page of the due index, then the
// sessions themselves (an id whose session went in between is left out).
func (r *Redis) DueSessions(ctx context.Context, tenant string, now time.Time, max int) ([]*Session, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultSessionPage
	}
	k := r.keys(tenant)
	ids, err := r.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: k.sessionDue, Start: "-inf",
		Stop: strconv.FormatInt(now.UnixMilli(), 10), ByScore: true, Count: int64(max)}).Result()
	if err != nil || len(ids) == 0 {
		if err != nil {
			return nil, fmt.Errorf("store: due sessions %s: %w", tenant, err)
		}
		return nil, nil
	}
	out, err := r.sessionsOf(ctx, k, ids)
	if err != nil {
		return nil, fmt.Errorf("store: due sessions %s: %w", tenant, err)
	}
	return out, nil
}

// sessionsOf reads the sessions of ids (an id whose session went in
// between is left out).
func (r *Redis) sessionsOf(ctx context.Context, k redisKeys, ids []string) ([]*Session, error) {
	vals, err := r.rdb.HMGet(ctx, k.sessions, ids...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]*Session, 0, len(ids))
	for i, v := range vals {
		sv, ok := v.(string)
		if !ok {
			continue
		}
		s, err := parseStoredSession(ids[i], sv)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// SessionEdges implements SessionStore: it walks the edge index from edge
// to edge, skipping each one's sessions with a lex range past them.
func (r *Redis) SessionEdges(ctx context.Context, tenant string) ([]string, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	k := r.keys(tenant)
	var edges []string
	start := "-"
	for {
		m, err := r.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: k.sessionEdge, Start: start, Stop: "+", ByLex: true, Count: 1}).Result()
		if err != nil {
			return nil, fmt.Errorf("store: session edges %s: %w", tenant, err)
		}
		if len(m) == 0 {
			return edges, nil
		}
		edge, _, _ := strings.Cut(m[0], "\x00")
		edges = append(edges, edge)
		start = "[" + edge + "\x01"
	}
}

// EdgeSessions implements SessionStore.
func (r *Redis) EdgeSessions(ctx context.Context, tenant, edge, after string, max int) ([]*Session, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if err := checkEdge(edge); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultSessionPage
	}
	k := r.keys(tenant)
	start := "[" + edge + "\x00"
	if after != "" {
		start = "(" + edge + "\x00" + after
	}
	members, err := r.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: k.sessionEdge, Start: start, Stop: "(" + edge + "\x01",
		ByLex: true, Count: int64(max)}).Result()
	if err != nil || len(members) == 0 {
		if err != nil {
			return nil, fmt.Errorf("store: edge sessions %s: %w", tenant, err)
		}
		return nil, nil
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m[len(edge)+1:]
	}
	out, err := r.sessionsOf(ctx, k, ids)
	if err != nil {
		return nil, fmt.Errorf("store: edge sessions %s: %w", tenant, err)
	}
	// A session saved since the index was read may name another edge now.
	return slices.DeleteFunc(out, func(s *Session) bool { return edgeIndex(s) != edge }), nil
}

// edgeLeasesKey is the hash of edge leases: edge → end (Unix ms). One key
// for all tenants: an edge serves many.
func (r *Redis) edgeLeasesKey() string { return r.prefix + ":edge_leases" }

// RenewEdgeLease implements EdgeLeaseStore.
func (r *Redis) RenewEdgeLease(ctx context.Context, edge string, until time.Time) error {
	if err := checkEdge(edge); err != nil {
		return err
	}
	if err := r.rdb.HSet(ctx, r.edgeLeasesKey(), edge, until.UnixMilli()).Err(); err != nil {
		return fmt.Errorf("store: renew edge lease %s: %w", edge, err)
	}
	return nil
}

// EdgeLeases implements EdgeLeaseStore.
func (r *Redis) EdgeLeases(ctx context.Context) (map[string]time.Time, error) {
	m, err := r.rdb.HGetAll(ctx, r.edgeLeasesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("store: edge leases: %w", err)
	}
	out := make(map[string]time.Time, len(m))
	for edge, v := range m {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: edge lease %q", ErrCorrupt, edge)
		}
		out[edge] = time.UnixMilli(ms)
	}
	return out, nil
}

// DeleteEdgeLease implements EdgeLeaseStore.
func (r *Redis) DeleteEdgeLease(ctx context.Context, edge string) error {
	if err := checkEdge(edge); err != nil {
		return err
	}
	if err := r.rdb.HDel(ctx, r.edgeLeasesKey(), edge).Err(); err != nil {
		return fmt.Errorf("store: delete edge lease %s: %w", edge, err)
	}
	return nil
}
