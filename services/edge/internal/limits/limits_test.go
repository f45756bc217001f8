package limits_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/services/edge/internal/limits"
)

// staticSource is a Source whose limits the test changes.
type staticSource struct {
	mu sync.Mutex
	m  map[string]tenant.Limits
}

func (s *staticSource) Limits(id string) (tenant.Limits, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.m[id]
	return l, ok
}

func (s *staticSource) set(id string, l tenant.Limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]tenant.Limits{}
	}
	s.m[id] = l
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newLimits(t *testing.T, cfg limits.Config) *limits.Limits {
	t.Helper()
	if cfg.EdgeID == "" {
		cfg.EdgeID = "e1"
	}
	l, err := limits.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// publishes counts how many of n publishes of size bytes are allowed, and checks every refusal is ErrRateLimited.
func publishes(t *testing.T, publish func(int) error, n, size int) int {
	t.Helper()
	ok := 0
	for range n {
		switch err := publish(size); {
		case err == nil:
			ok++
		case !errors.Is(err, limits.ErrRateLimited):
			t.Fatalf("publish: %v", err)
		}
	}
	return ok
}

// TestConnectionRates ensures per-connection message and byte rates hold a burst of one second, refill at the rate, and that a refused publish takes nothing.
func TestConnectionRates(t *testing.T) {
	src := &staticSource{}
	src.set("acme", tenant.Limits{MaxConnectionMessagesPerSecond: 10, MaxConnectionBytesPerSecond: 1000})
	clk := &clock{t: time.Now()}
	l := newLimits(t, limits.Config{Source: src, Now: clk.now})
	c, err := l.Connect(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := publishes(t, c.Publish, 20, 10); got != 10 {
		t.Fatalf("burst: %d allowed, want 10 (messages)", got)
	}
	clk.add(500 * time.Millisecond)
	if got := publishes(t, c.Publish, 20, 10); got != 5 {
		t.Fatalf("after 0.5 s: %d allowed, want 5", got)
	}
	clk.add(time.Second)
	if got := publishes(t, c.Publish, 20, 300); got != 3 {
		t.Fatalf("bytes: %d allowed, want 3", got)
	}
	// A message above a second's worth of bytes passes once the bucket is full.
	clk.add(2 * time.Second)
	if err := c.Publish(5000); err != nil {
		t.Fatalf("large message on a full bucket: %v", err)
	}
	if err := c.Publish(1); !errors.Is(err, limits.ErrRateLimited) {
		t.Fatalf("after the debt: %v", err)
	}
}

// TestTenantRateLoweredLive ensures the tenant-wide rate is shared by all its connections and that a lowered limit holds from the next publish, dropping the tokens above it.
func TestTenantRateLoweredLive(t *testing.T) {
	src := &staticSource{}
	src.set("acme", tenant.Limits{MaxMessagesPerSecond: 100})
	clk := &clock{t: time.Now()}
	l := newLimits(t, limits.Config{Source: src, Now: clk.now})
	a, _ := l.Connect(context.Background(), "acme")
	b, _ := l.Connect(context.Background(), "acme")
	defer a.Close()
	defer b.Close()
	if got := publishes(t, a.Publish, 60, 1) + publishes(t, b.Publish, 60, 1) + publishes(t, func(n int) error { return l.Publish("acme", n) }, 10, 1); got != 100 {
		t.Fatalf("tenant burst: %d allowed, want 100", got)
	}
	clk.add(time.Second)
	src.set("acme", tenant.Limits{MaxMessagesPerSecond: 5})
	if got := publishes(t, a.Publish, 50, 1); got != 5 {
		t.Fatalf("after lowering to 5/s: %d allowed", got)
	}
	src.set("acme", tenant.Limits{})
	if got := publishes(t, a.Publish, 50, 1); got != 50 {
		t.Fatalf("unlimited: %d allowed", got)
	}
}

// TestPayloadAndSubscriptions ensures the payload size and subscriptions per connection limits refuse with their sentinels, and that unknown tenants are unlimited.
func TestPayloadAndSubscriptions(t *testing.T) {
	src := &staticSource{}
	src.set("acme", tenant.Limits{MaxPayloadBytes: 100, MaxSubscriptionsPerConnection: 2})
	l := newLimits(t, limits.Config{Source: src})
	c, _ := l.Connect(context.Background(), "acme")
	defer c.Close()
	if err := c.Publish(100); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(101); !errors.Is(err, limits.ErrPayloadTooLarge) {
		t.Fatalf("payload: %v", err)
	}
	if err := l.Publish("acme", 101); !errors.Is(err, limits.ErrPayloadTooLarge) {
		t.Fatalf("payload outside a connection: %v", err)
	}
	if err := c.Subscriptions(2); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscriptions(3); !errors.Is(err, limits.ErrSubscriptionLimit) {
		t.Fatalf("subscriptions: %v", err)
	}
	if err := l.Publish("unknown", 1<<20); err != nil {
		t.Fatalf("unknown tenant: %v", err)
	}
}

// TestLocalConnectionLimit ensures that without Redis the connection limit holds on the edge, a closed connection frees its slot once, and a raised limit admits at once.
func TestLocalConnectionLimit(t *testing.T) {
	src := &staticSource{}
	src.set("acme", tenant.Limits{MaxConnections: 2})
	l := newLimits(t, limits.Config{Source: src})
	ctx := context.Background()
	a, _ := l.Connect(ctx, "acme")
	if _, err := l.Connect(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Connect(ctx, "acme"); !errors.Is(err, limits.ErrConnectionLimit) {
		t.Fatalf("third: %v", err)
	}
	a.Close()
	a.Close()
	if n := l.Connections("acme"); n != 1 {
		t.Fatalf("%d connections after a double close", n)
	}
	if _, err := l.Connect(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	src.set("acme", tenant.Limits{MaxConnections: 3})
	if _, err := l.Connect(ctx, "acme"); err != nil {
		t.Fatalf("raised limit: %v", err)
	}
}
