package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/redis/go-redis/v9"
)

// RedisConfig configures a Redis store.
type RedisConfig struct {
	// KeyPrefix starts every key; default "herald". Distinct prefixes let
	// several clusters (or tests) share one Redis.
	KeyPrefix string `yaml:"key_prefix"`
}

// Redis is a Store in Redis 7.0 or newer, standalone or Cluster.
//
// Key layout, for prefix P and tenant T (every key of a tenant carries the
// hash tag {T}, so a tenant lives in one Cluster slot and Apply can be one
// Lua script):
//
//	P:{T}:epoch         string  epoch of the stream the state derives from
//	P:{T}:applied       string  Seq of the last applied message
//	P:{T}:trimmed       string  highest Seq trimmed from the replay buffer
//	P:{T}:replay        zset    score Seq, member the encoded message
//	P:{T}:replay_age    zset    score Seq, member "<Seq>:<Unix ms of Time>"
//	P:{T}:retained      hash    topic -> encoded retained message
//	P:{T}:retained_seq  hash    topic -> Seq of the retained message
//
// replay_age exists so the script can trim by age without decoding messages.
// Readers use MULTI/EXEC, which like the script is atomic, so they never see
// half an Apply.
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
	epoch, applied, trimmed, replay, replayAge, retained, retainedSeq string
}

func (r *Redis) keys(tenant string) redisKeys {
	p := r.prefix + ":{" + tenant + "}:"
	return redisKeys{p + "epoch", p + "applied", p + "trimmed", p + "replay", p + "replay_age", p + "retained", p + "retained_seq"}
}

// all lists the keys in the order the apply script expects them.
func (k redisKeys) all() []string {
	return []string{k.epoch, k.applied, k.trimmed, k.replay, k.replayAge, k.retained, k.retainedSeq}
}

// applyScript implements Apply in one atomic step.
//
// KEYS: epoch applied trimmed replay replay_age retained retained_seq.
// ARGV: epoch, now (Unix ms), max messages, max age (ms), message count, then
// five values per message: seq, age (Unix ms), retain action (0 none, 1 set,
// 2 delete), topic, encoded message.
//
// Sequences are compared as Lua numbers (exact below 2^53) but always
// written back from the caller's decimal strings, never formatted by Lua.
var applyScript = redis.NewScript(`
local epoch = ARGV[1]
if redis.call('GET', KEYS[1]) ~= epoch then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
  redis.call('SET', KEYS[1], epoch)
end
local applied = tonumber(redis.call('GET', KEYS[2]) or '0')
local last = nil
local n = tonumber(ARGV[5])
for i = 0, n - 1 do
  local b = 6 + i * 5
  local seq = ARGV[b]
  local s = tonumber(seq)
  if s > applied then
    redis.call('ZADD', KEYS[4], seq, ARGV[b + 4])
    redis.call('ZADD', KEYS[5], seq, seq .. ':' .. ARGV[b + 1])
    local action = ARGV[b + 2]
    if action ~= '0' then
      local tp = ARGV[b + 3]
      local old = redis.call('HGET', KEYS[7], tp)
      if (not old) or tonumber(old) < s then
        if action == '1' then
          redis.call('HSET', KEYS[6], tp, ARGV[b + 4])
          redis.call('HSET', KEYS[7], tp, seq)
        else
          redis.call('HDEL', KEYS[6], tp)
          redis.call('HDEL', KEYS[7], tp)
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
return 1
`)

// Apply implements Store.
func (r *Redis) Apply(ctx context.Context, tenant, epoch string, msgs []*message.Message, lim ReplayLimits) error {
	if err := checkBatch(tenant, epoch, msgs, lim); err != nil {
		return err
	}
	lim = lim.WithDefaults()
	args := make([]any, 0, 5+5*len(msgs))
	args = append(args, epoch, time.Now().UnixMilli(), lim.MaxMessages, lim.MaxAge.Milliseconds(), len(msgs))
	for _, m := range msgs {
		b, err := message.Marshal(m)
		if err != nil {
			return fmt.Errorf("store: encode seq %d: %w", m.Seq, err)
		}
		args = append(args, strconv.FormatUint(m.Seq, 10), ageMillis(m), int(retainOf(m)), m.Topic, b)
	}
	if err := applyScript.Run(ctx, r.rdb, r.keys(tenant).all(), args...).Err(); err != nil {
		return fmt.Errorf("store: apply %s: %w", tenant, err)
	}
	return nil
}

// Retained implements Store. An exact topic is one HGET; a wildcard filter
// scans the tenant's whole retained hash and matches each topic (a topic
// index, per first level, comes later when tenants hold many retained
// messages).
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
	// HSCAN may return an entry twice (during a rehash): keep the first.
	seen := map[string]bool{}
	var cursor uint64
	for {
		kv, next, err := r.rdb.HScan(ctx, k.retained, cursor, "", 512).Result()
		if err != nil {
			return nil, fmt.Errorf("store: retained %s: %w", tenant, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if seen[kv[i]] || !topic.Match(filter, kv[i]) {
				continue
			}
			seen[kv[i]] = true
			m, err := decode(tenant, []byte(kv[i+1]))
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	return keepRetained(filter, out, time.Now()), nil
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

// DeleteTenant implements Store.
func (r *Redis) DeleteTenant(ctx context.Context, tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if err := r.rdb.Del(ctx, r.keys(tenant).all()...).Err(); err != nil {
		return fmt.Errorf("store: delete %s: %w", tenant, err)
	}
	return nil
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

var _ Store = (*Redis)(nil)
