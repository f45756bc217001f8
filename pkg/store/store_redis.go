package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/redis/go-redis/v9"
)

// RedisConfig configures a Redis store.
type RedisConfig struct {
	// KeyPrefix starts every key; default "herald". Distinct prefixes let
	// several clusters (or tests) share one Redis.
	KeyPrefix string
}

// Redis is a Store in Redis 7.0 or newer, standalone or Cluster.
//
// Key layout, for prefix P and tenant T (every key of a tenant carries the
// hash tag {T}, so a tenant lives in one Cluster slot and every write is one
// Lua script):
//
//	P:{T}:epoch           string  epoch of the stream the state derives from
//	P:{T}:applied         string  Seq of the last applied message
//	P:{T}:trimmed         string  highest Seq trimmed from the replay buffer
//	P:{T}:replay          zset    score Seq, member the encoded message
//	P:{T}:replay_age      zset    score Seq, member "<Seq>:<Unix ms of Time>"
//	P:{T}:retained        hash    topic -> encoded retained message
//	P:{T}:retained_seq    hash    topic -> Seq of the retained message
//	P:{T}:retained_exp    zset    score expiry (Unix ms), member topic
//	P:{T}:retained_bytes  string  total size of the retained hash values
//	P:{T}:retained_tree   zset    score 0, member indexKey(topic) for each
//	                              retained topic (the topic index wildcard
//	                              reads walk, retained_index.go)
//	P:{T}:fence           string  the highest fence token issued or seen
//	P:{T}:sessions        hash    client id -> "<revision>:<JSON session>"
//	P:{T}:session_ids     zset    score 0, member client id (paging by lex)
//	P:{T}:session_exp     zset    score expiry deadline (Unix ms), member client id
//	P:{T}:session_rev     string  the last session revision issued
//	P:{T}:session_due     zset    score Session.Due (Unix ms), member client id
//
// replay_age exists so the script can trim by age without decoding
// messages; retained_exp so expired retained messages are swept without a
// scan. Readers use MULTI/EXEC, which like the scripts is atomic, so they
// never see half a write. Scripts check everything before their first
// write: Redis does not roll back a script that fails half way.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRedis returns a store over rdb. The client remains the caller's: Close
// does not close it.
func NewRedis(rdb redis.UniversalClient, cfg RedisConfig) *Redis {
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "herald"
	}
	return &Redis{rdb: rdb, prefix: cfg.KeyPrefix}
}

type redisKeys struct {
	epoch, applied, trimmed, replay, replayAge, retained, retainedSeq, retainedExp, retainedBytes, fence, retainedTree string
	sessions, sessionIDs, sessionExp, sessionRev, sessionDue, sessionEdge, sessionEdgeOf                               string
}

func (r *Redis) keys(tenant string) redisKeys {
	p := r.prefix + ":{" + tenant + "}:"
	return redisKeys{
		p + "epoch", p + "applied", p + "trimmed", p + "replay", p + "replay_age", p + "retained", p + "retained_seq",
		p + "retained_exp", p + "retained_bytes", p + "fence", p + "retained_tree",
		p + "sessions", p + "session_ids", p + "session_exp", p + "session_rev", p + "session_due",
		p + "session_edge", p + "session_edge_of",
	}
}

// apply lists the keys in the order the apply script expects them.
func (k redisKeys) apply() []string {
	return []string{k.epoch, k.applied, k.trimmed, k.replay, k.replayAge, k.retained, k.retainedSeq, k.retainedExp, k.retainedBytes, k.fence, k.retainedTree}
}

// session lists the keys in the order the session scripts expect them.
func (k redisKeys) session() []string {
	return []string{k.sessions, k.sessionIDs, k.sessionExp, k.sessionRev, k.sessionDue, k.sessionEdge, k.sessionEdgeOf}
}

// Script error replies mapped to sentinels.
const (
	replyFenced   = "HERALD_FENCED"
	replyLost     = "HERALD_LOST"
	replyConflict = "HERALD_CONFLICT"
	replyLimit    = "HERALD_LIMIT"
)

