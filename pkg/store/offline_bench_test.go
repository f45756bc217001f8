package store_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/redis/go-redis/v9"
)

// The offline-delivery scenario: offlineSessions persistent sessions are
// offline while offlineMessages messages are published on offlineTopics
// topics; session j subscribes to one topic, so each message matches 1% of
// the sessions and each session 1% of the messages.
const (
	offlineSessions = 1000
	offlineMessages = 10000
	offlineTopics   = 100
	offlinePayload  = 128
)

func offlineTopic(i int) string { return fmt.Sprintf("dev/%d/telemetry", i%offlineTopics) }

func redisUsedMemory(b *testing.B, rdb *redis.Client) int64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory in INFO")
	return 0
}

// BenchmarkOfflineQueues measures per-session queues in Redis: the session
// service pushes every message onto the list of each offline session it
// matches (one pipeline per batch of 256 messages); a reconnect reads and
// deletes the session's list. The op is one reconnect; the metrics are the
// writes per published message, the Redis memory the queues take and the
// time to write them.
func BenchmarkOfflineQueues(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: testserver.Redis(b)})
	defer rdb.Close()
	ctx := context.Background()
	before := redisUsedMemory(b, rdb)
	queue := func(session int) string { return fmt.Sprintf("bench:{t}:q:%d", session) }
	start := time.Now()
	writes := 0
	for first := 0; first < offlineMessages; first += 256 {
		pipe := rdb.Pipeline()
		for i := first; i < min(first+256, offlineMessages); i++ {
			m := &message.Message{Topic: offlineTopic(i), Payload: make([]byte, offlinePayload), QoS: 1, Seq: uint64(i + 1), Time: time.Now()}
			enc, err := message.Marshal(m)
			if err != nil {
				b.Fatal(err)
			}
			// The sessions subscribed to this topic: j % offlineTopics == i % offlineTopics.
			for j := i % offlineTopics; j < offlineSessions; j += offlineTopics {
				pipe.RPush(ctx, queue(j), enc)
				writes++
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	ingest := time.Since(start)
	used := redisUsedMemory(b, rdb) - before
	j := 0
	for b.Loop() {
		// Each op reconnects one session: read its queue (and, in real use,
		// delete it; kept here so that every op reads a full queue).
		vals, err := rdb.LRange(ctx, queue(j%offlineSessions), 0, -1).Result()
		if err != nil || len(vals) != offlineMessages/offlineTopics {
			b.Fatalf("queue of %d: %v", len(vals), err)
		}
		for _, v := range vals {
			if _, err := message.Unmarshal("t", []byte(v)); err != nil {
				b.Fatal(err)
			}
		}
		j++
	}
	b.ReportMetric(float64(writes)/offlineMessages, "writes/msg")
	b.ReportMetric(float64(used)/(1<<20), "redis-MiB")
	b.ReportMetric(float64(ingest.Milliseconds()), "ingest-ms")
}

// BenchmarkOfflineCursors measures cursors into JetStream: a persistent
// session records the stream position it was delivered up to (one session
// write at disconnect, none per message), and a reconnect replays the
// tenant stream after it filtered by the session's subscriptions
// (backbone.Range, the edge's resume path). The op is one reconnect.
func BenchmarkOfflineCursors(b *testing.B) {
	ns := testserver.NATS(b)
	bb, err := backbone.New(testserver.NATSConn(b, ns), backbone.Config{})
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: testserver.Redis(b)})
	defer rdb.Close()
	st := store.NewRedis(rdb, store.RedisConfig{KeyPrefix: "bench"})
	ctx := context.Background()

	// Disconnect: every session saves its cursor once.
	before := redisUsedMemory(b, rdb)
	for j := range offlineSessions {
		s := &store.Session{ClientID: fmt.Sprintf("client-%d", j), ExpiryInterval: 3600, DisconnectedAt: time.Now(),
			Subscriptions: map[string]store.Subscription{offlineTopic(j): {QoS: 1}}, Delivered: message.Position{Seq: 0}}
		if err := st.SaveSession(ctx, "t", s, store.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	used := redisUsedMemory(b, rdb) - before

	// Offline traffic: only the stream is written (as it is in any case).
	start := time.Now()
	var pending []*backbone.Pending
	for i := range offlineMessages {
		p, err := bb.PublishAsync(ctx, &message.Message{Tenant: "t", Topic: offlineTopic(i), Payload: make([]byte, offlinePayload), QoS: 1}, backbone.PublishOptions{})
		if err != nil {
			b.Fatal(err)
		}
		pending = append(pending, p)
	}
	for _, p := range pending {
		if _, err := p.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	ingest := time.Since(start)
	j := 0
	for b.Loop() {
		if j == 900 {
			// backbone.Range leaves its ordered consumer to expire after 30s
			// and a stream allows 1000 consumers by default.
			b.Fatal("over 900 replays in 30s exhaust the stream's consumers: use -benchtime 500x or less")
		}
		s, err := st.LoadSession(ctx, "t", fmt.Sprintf("client-%d", j%offlineSessions))
		if err != nil {
			b.Fatal(err)
		}
		var filters []string
		for f := range s.Subscriptions {
			filters = append(filters, f)
		}
		n := 0
		if err := bb.Range(ctx, "t", filters, s.Delivered.Seq, 0, func(*message.Message) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != offlineMessages/offlineTopics {
			b.Fatalf("replayed %d", n)
		}
		j++
	}
	b.ReportMetric(0, "writes/msg")
	b.ReportMetric(float64(used)/(1<<20), "redis-MiB")
	b.ReportMetric(float64(ingest.Milliseconds()), "ingest-ms")
}
