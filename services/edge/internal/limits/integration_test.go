package limits_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge/internal/limits"
	"github.com/redis/go-redis/v9"
)

var prefixes atomic.Int64

func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testserver.Redis(t)})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// edge returns Limits named id over rdb, with Run going until the test
// ends or stop is called; stop waits for Run to return.
func edge(t *testing.T, rdb redis.UniversalClient, prefix, id string, src limits.Source, ttl time.Duration, run bool) (l *limits.Limits, stop func()) {
	t.Helper()
	l = newLimits(t, limits.Config{EdgeID: id, Source: src, Redis: rdb, KeyPrefix: prefix, LeaseTTL: ttl})
	if !run {
		return l, func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return l, stop
}

// TestClusterConnectionLimit ensures a tenant at its connection limit on edge A cannot open one more on edge B sharing the Redis, that a close on either frees a slot for both, and that concurrent connects across edges never exceed the limit.
func TestClusterConnectionLimit(t *testing.T) {
	rdb := redisClient(t)
	prefix := fmt.Sprintf("t%d", prefixes.Add(1))
	src := &staticSource{}
	src.set("acme", tenant.Limits{MaxConnections: 3})
	a, _ := edge(t, rdb, prefix, "a", src, 10*time.Second, true)
	b, _ := edge(t, rdb, prefix, "b", src, 10*time.Second, true)
	ctx := context.Background()

	a1, err := a.Connect(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := a.Connect(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Connect(ctx, "acme"); !errors.Is(err, limits.ErrConnectionLimit) {
		t.Fatalf("B while A holds the limit: %v", err)
	}
	if n, _ := b.ClusterConnections(ctx, "acme"); n != 3 {
		t.Fatalf("cluster count %d, want 3", n)
	}
	a1.Close()
	b1, err := b.Connect(ctx, "acme")
	if err != nil {
		t.Fatalf("B after A closed one: %v", err)
	}
	if _, err := a.Connect(ctx, "acme"); !errors.Is(err, limits.ErrConnectionLimit) {
		t.Fatalf("A while B holds the last slot: %v", err)
	}
	b1.Close()

	// Concurrent connects of another tenant across both edges.
	src.set("burst", tenant.Limits{MaxConnections: 10})
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			l := a
			if i%2 == 1 {
				l = b
			}
			switch _, err := l.Connect(ctx, "burst"); {
			case err == nil:
				admitted.Add(1)
			case !errors.Is(err, limits.ErrConnectionLimit):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := admitted.Load(); n != 10 {
		t.Fatalf("%d of 40 concurrent connects admitted, limit 10", n)
	}
}

// TestDeadEdgeReleased ensures a crashed edge's connections stop counting once its lease expires, while a live edge's heartbeat keeps its own counted past the TTL; and that a clean shutdown releases at once.
func TestDeadEdgeReleased(t *testing.T) {
	rdb := redisClient(t)
	prefix := fmt.Sprintf("t%d", prefixes.Add(1))
	src := &staticSource{}
	src.set("acme", tenant.Limits{MaxConnections: 3})
	const ttl = time.Second
	ctx := context.Background()

	live, _ := edge(t, rdb, prefix, "live", src, ttl, true)
	if _, err := live.Connect(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	dead, _ := edge(t, rdb, prefix, "dead", src, ttl, false) // never heartbeats: a crash after connecting
	for range 2 {
		if _, err := dead.Connect(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
	}
	crashed := time.Now()
	probe, _ := edge(t, rdb, prefix, "probe", src, ttl, true)
	if _, err := probe.Connect(ctx, "acme"); !errors.Is(err, limits.ErrConnectionLimit) {
		t.Fatalf("before the lease expired: %v", err)
	}
	var released time.Duration
	for {
		_, err := probe.Connect(ctx, "acme")
		if err == nil {
			released = time.Since(crashed)
			break
		}
		if !errors.Is(err, limits.ErrConnectionLimit) {
			t.Fatal(err)
		}
		if time.Since(crashed) > 3*ttl {
			t.Fatalf("dead edge's slots not released after %v", 3*ttl)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("dead edge's connections released %v after its last write (lease TTL %v)", released.Round(time.Millisecond), ttl)
	if released < ttl-50*time.Millisecond {
		t.Fatalf("released after %v, before the lease TTL", released)
	}
	// The live edge's slot outlives the TTL through its heartbeat.
	time.Sleep(ttl + ttl/2)
	if n, _ := probe.ClusterConnections(ctx, "acme"); n != 2 {
		t.Fatalf("cluster count %d after 2.5 TTLs, want 2 (live edge and probe heartbeat)", n)
	}

	// A clean shutdown releases at once.
	leaving, stop := edge(t, rdb, prefix, "leaving", src, time.Minute, true)
	if _, err := leaving.Connect(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := probe.Connect(ctx, "acme"); err != nil {
		t.Fatalf("after a clean shutdown: %v", err)
	}
}

// TestHeartbeatHeals ensures that counts lost in Redis (a restart without persistence) are rewritten by the next heartbeat, so the limit holds again.
func TestHeartbeatHeals(t *testing.T) {
	rdb := redisClient(t)
	prefix := fmt.Sprintf("t%d", prefixes.Add(1))
	src := &staticSource{}
	src.set("acme", tenant.Limits{MaxConnections: 2})
	ctx := context.Background()
	const ttl = 600 * time.Millisecond
	a, _ := edge(t, rdb, prefix, "a", src, ttl, true)
	b, _ := edge(t, rdb, prefix, "b", src, ttl, true)
	for range 2 {
		if _, err := a.Connect(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl/3 + 100*time.Millisecond)
	if _, err := b.Connect(ctx, "acme"); !errors.Is(err, limits.ErrConnectionLimit) {
		t.Fatalf("after Redis lost the counts and a heartbeat: %v", err)
	}
}

// TestRateLoweredInEtcd ensures a rate limit lowered through the tenant store holds at once: as soon as the edge's Directory has it, the next second is throttled to the new rate.
func TestRateLoweredInEtcd(t *testing.T) {
	ctx := t.Context()
	cli := testserver.EtcdClient(t, testserver.Etcd(t))
	store, err := tenant.NewEtcd(cli, tenant.EtcdConfig{Prefix: "/limits-test/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, tenant.Tenant{ID: "acme", Limits: tenant.Limits{MaxMessagesPerSecond: 1000}}); err != nil {
		t.Fatal(err)
	}
	dir := tenant.NewDirectory(store, tenant.DirectoryConfig{})
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { dir.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-dir.Ready()

	l := newLimits(t, limits.Config{Source: dir})
	c, err := l.Connect(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := publishes(t, c.Publish, 200, 1); got != 200 {
		t.Fatalf("at 1000/s: %d of 200 allowed", got)
	}
	cur, err := store.Get(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	cur.Limits.MaxMessagesPerSecond = 10
	start := time.Now()
	if _, err := store.Put(ctx, cur); err != nil {
		t.Fatal(err)
	}
	for {
		if lim, _ := dir.Limits("acme"); lim.MaxMessagesPerSecond == 10 {
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("lowered limit not in the Directory within 2 s")
		}
		time.Sleep(time.Millisecond)
	}
	visible := time.Since(start)
	// Publish as fast as possible for one second.
	allowed, refused := 0, 0
	for second := time.Now(); time.Since(second) < time.Second; {
		if err := c.Publish(1); err == nil {
			allowed++
		} else if errors.Is(err, limits.ErrRateLimited) {
			refused++
		} else {
			t.Fatal(err)
		}
	}
	t.Logf("lowered 1000 -> 10 msg/s: visible after %v; the next second allowed %d, refused %d", visible.Round(time.Microsecond), allowed, refused)
	if allowed > 21 || refused == 0 {
		t.Fatalf("the next second allowed %d (limit 10/s, burst 10)", allowed)
	}
}
