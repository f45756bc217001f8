package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// saveSessionScript implements SaveSession.
//
// KEYS: see redisKeys.session. ARGV: client id, expected revision, JSON,
// expiry deadline (Unix ms, -1 for none), max sessions, due (Unix ms, -1
// for none).
var saveSessionScript = redis.NewScript(`
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
return new
`)

// deleteSessionScript implements DeleteSession. ARGV: client id, revision
// (0 for any).
var deleteSessionScript = redis.NewScript(`
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
return 1
`)

// expireSessionsScript implements ExpireSessions. ARGV: now (Unix ms), max.
// Returns client id, stored value pairs.
var expireSessionsScript = redis.NewScript(`
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
		s.ClientID, strconv.FormatUint(s.Revision, 10), body, s.deadlineMillis(), lim.WithDefaults().Sessions, s.dueMillis()).Text()
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
	vals, err := r.rdb.HMGet(ctx, k.sessions, ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("store: due sessions %s: %w", tenant, err)
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
