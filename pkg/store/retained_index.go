package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The retained topic index.
//
// A wildcard subscribe reads the retained messages whose topic matches its
// filter. Matching every retained topic of the tenant costs what the
// tenant holds (BenchmarkRetainedWildcard100k: 155-191 ms on Redis and
// 7-12 ms embedded for 10 matches among 100,000 topics, before the index).
// Both stores therefore keep, beside the retained messages, their topics
// in one lexically ordered key space (a Redis sorted set of equal scores,
// a bbolt bucket), each topic written with its level separator '/'
// replaced by NUL: indexKey("a/b") is "a\x00b". NUL sorts before every
// other byte and never occurs in a topic (topic.ValidateName), so the
// topics under a prefix of whole levels are one contiguous range: the key
// space is a topic tree (EMQX's retainer likewise keeps retained topics as
// lists of levels in ordered tables), walked level by level:
//
//   - a literal level descends: "a/b/+" reads only under "a\x00b\x00";
//   - '+' enumerates the children of the current node: seek the first key
//     of the node's range, take the level it starts with, walk it, then
//     seek past that child (its prefix with the separator NUL replaced by
//     0x01, the next byte up), so the cost is one seek per child, never per
//     topic below it;
//   - '#' reads the node's whole range (and the node itself: "a/#"
//     matches "a").
//
// So a read costs seeks proportional to the nodes it visits: the matches
// times the filter's depth for literal prefixes, plus one seek per child of
// every node a '+' enumerates. A filter whose '+' stands over a level with
// many children ("+/x" in a tenant of 10,000 first levels) still visits
// each of them, but not what lies below them. The walk yields keys in
// index order; callers sort by topic.
//
// Redis runs the walk in a Lua script next to the data (retainedScript),
// one round trip per page of matches; it is bounded per call (a number of
// seeks and of matches) and resumes where it stopped, so a filter
// matching the whole tenant never holds Redis for long. bbolt runs it in
// Go over a read transaction's cursor (walkIndex). No library walks a
// topic tree over either: MQTT brokers that index retained messages keep
// their own trees in memory (EMQX's in Mnesia tables, Mosquitto's in its
// subscription tree), and this one must live in the store.

// smallNode is the most keys of a node that a '+' reads whole and matches
// in place rather than enumerating its children: reading a key costs a
// fraction of a seek (a cursor step, or a member of one ZRANGE), so a
// small node is read faster whole (BenchmarkRetainedWildcard: "dev/+/x"
// over 1,000 children took 0.47 ms embedded and 5.3 ms on Redis walked
// child by child, against 0.06 and 0.94 ms for the scan before the index).
const smallNode = 1024

// indexKey is the index key of a topic: its levels separated by NUL.
func indexKey(topic string) string { return strings.ReplaceAll(topic, "/", "\x00") }

// topicOfKey is the topic of an index key.
func topicOfKey(k []byte) string { return string(bytes.ReplaceAll(k, []byte{0}, []byte("/"))) }

// indexSeeker is an ordered key space the walk reads.
type indexSeeker interface {
	// Seek returns the first key at or after k, nil if none.
	Seek(k []byte) []byte
	// Next returns the key after the one last returned, nil if none.
	Next() []byte
}

// walkIndex calls visit, in key order, with each key of sk that the
// filter matches (its levels, strings.Split(filter, "/")). visit must
// copy the key if it keeps it.
func walkIndex(sk indexSeeker, levels []string, visit func(k []byte) error) error {
	w := indexWalk{sk: sk, levels: levels, visit: visit}
	return w.walk(nil, 0)
}

type indexWalk struct {
	sk     indexSeeker
	levels []string
	visit  func(k []byte) error
}

// walk visits the matches of levels[i:] under the node p: the key prefix
// of whole levels read so far, each followed by NUL (nil at the root).
func (w *indexWalk) walk(p []byte, i int) error {
	if i == len(w.levels) {
		return w.exact(p[:len(p)-1])
	}
	switch l := w.levels[i]; l {
	case "#":
		if len(p) > 0 {
			if err := w.exact(p[:len(p)-1]); err != nil {
				return err
			}
		}
		for k := w.sk.Seek(p); k != nil && bytes.HasPrefix(k, p); k = w.sk.Next() {
			if err := w.visit(k); err != nil {
				return err
			}
		}
		return nil
	case "+":
		if done, err := w.small(p, i); done || err != nil {
			return err
		}
		lo := p
		for {
			k := w.sk.Seek(lo)
			if k == nil || !bytes.HasPrefix(k, p) {
				return nil
			}
			child := k[len(p):]
			if n := bytes.IndexByte(child, 0); n >= 0 {
				child = child[:n]
			}
			next := append(append(p[:len(p):len(p)], child...), 0)
			if err := w.walk(next, i+1); err != nil {
				return err
			}
			// Past every key of the child: its prefix, then a byte above NUL.
			lo = append(next[:len(next)-1:len(next)-1], 1)
		}
	default:
		return w.walk(append(append(p[:len(p):len(p)], l...), 0), i+1)
	}
}