// scriptErr maps a script's error reply to its sentinel.
func scriptErr(err error) error {
	msg := err.Error()
	for reply, sentinel := range map[string]error{
		replyFenced: ErrFenced, replyLost: ErrStateLost, replyConflict: ErrConflict, replyLimit: ErrSessionLimit,
	} {
		if strings.Contains(msg, reply) {
			return sentinel
		}
	}
	return err
}

// applyScript implements ApplyBatch in one atomic step.
//
// KEYS: see redisKeys.apply.
// ARGV: epoch, now (Unix ms), max messages, max age (ms), message count,
// fence, expect, skip through, max retained, max retained bytes, sweep max,
// then six values per message: seq, age (Unix ms), retain action (0 none,
// 1 set, 2 delete), topic, encoded message, expiry (Unix ms, 0 never).
//
// Sequences are compared as Lua numbers (exact below 2^53) but always
// written back from the caller's decimal strings, never formatted by Lua.
var applyScript = redis.NewScript(indexLua + `
local fence = tonumber(ARGV[6])
local stored = tonumber(redis.call('GET', KEYS[10]) or '0')
if fence < stored then
  return redis.error_reply('` + replyFenced + `')
end
local epoch = ARGV[1]
local same = redis.call('GET', KEYS[1]) == epoch
local applied = 0
if same then
  applied = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local expect = tonumber(ARGV[7])
if expect > 0 and ((not same) or applied < expect) then
  return redis.error_reply('` + replyLost + `')
end

-- Checks done: from here on the script only writes.
if fence > stored then
  redis.call('SET', KEYS[10], ARGV[6])
end
buildIndex(KEYS[6], KEYS[11])
if not same then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[11])
  redis.call('SET', KEYS[1], epoch)
end
if tonumber(ARGV[8]) > applied then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[8])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[8])
  redis.call('SET', KEYS[3], ARGV[8])
  redis.call('SET', KEYS[2], ARGV[8])
  applied = tonumber(ARGV[8])
end

local maxr, maxb = tonumber(ARGV[9]), tonumber(ARGV[10])
local bytes0 = tonumber(redis.call('GET', KEYS[9]) or '0')
local bytes = bytes0
local count = redis.call('HLEN', KEYS[6])
local dropped = 0
local last = nil
local n = tonumber(ARGV[5])
for i = 0, n - 1 do
  local b = 12 + i * 6
  local seq = ARGV[b]
  local s = tonumber(seq)
  if s > applied then
    local enc = ARGV[b + 4]
    redis.call('ZADD', KEYS[4], seq, enc)
    redis.call('ZADD', KEYS[5], seq, seq .. ':' .. ARGV[b + 1])
    local action = ARGV[b + 2]
    if action ~= '0' then
      local tp = ARGV[b + 3]
      local old = redis.call('HGET', KEYS[7], tp)
      if (not old) or tonumber(old) < s then
        local oldlen = 0
        if old then
          oldlen = redis.call('HSTRLEN', KEYS[6], tp)
        end
        local set = action == '1'
        if set and (((not old) and count >= maxr) or bytes - oldlen + #enc > maxb) then
          set = false
          dropped = dropped + 1
        end
        if set then
          redis.call('HSET', KEYS[6], tp, enc)
          redis.call('HSET', KEYS[7], tp, seq)
          if not old then
            redis.call('ZADD', KEYS[11], 0, indexKey(tp))
          end
          if ARGV[b + 5] ~= '0' then
            redis.call('ZADD', KEYS[8], ARGV[b + 5], tp)
          elseif old then
            redis.call('ZREM', KEYS[8], tp)
          end
          bytes = bytes - oldlen + #enc
          if not old then
            count = count + 1
          end
        elseif old then
          redis.call('HDEL', KEYS[6], tp)
          redis.call('HDEL', KEYS[7], tp)
          redis.call('ZREM', KEYS[8], tp)
          redis.call('ZREM', KEYS[11], indexKey(tp))
          bytes = bytes - oldlen
          count = count - 1
        end
      end
    end
    applied = s
    last = seq
  end
end
if last then
  redis.call('SET', KEYS[2], last)
end

-- Sweep expired retained messages, a bounded number per call.
local expired = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[11]))
for _, tp in ipairs(expired) do
  bytes = bytes - redis.call('HSTRLEN', KEYS[6], tp)
  redis.call('HDEL', KEYS[6], tp)
  redis.call('HDEL', KEYS[7], tp)
  redis.call('ZREM', KEYS[8], tp)
  redis.call('ZREM', KEYS[11], indexKey(tp))
end
if bytes ~= bytes0 then
  redis.call('SET', KEYS[9], string.format('%d', bytes))
end

-- Trim a prefix: first to the count limit, then every leading message older
-- than the age limit. cut is the replay_age member of the last one to go.
local cut = nil
local start = 0
local card = redis.call('ZCARD', KEYS[5])
local maxn = tonumber(ARGV[3])
if card > maxn then
  start = card - maxn
  cut = redis.call('ZRANGE', KEYS[5], start - 1, start - 1)[1]
end
local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[4])
local young = false
while not young do
  local page = redis.call('ZRANGE', KEYS[5], start, start + 99)
  if #page == 0 then
    break
  end
  for _, m in ipairs(page) do
    local sep = string.find(m, ':', 1, true)
    if tonumber(string.sub(m, sep + 1)) < cutoff then
      cut = m
    else
      young = true
      break
    end
  end
  start = start + 100
end
if cut then
  local seq = string.sub(cut, 1, string.find(cut, ':', 1, true) - 1)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', seq)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', seq)
  redis.call('SET', KEYS[3], seq)
end
return {redis.call('GET', KEYS[2]) or '0', dropped, #expired, redis.call('HLEN', KEYS[6]), string.format('%d', bytes)}
`)

