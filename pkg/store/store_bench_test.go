package store_test

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/redis/go-redis/v9"
)

// benchStores runs fn against the embedded store and a standalone Redis
// started for the benchmark.
func benchStores(b *testing.B, fn func(b *testing.B, s store.Store)) {
	b.Run("embedded", func(b *testing.B) {
		s, err := store.OpenEmbedded(filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
	b.Run("redis", func(b *testing.B) {
		rdb := redis.NewClient(&redis.Options{Addr: testserver.Redis(b)})
		defer rdb.Close()
		fn(b, store.NewRedis(rdb, store.RedisConfig{KeyPrefix: "bench"}))
	})
}

// benchStoresCluster is benchStores plus a Redis Cluster started for the
// benchmark.
func benchStoresCluster(b *testing.B, fn func(b *testing.B, s store.Store)) {
	benchStores(b, fn)
	b.Run("redis-cluster", func(b *testing.B) {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testserver.RedisCluster(b)})
		defer rdb.Close()
		fn(b, store.NewRedis(rdb, store.RedisConfig{KeyPrefix: "bench"}))
	})
}

func benchMsg(seq uint64, topic string, retain bool) *message.Message {
	return &message.Message{Topic: topic, Payload: make([]byte, 128), QoS: 1, Retain: retain, Seq: seq, Time: time.Now()}
}

// BenchmarkRetainedSet measures applying one retained message per batch (the
// session service's worst case: one message per fetch) over 1000 topics.
func BenchmarkRetainedSet(b *testing.B) {
	benchStores(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		var seq uint64
		for b.Loop() {
			seq++
			m := benchMsg(seq, fmt.Sprintf("dev/%d/state", seq%1000), true)
			if err := s.Apply(ctx, "bench", "e", []*message.Message{m}, store.ReplayLimits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRetainedGet measures reading one retained message by exact topic
// among 1000.
func BenchmarkRetainedGet(b *testing.B) {
	benchStores(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		fillRetained(b, s, 1000)
		i := 0
		for b.Loop() {
			i++
			ms, err := s.Retained(ctx, "bench", fmt.Sprintf("dev/%d/state", i%1000))
			if err != nil || len(ms) != 1 {
				b.Fatal(len(ms), err)
			}
		}
	})
}

// BenchmarkRetainedWildcard measures a wildcard subscribe's retained read
// matching 10 of 1000 topics.
func BenchmarkRetainedWildcard(b *testing.B) {
	benchStores(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		fillRetained(b, s, 1000)
		for b.Loop() {
			ms, err := s.Retained(ctx, "bench", "dev/+/state/1")
			if err != nil || len(ms) != 10 {
				b.Fatal(len(ms), err)
			}
		}
	})
}

func fillRetained(b *testing.B, s store.Store, n int) {
	b.Helper()
	var msgs []*message.Message
	for i := range n {
		msgs = append(msgs, benchMsg(uint64(i+1), fmt.Sprintf("dev/%d/state", i), true))
		if i%100 == 0 {
			msgs = append(msgs, benchMsg(uint64(n+i+1), fmt.Sprintf("dev/%d/state/1", i), true))
		}
	}
	slices.SortFunc(msgs, func(a, b *message.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	if err := s.Apply(context.Background(), "bench", "e", msgs, store.ReplayLimits{}); err != nil {
		b.Fatal(err)
	}
}

// retained100k is the retained set of BenchmarkRetainedWildcard100k:
// 100,000 topics, dev/<0..9998>/state/<0..9> and site/<0..9>/alarm.
func retained100k() []string {
	var out []string
	for d := range 9999 {
		for j := range 10 {
			out = append(out, fmt.Sprintf("dev/%d/state/%d", d, j))
		}
	}
	for k := range 10 {
		out = append(out, fmt.Sprintf("site/%d/alarm", k))
	}
	return out
}

// BenchmarkRetainedWildcard100k measures a wildcard subscribe's retained
// read of a filter matching 10 topics in a tenant holding 100,000
// retained topics (issue 21's target: 5 ms at most): a literal prefix and
// a trailing '+', a literal prefix and '#', and a '+' level with ten
// children. Redis runs standalone and as a Cluster.
func BenchmarkRetainedWildcard100k(b *testing.B) {
	topics := retained100k()
	benchStoresCluster(b, func(b *testing.B, s store.Store) {
		fillTopics(b, s, topics)
		for _, filter := range []string{"dev/4242/state/+", "dev/4242/#", "site/+/alarm"} {
			b.Run("filter="+filter, func(b *testing.B) {
				for b.Loop() {
					ms, err := s.Retained(context.Background(), "bench", filter)
					if err != nil || len(ms) != 10 {
						b.Fatal(len(ms), err)
					}
				}
			})
		}
	})
}

// fillTopics sets one retained message on each topic of the tenant
// "bench", a thousand per batch.
func fillTopics(b *testing.B, s store.Store, topics []string) {
	b.Helper()
	lim := store.Limits{RetainedMessages: len(topics) + 1}
	for start := 0; start < len(topics); start += 1000 {
		var msgs []*message.Message
		for i, t := range topics[start:min(start+1000, len(topics))] {
			msgs = append(msgs, benchMsg(uint64(start+i+1), t, true))
		}
		if _, err := s.ApplyBatch(context.Background(), "bench", store.Batch{Epoch: "e", Messages: msgs, Limits: lim}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplayAppend measures appending to a full replay buffer (10000
// messages, so every batch also trims) in batches of 1 and 100; the metric
// msgs/s is what one tenant's writer sustains.
func BenchmarkReplayAppend(b *testing.B) {
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			benchStores(b, func(b *testing.B, s store.Store) {
				ctx := context.Background()
				var seq uint64
				batch := make([]*message.Message, size)
				for b.Loop() {
					for i := range batch {
						seq++
						batch[i] = benchMsg(seq, "r", false)
					}
					if err := s.Apply(ctx, "bench", "e", batch, store.ReplayLimits{}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "msgs/s")
			})
		})
	}
}

// BenchmarkReplayRange measures reading a page of 100 messages from a
// 10000-message buffer (a resume).
func BenchmarkReplayRange(b *testing.B) {
	benchStores(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		for start := uint64(1); start <= 10000; start += 1000 {
			var msgs []*message.Message
			for seq := start; seq < start+1000; seq++ {
				msgs = append(msgs, benchMsg(seq, "r", false))
			}
			if err := s.Apply(ctx, "bench", "e", msgs, store.ReplayLimits{}); err != nil {
				b.Fatal(err)
			}
		}
		i := uint64(0)
		for b.Loop() {
			i++
			p, err := s.Replay(ctx, "bench", (i*7919)%9900, 100)
			if err != nil || len(p.Messages) != 100 {
				b.Fatal(len(p.Messages), err)
			}
		}
	})
}

func benchSession(id string) *store.Session {
	s := &store.Session{ClientID: id, ExpiryInterval: 3600, ConnectedTo: "edge-a/1",
		Subscriptions: map[string]store.Subscription{}, Will: &store.Will{Topic: "status/" + id, Payload: []byte("offline"), QoS: 1, Retain: true}}
	for i := range 10 {
		s.Subscriptions[fmt.Sprintf("dev/%d/+/telemetry", i)] = store.Subscription{QoS: 1}
	}
	return s
}

// BenchmarkSessionSave measures saving (replacing, revision-checked) a
// session with 10 subscriptions and a will, among 1000 sessions.
func BenchmarkSessionSave(b *testing.B) {
	benchStores(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		sessions := fillSessions(b, s, 1000)
		i := 0
		for b.Loop() {
			sess := sessions[i%len(sessions)]
			i++
			sess.Delivered.Seq++
			if err := s.SaveSession(ctx, "bench", sess, store.Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSessionLoad measures loading one of 1000 sessions.
func BenchmarkSessionLoad(b *testing.B) {
	benchStores(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		fillSessions(b, s, 1000)
		i := 0
		for b.Loop() {
			i++
			if _, err := s.LoadSession(ctx, "bench", fmt.Sprintf("client-%d", i%1000)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func fillSessions(b *testing.B, s store.Store, n int) []*store.Session {
	b.Helper()
	out := make([]*store.Session, n)
	for i := range n {
		out[i] = benchSession(fmt.Sprintf("client-%d", i))
		if err := s.SaveSession(context.Background(), "bench", out[i], store.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	return out
}
