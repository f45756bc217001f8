package session_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/session"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

var prefixes atomic.Int64

type env struct {
	bb *backbone.Backbone
	// js acts on the streams behind the backbone (as another process would).
	js        jetstream.JetStream
	st        store.Store
	rdb       *redis.Client
	natsURL   string
	redisAddr string
	prefix    string
}

// newEnv starts NATS (in process) and Redis, and returns a backbone and a
// Redis store with a key prefix of its own.
func newEnv(t *testing.T) env {
	t.Helper()
	ns := testserver.NATS(t)
	nc := testserver.NATSConn(t, ns)
	bb, err := backbone.New(nc, backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	addr := testserver.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	prefix := fmt.Sprintf("session%d", prefixes.Add(1))
	st := store.NewRedis(rdb, store.RedisConfig{KeyPrefix: prefix})
	return env{bb: bb, js: js, st: st, rdb: rdb, natsURL: ns.ClientURL(), redisAddr: addr, prefix: prefix}
}

var testConfig = session.Config{PollInterval: 100 * time.Millisecond, FetchWait: 100 * time.Millisecond, BatchSize: 7}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

// start runs a service until the returned stop is called (or the test ends);
// stop returns once Run has returned.
func (e env) start(t *testing.T, cfg session.Config) (stop func()) {
	t.Helper()
	_, stop = e.startService(t, cfg)
	return stop
}

// run runs svc until the returned stop is called (or the test ends).
func (e env) run(t *testing.T, svc *session.Service) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	waitFor(t, "service ready", svc.Ready)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return 10s after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publish stores a QoS 1 message and returns its sequence.
func (e env) publish(t *testing.T, tenant, topic, payload string, retain bool) uint64 {
	t.Helper()
	pos, err := e.bb.Publish(context.Background(), &message.Message{Tenant: tenant, Topic: topic, Payload: []byte(payload), QoS: 1, Retain: retain}, backbone.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pos.Seq
}

// waitApplied waits until the store applied seq of tenant.
func (e env) waitApplied(t *testing.T, tenant string, seq uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s applied through %d", tenant, seq), func() bool {
		st, err := e.st.State(context.Background(), tenant)
		return err == nil && st.Applied >= seq
	})
}

// checkReplay asserts the buffer holds exactly seqs 1..last, each with the
// payload published at that sequence.
func (e env) checkReplay(t *testing.T, tenant string, last uint64, payloads map[uint64]string) {
	t.Helper()
	var got []*message.Message
	for after := uint64(0); ; {
		p, err := e.st.Replay(context.Background(), tenant, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Messages) == 0 {
			if p.Applied != last || p.TrimmedThrough != 0 {
				t.Fatalf("state %+v, want applied %d", p.ReplayState, last)
			}
			break
		}
		got = append(got, p.Messages...)
		after = p.Messages[len(p.Messages)-1].Seq
	}
	if uint64(len(got)) != last {
		t.Fatalf("replay holds %d messages, want %d", len(got), last)
	}
	for i, m := range got {
		if m.Seq != uint64(i+1) {
			t.Fatalf("replay position %d holds seq %d: a message was lost or applied twice", i, m.Seq)
		}
		if want, ok := payloads[m.Seq]; ok && string(m.Payload) != want {
			t.Fatalf("seq %d payload %q, want %q", m.Seq, m.Payload, want)
		}
	}
}

func retainedTopics(t *testing.T, st store.Store, tenant, filter string) []string {
	t.Helper()
	ms, err := st.Retained(context.Background(), tenant, filter)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, m := range ms {
		out = append(out, m.Topic+"="+string(m.Payload))
	}
	return out
}

// TestServiceAppliesStreams ensures published messages reach the store in
// stream order: every message in the replay buffer once, retained messages
// set, replaced and deleted, and a tenant created while running is found.
func TestServiceAppliesStreams(t *testing.T) {
	e := newEnv(t)
	payloads := map[uint64]string{}
	pub := func(tenant, topic, payload string, retain bool) uint64 {
		seq := e.publish(t, tenant, topic, payload, retain)
		if tenant == "t1" {
			payloads[seq] = payload
		}
		return seq
	}
	pub("t1", "a/r1", "one", true)
	pub("t1", "a/r2", "two", true)
	for i := range 20 {
		pub("t1", fmt.Sprintf("a/x/%d", i%3), fmt.Sprint(i), false)
	}
	e.start(t, testConfig)
	pub("t1", "a/r1", "one again", true)
	pub("t1", "a/r2", "", true) // deletes a/r2
	pub("t1", "$sys/r", "hidden", true)
	last := pub("t1", "b", "last", false)
	e.waitApplied(t, "t1", last)
	e.checkReplay(t, "t1", last, payloads)
	if got := retainedTopics(t, e.st, "t1", "#"); !slices.Equal(got, []string{"a/r1=one again"}) {
		t.Fatalf("retained # = %v", got)
	}
	if got := retainedTopics(t, e.st, "t1", "$sys/#"); !slices.Equal(got, []string{"$sys/r=hidden"}) {
		t.Fatalf("retained $sys/# = %v", got)
	}

	// A tenant that appears while the service runs.
	seq := e.publish(t, "t2", "c", "t2 retained", true)
	e.waitApplied(t, "t2", seq)
	if got := retainedTopics(t, e.st, "t2", "#"); !slices.Equal(got, []string{"c=t2 retained"}) {
		t.Fatalf("t2 retained # = %v", got)
	}
	if got := retainedTopics(t, e.st, "t1", "c"); len(got) != 0 {
		t.Fatalf("t1 sees t2's retained: %v", got)
	}
}

