package session_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/services/session"
)

// TestReplicasShareTenantsOnMemory ensures two replicas over one backbone
// — the in-memory one: the service's logic alone, no NATS — share the
// tenants with no tenant held twice, apply each held tenant's stream to
// the store, and that the survivor of a replica that leaves takes its
// tenants and applies what they publish next.
func TestReplicasShareTenantsOnMemory(t *testing.T) {
	ctx := context.Background()
	mem := backbone.NewMemory()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tenants := []string{"t1", "t2", "t3", "t4", "t5", "t6"}
	publish := func(payload string) {
		for _, tn := range tenants {
			if _, err := mem.Publish(ctx, &message.Message{Tenant: tn, Topic: "a", Payload: []byte(payload), Retain: true},
				backbone.PublishOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish("1")
	run := func(id string) (*session.Service, context.CancelFunc, chan struct{}) {
		cfg := session.Config{ReplicaID: id, PollInterval: 50 * time.Millisecond, LeaseTTL: 300 * time.Millisecond,
			FetchWait: 20 * time.Millisecond}
		svc, err := session.New(cfg, mem, mem.Bucket(cfg.LeaseBucket()), st, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := svc.Run(rctx); err != nil {
				t.Error(err)
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
		return svc, cancel, done
	}
	a, _, _ := run("a")
	b, stopB, bDone := run("b")
	held := func() ([]string, []string) { return a.Owned(), b.Owned() }
	waitFor(t, "tenants shared", func() bool {
		oa, ob := held()
		all := append(slices.Clone(oa), ob...)
		slices.Sort(all)
		return len(oa) > 0 && len(ob) > 0 && slices.Equal(slices.Compact(all), tenants) && len(all) == len(tenants)
	})
	applied := func(payload string) bool {
		for _, tn := range tenants {
			msgs, err := st.Retained(ctx, tn, "a")
			if err != nil || len(msgs) != 1 || string(msgs[0].Payload) != payload {
				return false
			}
		}
		return true
	}
	waitFor(t, "every tenant applied", func() bool { return applied("1") })
	stopB()
	<-bDone
	waitFor(t, "the survivor holds every tenant", func() bool { return fmt.Sprint(a.Owned()) == fmt.Sprint(tenants) })
	publish("2")
	waitFor(t, "the survivor applies them", func() bool { return applied("2") })
}