// small reads the node p whole and matches each key in place if it holds
// at most smallNode keys, and reports whether it did.
func (w *indexWalk) small(p []byte, i int) (bool, error) {
	var keys [][]byte
	for k := w.sk.Seek(p); k != nil && bytes.HasPrefix(k, p); k = w.sk.Next() {
		if len(keys) == smallNode {
			return false, nil
		}
		keys = append(keys, k)
	}
	for _, k := range keys {
		if matchLevels(w.levels[i:], k[len(p):]) {
			if err := w.visit(k); err != nil {
				return true, err
			}
		}
	}
	return true, nil
}

// matchLevels reports whether the levels of an index key below a node
// match the filter levels below it (the '$' rule is the caller's).
func matchLevels(levels []string, rest []byte) bool {
	for _, l := range levels {
		if l == "#" {
			return true
		}
		if rest == nil {
			return false
		}
		level, after, more := bytes.Cut(rest, []byte{0})
		if l != "+" && l != string(level) {
			return false
		}
		rest = nil
		if more {
			rest = after
		}
	}
	return rest == nil
}

// exact visits k if the index holds it.
func (w *indexWalk) exact(k []byte) error {
	if got := w.sk.Seek(k); got != nil && bytes.Equal(got, k) {
		return w.visit(got)
	}
	return nil
}

// RetainedIndexVerifier is implemented by the stores that keep a retained
// topic index (Redis, Embedded); the conformance suite checks with it that
// every write keeps the index exact.
type RetainedIndexVerifier interface {
	// VerifyRetainedIndex returns an error wrapping ErrCorrupt unless the
	// tenant's retained index lists exactly the topics of its retained
	// messages. It reads the whole tenant: a check, not a hot path.
	VerifyRetainedIndex(ctx context.Context, tenant string) error
}