// Apply implements Store.
func (r *Redis) Apply(ctx context.Context, tenant, epoch string, msgs []*message.Message, lim ReplayLimits) error {
	_, err := r.ApplyBatch(ctx, tenant, Batch{Epoch: epoch, Messages: msgs, Limits: Limits{Replay: lim}})
	return err
}

// ApplyBatch implements Store.
func (r *Redis) ApplyBatch(ctx context.Context, tenant string, b Batch) (ApplyResult, error) {
	if err := checkBatch(tenant, b); err != nil {
		return ApplyResult{}, err
	}
	lim := b.Limits.WithDefaults()
	args := make([]any, 0, 11+6*len(b.Messages))
	args = append(args, b.Epoch, time.Now().UnixMilli(), lim.Replay.MaxMessages, lim.Replay.MaxAge.Milliseconds(), len(b.Messages),
		strconv.FormatUint(b.Fence, 10), strconv.FormatUint(b.Expect, 10), strconv.FormatUint(b.SkipThrough, 10),
		lim.RetainedMessages, lim.RetainedBytes, sweepMax)
	for _, m := range b.Messages {
		enc, err := message.Marshal(m)
		if err != nil {
			return ApplyResult{}, fmt.Errorf("store: encode seq %d: %w", m.Seq, err)
		}
		args = append(args, strconv.FormatUint(m.Seq, 10), ageMillis(m), int(retainOf(m)), m.Topic, enc, expiryMillis(m))
	}
	res, err := applyScript.Run(ctx, r.rdb, r.keys(tenant).apply(), args...).Slice()
	if err != nil {
		return ApplyResult{}, fmt.Errorf("store: apply %s: %w", tenant, scriptErr(err))
	}
	if len(res) != 5 {
		return ApplyResult{}, fmt.Errorf("store: apply %s: unexpected reply %v", tenant, res)
	}
	applied, _ := res[0].(string)
	out := ApplyResult{}
	if out.Applied, err = strconv.ParseUint(applied, 10, 64); err != nil {
		return ApplyResult{}, fmt.Errorf("%w: applied %q", ErrCorrupt, applied)
	}
	d, _ := res[1].(int64)
	x, _ := res[2].(int64)
	out.RetainedDropped, out.RetainedExpired = int(d), int(x)
	rc, _ := res[3].(int64)
	rb, _ := res[4].(string)
	out.RetainedMessages = int(rc)
	out.RetainedBytes, _ = strconv.ParseInt(rb, 10, 64)
	return out, nil
}

