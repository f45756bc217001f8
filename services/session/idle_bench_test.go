package session_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/session"
	"github.com/redis/go-redis/v9"
)

// BenchmarkIdleSessionSweeps measures the session service's half of what
// 10,000 idle persistent sessions cost the store (the edge's half is
// services/edge/internal/mqtt's BenchmarkIdleSessionWrites): one tenant
// holds 10,000 connected sessions whose edge lease lives, nothing is
// published, and the service owning the tenant runs its sweeps with the
// default intervals (lapsed edges and due sessions every second, expiry
// every 30 s). One iteration watches 3.3 s. Reported: redis-changes/s,
// the keys Redis changed (rdb_changes_since_last_save), and
// redis-commands/s, every command Redis ran (reads and the edge lease
// renewals of this benchmark included: one every 3.3 s).
func BenchmarkIdleSessionSweeps(b *testing.B) {
	ctx := context.Background()
	ns := testserver.NATS(b)
	bb, err := backbone.New(testserver.NATSConn(b, ns), backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	addr := testserver.Redis(b)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	b.Cleanup(func() { rdb.Close() })
	st := store.NewRedis(rdb, store.RedisConfig{KeyPrefix: "idle"})
	if _, err := bb.Publish(ctx, &message.Message{Tenant: "t1", Topic: "start", Payload: []byte("x"), QoS: 1}, backbone.PublishOptions{}); err != nil {
		b.Fatal(err)
	}
	const edge = "edge-1~0"
	renew := func() {
		if err := st.RenewEdgeLease(ctx, edge, time.Now().Add(10*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	renew()
	for i := range 10000 {
		id := fmt.Sprintf("idle-%d", i)
		s := &store.Session{ClientID: id, ExpiryInterval: 3600, ConnectedTo: edge + "/" + id, Edge: edge,
			Subscriptions: map[string]store.Subscription{"idle/" + id: {QoS: 1}}}
		if err := st.SaveSession(ctx, "t1", s, store.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	svc, err := session.New(session.Config{}, bb, bb.Bucket(session.Config{}.LeaseBucket()), st, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Run: %v", err)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if s, err := st.State(ctx, "t1"); err == nil && s.Applied >= 1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the service never applied the tenant's stream")
		}
	}
	changes, commands := testserver.RedisStat(b, addr, "persistence", "rdb_changes_since_last_save"), testserver.RedisStat(b, addr, "stats", "total_commands_processed")
	b.ResetTimer()
	for b.Loop() {
		time.Sleep(session.DefaultDueInterval * 10 / 3)
		renew()
	}
	b.StopTimer()
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(testserver.RedisStat(b, addr, "persistence", "rdb_changes_since_last_save")-changes)/secs, "redis-changes/s")
	b.ReportMetric(float64(testserver.RedisStat(b, addr, "stats", "total_commands_processed")-commands)/secs, "redis-commands/s")
	// Still connected: none was taken for an orphan.
	if page, err := st.EdgeSessions(ctx, "t1", edge, "idle-9998", 10); err != nil || len(page) != 1 {
		b.Fatalf("sessions of the live edge after idle-9998: %d (%v), want idle-9999", len(page), err)
	}
}