// TestServiceRestartMidStream ensures stopping and starting the service while
// messages are being published neither loses a message nor applies one twice.
func TestServiceRestartMidStream(t *testing.T) {
	e := newEnv(t)
	e.publish(t, "t1", "warmup", "0", false) // the stream exists before the service looks
	stop := e.start(t, testConfig)

	payloads := map[uint64]string{}
	done := make(chan uint64)
	restart := make(chan struct{})
	go func() {
		var last uint64
		for i := range 600 {
			if i == 200 {
				close(restart)
			}
			payload := fmt.Sprintf("m%d", i)
			pos, err := e.bb.Publish(context.Background(), &message.Message{Tenant: "t1", Topic: fmt.Sprintf("s/%d", i%5), Payload: []byte(payload), QoS: 1, Retain: i%7 == 0}, backbone.PublishOptions{})
			if err != nil {
				t.Error(err)
				break
			}
			payloads[pos.Seq] = payload
			last = pos.Seq
		}
		done <- last
	}()
	<-restart
	stop()
	e.start(t, testConfig)
	last := <-done
	e.waitApplied(t, "t1", last)
	e.checkReplay(t, "t1", last, payloads)
	// The last retained publish was i=595 on s/0 (595 % 5 == 0, 595 % 7 == 0).
	if got := retainedTopics(t, e.st, "t1", "s/0"); !slices.Equal(got, []string{"s/0=m595"}) {
		t.Fatalf("retained s/0 = %v", got)
	}
}

// TestServiceRecoversUnackedDeliveries ensures messages a crashed instance
// fetched but never applied are applied at once by the next one, in order,
// instead of after AckWait behind newer messages.
func TestServiceRecoversUnackedDeliveries(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 10 {
		e.publish(t, "t1", "a", fmt.Sprint(i), false)
	}
	// A first instance applies 1..10 and acknowledges them.
	stop := e.start(t, testConfig)
	e.waitApplied(t, "t1", 10)
	stop()
	// "Crash": something fetches 11..15 on the durable and never acks.
	for i := range 10 {
		e.publish(t, "t1", "a", fmt.Sprint(10+i), i == 9)
	}
	cons, err := e.js.Consumer(ctx, backbone.StreamName("t1"), session.DefaultDurable)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(5, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range batch.Messages() {
		n++
	}
	if n != 5 {
		t.Fatalf("crashed instance fetched %d messages", n)
	}
	start := time.Now()
	e.start(t, testConfig)
	e.waitApplied(t, "t1", 20)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("recovery took %s: unacked messages waited for AckWait", d)
	}
	e.checkReplay(t, "t1", 20, nil)
	if got := retainedTopics(t, e.st, "t1", "a"); !slices.Equal(got, []string{"a=19"}) {
		t.Fatalf("retained a = %v", got)
	}
}

// TestServiceRebuildsAfterStoreLoss ensures a wiped store is rebuilt from the
// stream on restart, although the consumer acknowledged everything before.
func TestServiceRebuildsAfterStoreLoss(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		e.publish(t, "t1", "a", fmt.Sprint(i), i == 4)
	}
	stop := e.start(t, testConfig)
	e.waitApplied(t, "t1", 5)
	stop()
	if err := e.st.DeleteTenant(context.Background(), "t1"); err != nil {
		t.Fatal(err)
	}
	e.start(t, testConfig)
	e.waitApplied(t, "t1", 5)
	e.checkReplay(t, "t1", 5, nil)
	if got := retainedTopics(t, e.st, "t1", "#"); !slices.Equal(got, []string{"a=4"}) {
		t.Fatalf("retained # = %v", got)
	}
}

