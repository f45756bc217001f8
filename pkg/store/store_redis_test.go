package store_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/store/storetest"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/redis/go-redis/v9"
)

var prefixes atomic.Int64

// openRedis returns a store over rdb with a key prefix no other test uses.
func openRedis(rdb redis.UniversalClient) func(t *testing.T) store.Store {
	return func(t *testing.T) store.Store {
		return store.NewRedis(rdb, store.RedisConfig{KeyPrefix: fmt.Sprintf("test%d", prefixes.Add(1))})
	}
}

// TestRedis ensures the Redis store meets the Store contract on a standalone server.
func TestRedis(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testserver.Redis(t)})
	t.Cleanup(func() { rdb.Close() })
	storetest.Run(t, openRedis(rdb))
	t.Run("DeleteTenantEveryKey", func(t *testing.T) { testDeleteTenantEveryKey(t, rdb) })
}

// TestRedisCluster ensures the Redis store meets the Store contract on a
// Redis Cluster, which fails any script or transaction whose keys span slots.
func TestRedisCluster(t *testing.T) {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testserver.RedisCluster(t)})
	t.Cleanup(func() { rdb.Close() })
	storetest.Run(t, openRedis(rdb))
	t.Run("DeleteTenantEveryKey", func(t *testing.T) { testDeleteTenantEveryKey(t, rdb) })
}

// testDeleteTenantEveryKey ensures DeleteTenant removes every key carrying
// the tenant's hash tag under the store's prefix — the edges' connection
// counters and replay-guard markers as well as the store's own — and
// leaves other tenants', other prefixes' and look-alike tenants' keys
// alone. TestRedis and TestRedisCluster run it.
func testDeleteTenantEveryKey(t *testing.T, rdb redis.UniversalClient) {
	ctx := t.Context()
	p := fmt.Sprintf("test%d", prefixes.Add(1))
	s := store.NewRedis(rdb, store.RedisConfig{KeyPrefix: p})
	for _, tn := range []string{"acme", "a*", "ab", "acmex"} {
		if err := s.Apply(ctx, tn, "e1", []*message.Message{{Seq: 1, Topic: "r", Payload: []byte("v"), Retain: true}}, store.ReplayLimits{}); err != nil {
			t.Fatal(err)
		}
	}
	// Keys other parts of Herald keep per tenant under the same prefix
	// (services/edge: connection counts, JWT replay guard).
	gone := []string{p + ":{acme}:conns", p + ":{acme}:conn_leases", p + ":{acme}:jti:x1", p + ":{a*}:conns"}
	kept := []string{p + ":{acmex}:conns", p + ":{ab}:conns", "other:{acme}:conns"}
	for _, k := range append(slices.Clone(gone), kept...) {
		if err := rdb.Set(ctx, k, "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// The store's own keys, the retained topic index among them, exist
	// before the deletion.
	own := []string{p + ":{acme}:retained", p + ":{acme}:retained_tree"}
	for _, k := range own {
		if n, err := rdb.Exists(ctx, k).Result(); err != nil || n != 1 {
			t.Fatalf("%s missing before the deletion (%d, %v)", k, n, err)
		}
	}
	gone = append(gone, own...)
	for _, tn := range []string{"acme", "a*"} {
		if err := s.DeleteTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range gone {
		if n, err := rdb.Exists(ctx, k).Result(); err != nil || n != 0 {
			t.Errorf("%s survived the deletion of its tenant (%d, %v)", k, n, err)
		}
	}
	for _, k := range kept {
		if n, err := rdb.Exists(ctx, k).Result(); err != nil || n != 1 {
			t.Errorf("%s was deleted with another tenant (%d, %v)", k, n, err)
		}
	}
	for _, tn := range []string{"ab", "acmex"} {
		if st, err := s.State(ctx, tn); err != nil || st.Applied != 1 {
			t.Errorf("%s after deleting others: %+v, %v", tn, st, err)
		}
	}
}

// TestRedisRetainedIndexBuilt ensures retained messages written before the
// topic index existed are found by wildcard reads: the first read (or
// write) builds the index from the retained hash.
func TestRedisRetainedIndexBuilt(t *testing.T) {
	ctx := t.Context()
	rdb := redis.NewClient(&redis.Options{Addr: testserver.Redis(t)})
	t.Cleanup(func() { rdb.Close() })
	s := store.NewRedis(rdb, store.RedisConfig{KeyPrefix: "old"})
	var msgs []*message.Message
	for i, tp := range []string{"a/x", "a/y", "b/x", "c"} {
		msgs = append(msgs, &message.Message{Seq: uint64(i + 1), Topic: tp, Payload: []byte("v"), Retain: true})
	}
	for _, tn := range []string{"read", "write"} {
		if err := s.Apply(ctx, tn, "e1", msgs, store.ReplayLimits{}); err != nil {
			t.Fatal(err)
		}
		// What a store without the index left behind.
		if err := rdb.Del(ctx, "old:{"+tn+"}:retained_tree").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(ctx, "write", "e1", []*message.Message{{Seq: 5, Topic: "a/z", Payload: []byte("v"), Retain: true}}, store.ReplayLimits{}); err != nil {
		t.Fatal(err)
	}
	for tn, want := range map[string][]string{"read": {"a/x", "a/y"}, "write": {"a/x", "a/y", "a/z"}} {
		ms, err := s.Retained(ctx, tn, "a/+")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.Topic)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: Retained(a/+) = %q, want %q", tn, got, want)
		}
		if err := s.VerifyRetainedIndex(ctx, tn); err != nil {
			t.Errorf("%s: %v", tn, err)
		}
	}
}

// TestRedisRetainedWildcardCommands ensures a wildcard read of 10 retained
// topics among 50,000 runs a handful of Redis commands (script calls
// included), not a number growing with the tenant: counted, not timed.
func TestRedisRetainedWildcardCommands(t *testing.T) {
	ctx := t.Context()
	addr := testserver.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	s := store.NewRedis(rdb, store.RedisConfig{})
	lim := store.Limits{RetainedMessages: 50000}
	seq := uint64(0)
	for d := 0; d < 5000; d += 100 {
		var msgs []*message.Message
		for i := d; i < d+100; i++ {
			for j := range 10 {
				seq++
				msgs = append(msgs, &message.Message{Seq: seq, Topic: fmt.Sprintf("dev/%d/state/%d", i, j), Payload: []byte("v"), Retain: true})
			}
		}
		if _, err := s.ApplyBatch(ctx, "t1", store.Batch{Epoch: "e1", Messages: msgs, Limits: lim}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		filter      string
		matches     int
		mostPerRead int64
	}{
		{"dev/1234/state/+", 10, 30},
		{"dev/1234/#", 10, 30},
		// '+' over 5,000 children costs a few commands per child (the
		// index's cost model), nothing per topic below them.
		{"dev/+/state/3", 5000, 4 * 5000},
	} {
		before := testserver.RedisStat(t, addr, "stats", "total_commands_processed")
		ms, err := s.Retained(ctx, "t1", tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		// Less the INFO that read the counter.
		n := testserver.RedisStat(t, addr, "stats", "total_commands_processed") - before - 1
		if len(ms) != tc.matches || n > tc.mostPerRead {
			t.Errorf("%s: %d matches in %d commands, want %d in at most %d", tc.filter, len(ms), n, tc.matches, tc.mostPerRead)
		}
	}
}