// Fence implements Store.
func (r *Redis) Fence(ctx context.Context, tenant string) (uint64, error) {
	if err := checkTenant(tenant); err != nil {
		return 0, err
	}
	n, err := r.rdb.Incr(ctx, r.keys(tenant).fence).Uint64()
	if err != nil {
		return 0, fmt.Errorf("store: fence %s: %w", tenant, err)
	}
	return n, nil
}

// Retained implements Store. An exact topic is one HGET; a wildcard filter
// walks the retained topic index (retainedScript), one round trip per
// page of up to retainedPage matches.
func (r *Redis) Retained(ctx context.Context, tenant, filter string) ([]*message.Message, error) {
	if err := checkFilter(tenant, filter); err != nil {
		return nil, err
	}
	k := r.keys(tenant)
	var out []*message.Message
	if !topic.IsWildcard(filter) {
		b, err := r.rdb.HGet(ctx, k.retained, filter).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("store: retained %s: %w", tenant, err)
		}
		m, err := decode(tenant, b)
		if err != nil {
			return nil, err
		}
		return keepRetained(filter, append(out, m), time.Now()), nil
	}
	levels := strings.Split(filter, "/")
	args := make([]any, 0, 4+len(levels))
	args = append(args, "", retainedPage, retainedSeeks, smallNode)
	for _, l := range levels {
		args = append(args, l)
	}
	for {
		res, err := retainedScript.Run(ctx, r.rdb, []string{k.retained, k.retainedTree}, args...).Slice()
		if err != nil {
			return nil, fmt.Errorf("store: retained %s: %w", tenant, err)
		}
		if len(res)%2 != 1 {
			return nil, fmt.Errorf("store: retained %s: unexpected reply of %d values", tenant, len(res))
		}
		for i := 1; i < len(res); i += 2 {
			b, ok := res[i+1].(string)
			if !ok {
				return nil, fmt.Errorf("%w: retained index lists %v, which holds nothing", ErrCorrupt, res[i])
			}
			m, err := decode(tenant, []byte(b))
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		resume, more := res[0].(string)
		if !more {
			return keepRetained(filter, out, time.Now()), nil
		}
		// The walk resumes strictly after where it began, or it would loop.
		if from := args[0].(string); resume <= from {
			return nil, fmt.Errorf("store: retained %s: index walk stuck at %q", tenant, resume)
		}
		args[0] = resume
	}
}

// Bounds of one retainedScript call: matches returned, and index seeks
// (each a ZRANGE or ZSCORE of a few microseconds), so that no call holds
// Redis for more than a few milliseconds.
const (
	retainedPage  = 512
	retainedSeeks = 2048
)

// VerifyRetainedIndex implements RetainedIndexVerifier.
func (r *Redis) VerifyRetainedIndex(ctx context.Context, tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	k := r.keys(tenant)
	var stored, members *redis.StringSliceCmd
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		stored = p.HKeys(ctx, k.retained)
		members = p.ZRange(ctx, k.retainedTree, 0, -1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: verify %s: %w", tenant, err)
	}
	indexed := make([]string, 0, len(members.Val()))
	for _, m := range members.Val() {
		indexed = append(indexed, topicOfKey([]byte(m)))
	}
	return diffIndex(tenant, stored.Val(), indexed)
}