// TestServiceFollowsRecreatedStream ensures a deleted and recreated tenant
// stream (a new epoch) replaces the tenant's state instead of mixing in.
func TestServiceFollowsRecreatedStream(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 5 {
		e.publish(t, "t1", fmt.Sprintf("old/%d", i), "old", true)
	}
	e.start(t, testConfig)
	e.waitApplied(t, "t1", 5)
	old, _ := e.st.State(ctx, "t1")
	if err := e.js.DeleteStream(ctx, backbone.StreamName("t1")); err != nil {
		t.Fatal(err)
	}
	e.bb.Forget("t1")
	time.Sleep(5 * time.Millisecond) // epochs are creation times in milliseconds
	e.publish(t, "t1", "new", "new", true)
	e.publish(t, "t1", "new2", "", false)
	waitFor(t, "new epoch applied", func() bool {
		st, err := e.st.State(ctx, "t1")
		return err == nil && st.Epoch != old.Epoch && st.Applied == 2
	})
	e.checkReplay(t, "t1", 2, map[uint64]string{1: "new", 2: ""})
	if got := retainedTopics(t, e.st, "t1", "#"); !slices.Equal(got, []string{"new=new"}) {
		t.Fatalf("retained # = %v", got)
	}
}

// TestDeletedTenantNotResurrected ensures that deleting a tenant's data
// while the service owns it — store, stream, store again, the admin API's
// order — leaves nothing of it: the service lets the tenant go (its
// worker stops and its lease is released), writes none of its state back
// (neither the owner from before, fenced out, nor a new one rebuilding from
// a stream that is gone), and when the tenant is used again, its new
// stream is applied alone, under its new epoch.
func TestDeletedTenantNotResurrected(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 5 {
		e.publish(t, "t1", fmt.Sprintf("old/%d", i), "old", true)
	}
	e.publish(t, "t2", "kept", "kept", true)
	svc, _ := e.startService(t, testConfig)
	e.waitApplied(t, "t1", 5)
	e.waitApplied(t, "t2", 1)
	old, _ := e.st.State(ctx, "t1")
	if err := e.st.SaveSession(ctx, "t1", &store.Session{ClientID: "device"}, store.Limits{}); err != nil {
		t.Fatal(err)
	}

	if err := e.st.DeleteTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := e.bb.DeleteTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := e.st.DeleteTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted tenant released", func() bool { return !slices.Contains(svc.Owned(), "t1") })
	// Several rounds of ownership later, still nothing.
	time.Sleep(5 * testConfig.PollInterval)
	if st, err := e.st.State(ctx, "t1"); err != nil || st != (store.ReplayState{}) {
		t.Fatalf("state of the deleted tenant: %+v, %v", st, err)
	}
	if got := retainedTopics(t, e.st, "t1", "#"); len(got) != 0 {
		t.Fatalf("retained of the deleted tenant: %v", got)
	}
	if n, _ := e.st.CountSessions(ctx, "t1"); n != 0 {
		t.Fatalf("sessions of the deleted tenant: %d", n)
	}
	if got := retainedTopics(t, e.st, "t2", "#"); !slices.Equal(got, []string{"kept=kept"}) {
		t.Fatalf("t2 retained after deleting t1: %v", got)
	}

	e.publish(t, "t1", "new", "new", true)
	waitFor(t, "the tenant's new stream applied", func() bool {
		st, err := e.st.State(ctx, "t1")
		return err == nil && st.Applied == 1 && st.Epoch != "" && st.Epoch != old.Epoch
	})
	if got := retainedTopics(t, e.st, "t1", "#"); !slices.Equal(got, []string{"new=new"}) {
		t.Fatalf("retained of the tenant used again: %v", got)
	}
}

// TestConfigValidate ensures defaults apply and bad values are refused.
func TestConfigValidate(t *testing.T) {
	if err := (session.Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	d := session.Config{}.WithDefaults()
	if d.PollInterval != 2*time.Second || d.BatchSize != 256 || d.Durable != "herald-session" ||
		d.Limits.Replay.MaxMessages != 10000 || d.Limits.Replay.MaxAge != 24*time.Hour || d.LeaseTTL != 10*time.Second ||
		d.SweepInterval != 30*time.Second || d.ApplyInterval != 20*time.Millisecond || d.ReplicaID == "" || d.Limits.RetainedMessages != store.DefaultRetainedMessages ||
		d.Limits.Sessions != store.DefaultSessions {
		t.Fatalf("defaults %+v", d)
	}
	if d := (session.Config{PollInterval: 5 * time.Second}).WithDefaults(); d.LeaseTTL != 15*time.Second {
		t.Fatalf("lease TTL %s with a 5s poll interval", d.LeaseTTL)
	}
	for _, c := range []session.Config{
		{BatchSize: -1}, {PollInterval: -time.Second}, {FetchWait: time.Nanosecond}, {ApplyInterval: -time.Millisecond}, {ApplyInterval: 2 * time.Second},
		{Durable: "a.b"}, {Limits: store.Limits{Replay: store.ReplayLimits{MaxMessages: -1}}},
		{ReplicaID: "a b"}, {PollInterval: time.Second, LeaseTTL: 2 * time.Second},
		{Limits: store.Limits{Sessions: -1}}, {TenantLimits: map[string]store.Limits{"t": {RetainedBytes: -1}}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
