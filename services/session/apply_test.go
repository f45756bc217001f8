package session_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/services/session"
	"github.com/nats-io/nats.go/jetstream"
)

// countingStore counts the batches that carry messages.
type countingStore struct {
	store.Store
	batches atomic.Int64
}

func (c *countingStore) ApplyBatch(ctx context.Context, tenant string, b store.Batch) (store.ApplyResult, error) {
	if len(b.Messages) > 0 {
		c.batches.Add(1)
	}
	return c.Store.ApplyBatch(ctx, tenant, b)
}

// TestServiceGathersSlowTraffic ensures a trickle of messages is applied in
// one store write per ApplyInterval, not one per message: the point of the
// interval is that an fsync-per-commit store is not written per message.
func TestServiceGathersSlowTraffic(t *testing.T) {
	e := newEnv(t)
	cs := &countingStore{Store: e.st}
	e.st = cs
	cfg := testConfig
	cfg.BatchSize = 256
	cfg.ApplyInterval = 100 * time.Millisecond
	e.start(t, cfg)
	e.publish(t, "t1", "warm", "up", false)
	e.waitApplied(t, "t1", 1)
	before := cs.batches.Load()
	start := time.Now()
	var last uint64
	for i := range 60 {
		last = e.publish(t, "t1", "a", fmt.Sprint(i), false)
		time.Sleep(5 * time.Millisecond)
	}
	e.waitApplied(t, "t1", last)
	elapsed := time.Since(start)
	got := cs.batches.Load() - before
	// At most one write per interval, plus the one already running when
	// the trickle started and the last partial one.
	if bound := int64(elapsed/cfg.ApplyInterval) + 2; got > bound {
		t.Fatalf("60 messages over %s applied in %d batches, want at most %d", elapsed.Round(time.Millisecond), got, bound)
	}
	t.Logf("60 messages over %s applied in %d batches", elapsed.Round(time.Millisecond), got)
	e.checkReplay(t, "t1", last, nil)
}

// TestServiceRecreatesPerMessageAckConsumer ensures a durable left by a
// version that acknowledged every message (an ack policy cannot be updated)
// is replaced by the cumulative one, from the store's position: nothing is
// applied twice or skipped.
func TestServiceRecreatesPerMessageAckConsumer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 10 {
		e.publish(t, "t1", "a", fmt.Sprint(i), false)
	}
	if _, err := e.js.CreateOrUpdateConsumer(ctx, backbone.StreamName("t1"), jetstream.ConsumerConfig{
		Durable: session.DefaultDurable, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	e.start(t, testConfig)
	e.waitApplied(t, "t1", 10)
	for i := range 10 {
		e.publish(t, "t1", "a", fmt.Sprint(10+i), false)
	}
	e.waitApplied(t, "t1", 20)
	e.checkReplay(t, "t1", 20, nil)
	c, err := e.js.Consumer(ctx, backbone.StreamName("t1"), session.DefaultDurable)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.CachedInfo().Config.AckPolicy; p != jetstream.AckAllPolicy {
		t.Fatalf("ack policy %s, want all", p)
	}
	// Cumulative acks leave nothing pending once the store has it all.
	waitFor(t, "no ack pending", func() bool {
		info, err := c.Info(ctx)
		return err == nil && info.NumAckPending == 0
	})
}