// diffIndex compares the topics of the retained messages with those of the
// index.
func diffIndex(tenant string, stored, indexed []string) error {
	slices.Sort(stored)
	slices.Sort(indexed)
	var missing, extra []string
	for i, j := 0, 0; i < len(stored) || j < len(indexed); {
		switch {
		case j == len(indexed) || (i < len(stored) && stored[i] < indexed[j]):
			missing = append(missing, stored[i])
			i++
		case i == len(stored) || indexed[j] < stored[i]:
			extra = append(extra, indexed[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return nil
	}
	return fmt.Errorf("%w: retained index of %s: %d topics missing %q, %d extra %q",
		ErrCorrupt, tenant, len(missing), missing[:min(len(missing), 5)], len(extra), extra[:min(len(extra), 5)])
}

// indexLua defines the index's helpers for the Redis scripts: indexKey, as
// in Go, and buildIndex, which builds the index of a retained hash written
// before the index existed (an index that exists is kept exact by every
// write, so it is missing only then, or when the hash is empty too).
const indexLua = `
local function indexKey(tp)
  return (string.gsub(tp, '/', '\0'))
end
local function buildIndex(hash, tree)
  if redis.call('EXISTS', tree) == 1 or redis.call('HLEN', hash) == 0 then
    return
  end
  local args = {}
  for _, tp in ipairs(redis.call('HKEYS', hash)) do
    args[#args + 1] = 0
    args[#args + 1] = indexKey(tp)
    if #args == 1000 then
      redis.call('ZADD', tree, unpack(args))
      args = {}
    end
  end
  if #args > 0 then
    redis.call('ZADD', tree, unpack(args))
  end
end
`

// retainedScript is the index walk of walkIndex in Redis, over the sorted
// set as the ordered key space (ZRANGE BYLEX), bounded per call: it stops
// once it holds ARGV[2] matches or took ARGV[3] seeks, and says where to
// resume; the walk is in key order, so everything before that point is
// done.
//
// KEYS: the retained hash, the index.
// ARGV: resume at (the first key not yet done; "" from the start), most
// matches, most seeks, smallNode, then the filter's levels.
// Reply: {resume at, or false when done; then topic, encoded message, for
// each match}.
//
// Keys are compared byte by byte (less): Lua's string comparison follows
// the server's collation locale.
var retainedScript = redis.NewScript(indexLua + `
local hash, tree = KEYS[1], KEYS[2]
buildIndex(hash, tree)
local from, maxn, budget, small = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local levels = {}
for i = 5, #ARGV do
  levels[#levels + 1] = ARGV[i]
end
local found = {}

local function less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end
local function atLeast(a)
  if less(a, from) then
    return from
  end
  return a
end
-- spend takes n seeks (one if nil) from the budget; false if they are
-- not left.
local function spend(n)
  n = n or 1
  if budget < n then
    budget = 0
    return false
  end
  budget = budget - n
  return true
end
local function upper(hi)
  if hi then
    return '(' .. hi
  end
  return '+'
end

-- exact: the key k if the index holds it. Each function returns where to
-- resume if it stopped, nil if it finished.
local function exact(k)
  if less(k, from) then
    return nil
  end
  if not spend() then
    return k
  end
  if redis.call('ZSCORE', tree, k) then
    found[#found + 1] = k
    if #found >= maxn then
      return k .. '\0'
    end
  end
  return nil
end

-- matchRest: whether the levels of a key below a node match levels[i..].
local function matchRest(rest, i)
  local pos, done = 1, false
  for j = i, #levels do
    local l = levels[j]
    if l == '#' then
      return true
    end
    if done then
      return false
    end
    local level
    local z = string.find(rest, '\0', pos, true)
    if z then
      level, pos = string.sub(rest, pos, z - 1), z + 1
    else
      level, done = string.sub(rest, pos), true
    end
    if l ~= '+' and l ~= level then
      return false
    end
  end
  return done
end

local walk
walk = function(p, i)
  -- Keys of the node p lie below hi: p without its last NUL, then 0x01.
  local hi = nil
  if #p > 0 then
    hi = string.sub(p, 1, -2) .. '\1'
    if not less(from, hi) then
      return nil
    end
  end
  if i > #levels then
    return exact(string.sub(p, 1, -2))
  end
  local l = levels[i]
  if l == '#' then
    if #p > 0 then
      local stop = exact(string.sub(p, 1, -2))
      if stop then
        return stop
      end
    end
    local lo = atLeast(p)
    if not spend() then
      return lo
    end
    local want = maxn - #found
    local keys = redis.call('ZRANGE', tree, '[' .. lo, upper(hi), 'BYLEX', 'LIMIT', 0, want)
    for _, k in ipairs(keys) do
      found[#found + 1] = k
    end
    if #keys == want then
      return keys[#keys] .. '\0'
    end
    return nil
  end
  if l == '+' then
    local lo = atLeast(p)
    if not spend() then
      return lo
    end
    local count = redis.call('ZLEXCOUNT', tree, '[' .. p, upper(hi))
    if count <= small then
      -- Reading 64 keys costs about one seek.
      if not spend(1 + math.floor(count / 64)) then
        return lo
      end
      for _, k in ipairs(redis.call('ZRANGE', tree, '[' .. lo, upper(hi), 'BYLEX')) do
        if matchRest(string.sub(k, #p + 1), i) then
          found[#found + 1] = k
          if #found >= maxn then
            return k .. '\0'
          end
        end
      end
      return nil
    end
    while true do
      if not spend() then
        return lo
      end
      local k = redis.call('ZRANGE', tree, '[' .. lo, upper(hi), 'BYLEX', 'LIMIT', 0, 1)[1]
      if not k then
        return nil
      end
      local rest = string.sub(k, #p + 1)
      local z = string.find(rest, '\0', 1, true)
      local child = p .. (z and string.sub(rest, 1, z - 1) or rest)
      local stop = walk(child .. '\0', i + 1)
      if stop then
        return stop
      end
      lo = child .. '\1'
    end
  end
  return walk(p .. l .. '\0', i + 1)
end

local reply = {walk('', 1) or false}
for _, k in ipairs(found) do
  local tp = string.gsub(k, '%z', '/')
  reply[#reply + 1] = tp
  reply[#reply + 1] = redis.call('HGET', hash, tp) or false
end
return reply
`)