// Replay implements Store.
func (r *Redis) Replay(ctx context.Context, tenant string, after uint64, max int) (ReplayPage, error) {
	if err := checkTenant(tenant); err != nil {
		return ReplayPage{}, err
	}
	if max <= 0 {
		max = DefaultReplayPage
	}
	k := r.keys(tenant)
	var state *redis.SliceCmd
	var msgs *redis.StringSliceCmd
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		state = p.MGet(ctx, k.epoch, k.applied, k.trimmed)
		msgs = p.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: k.replay, Start: "(" + strconv.FormatUint(after, 10), Stop: "+inf", ByScore: true, Count: int64(max),
		})
		return nil
	})
	if err != nil {
		return ReplayPage{}, fmt.Errorf("store: replay %s: %w", tenant, err)
	}
	st, err := parseState(state.Val())
	if err != nil {
		return ReplayPage{}, err
	}
	page := ReplayPage{ReplayState: st, Messages: make([]*message.Message, 0, len(msgs.Val()))}
	for _, b := range msgs.Val() {
		m, err := decode(tenant, []byte(b))
		if err != nil {
			return ReplayPage{}, err
		}
		page.Messages = append(page.Messages, m)
	}
	return page, nil
}

// State implements Store.
func (r *Redis) State(ctx context.Context, tenant string) (ReplayState, error) {
	if err := checkTenant(tenant); err != nil {
		return ReplayState{}, err
	}
	k := r.keys(tenant)
	vals, err := r.rdb.MGet(ctx, k.epoch, k.applied, k.trimmed).Result()
	if err != nil {
		return ReplayState{}, fmt.Errorf("store: state %s: %w", tenant, err)
	}
	return parseState(vals)
}

func parseState(vals []any) (ReplayState, error) {
	var st ReplayState
	str := func(i int) string {
		if i < len(vals) {
			if s, ok := vals[i].(string); ok {
				return s
			}
		}
		return ""
	}
	st.Epoch = str(0)
	for i, dst := range []*uint64{&st.Applied, &st.TrimmedThrough} {
		if s := str(i + 1); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return ReplayState{}, fmt.Errorf("%w: sequence %q", ErrCorrupt, s)
			}
			*dst = n
		}
	}
	return st, nil
}

// deleteScanCount is the COUNT hint of DeleteTenant's SCAN and the most
// keys one of its DEL commands names.
const deleteScanCount = 500

// DeleteTenant implements Store. It raises the fence first, so that no
// writer that held the tenant can write while or after its keys go; then
// it deletes the keys this store knows and every other key carrying the
// tenant's hash tag under the prefix (the edges' connection counters and
// replay-guard markers among them), found by SCAN on the node holding the
// tenant's slot: a tenant's data is all of it, whoever wrote it.
func (r *Redis) DeleteTenant(ctx context.Context, tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	k := r.keys(tenant)
	if err := r.rdb.Incr(ctx, k.fence).Err(); err != nil {
		return fmt.Errorf("store: delete %s: fence: %w", tenant, err)
	}
	var node redis.Cmdable = r.rdb
	if c, ok := r.rdb.(*redis.ClusterClient); ok {
		m, err := c.MasterForKey(ctx, k.fence)
		if err != nil {
			return fmt.Errorf("store: delete %s: %w", tenant, err)
		}
		node = m
	}
	var known []string
	for _, key := range append(k.apply(), k.session()...) {
		if key != k.fence {
			known = append(known, key)
		}
	}
	if err := node.Del(ctx, known...).Err(); err != nil {
		return fmt.Errorf("store: delete %s: %w", tenant, err)
	}
	pattern := globEscape(r.prefix+":{"+tenant+"}:") + "*"
	var cursor uint64
	for {
		found, next, err := node.Scan(ctx, cursor, pattern, deleteScanCount).Result()
		if err != nil {
			return fmt.Errorf("store: delete %s: scan: %w", tenant, err)
		}
		found = slices.DeleteFunc(found, func(key string) bool { return key == k.fence })
		if len(found) > 0 {
			if err := node.Del(ctx, found...).Err(); err != nil {
				return fmt.Errorf("store: delete %s: %w", tenant, err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// globEscape quotes the characters SCAN's MATCH pattern gives a meaning.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Close implements Store; the Redis client stays open.
func (r *Redis) Close() error { return nil }

func decode(tenant string, b []byte) (*message.Message, error) {
	m, err := message.Unmarshal(tenant, b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return m, nil
}

var (
	_ Store                 = (*Redis)(nil)
	_ RetainedIndexVerifier = (*Redis)(nil)
)
