package mqtt

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/redis/go-redis/v9"
)

// idleSessions is how many persistent sessions BenchmarkIdleSessionWrites
// holds.
const idleSessions = 10000

// writeCounter counts every write an edge makes to the session store.
type writeCounter struct {
	store.Store
	writes atomic.Int64
}

func (c *writeCounter) SaveSession(ctx context.Context, tenant string, s *store.Session, lim store.Limits) error {
	c.writes.Add(1)
	return c.Store.SaveSession(ctx, tenant, s, lim)
}

func (c *writeCounter) DeleteSession(ctx context.Context, tenant, clientID string, revision uint64) error {
	c.writes.Add(1)
	return c.Store.DeleteSession(ctx, tenant, clientID, revision)
}

func (c *writeCounter) RenewEdgeLease(ctx context.Context, edge string, until time.Time) error {
	c.writes.Add(1)
	return c.Store.RenewEdgeLease(ctx, edge, until)
}

// BenchmarkIdleSessionWrites measures what 10,000 idle persistent MQTT 5
// sessions cost the session store: one edge over Redis holds them (each
// with a session expiry and one QoS 1 subscription, its record saved at
// connect and subscribe), then nothing is published and nothing
// reconnects. One iteration watches a third of the edge's SessionLease
// (one renewal period, 3.3 s by default). Reported: store-writes/s, the
// session saves, deletes and edge lease renewals that reach the store;
// redis-changes/s, the keys Redis changed (any writer); and the same per
// session per hour. Run with -benchtime 3x or more: a single iteration
// may fall between two renewals.
func BenchmarkIdleSessionWrites(b *testing.B) {
	addr := testserver.Redis(b)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	b.Cleanup(func() { rdb.Close() })
	st := &writeCounter{Store: store.NewRedis(rdb, store.RedisConfig{})}
	e := newEdge(b, testserver.NATS(b), "edge-idle", func(_ *Config, n *node.Config) { n.State = st })
	connectIdle(b, e, idleSessions)
	// The records are written at connect and subscribe, some after the
	// SUBACK: wait until no write came for two seconds.
	settled := time.Now().Add(time.Minute)
	for last := int64(-1); last != st.writes.Load(); {
		if time.Now().After(settled) {
			b.Fatal("the session writes of the connects never settled")
		}
		last = st.writes.Load()
		time.Sleep(2 * time.Second)
	}
	if n, err := st.CountSessions(context.Background(), "dev"); err != nil || n != idleSessions {
		b.Fatalf("%d sessions stored (%v), want %d", n, err, idleSessions)
	}
	writes, changes := st.writes.Load(), testserver.RedisStat(b, addr, "persistence", "rdb_changes_since_last_save")
	b.ResetTimer()
	for b.Loop() {
		time.Sleep(DefaultSessionLease / 3)
	}
	b.StopTimer()
	secs := b.Elapsed().Seconds()
	w := float64(st.writes.Load()-writes) / secs
	c := float64(testserver.RedisStat(b, addr, "persistence", "rdb_changes_since_last_save")-changes) / secs
	b.ReportMetric(w, "store-writes/s")
	b.ReportMetric(c, "redis-changes/s")
	b.ReportMetric(w*3600/idleSessions, "writes/session/h")
}

// connectIdle connects n persistent MQTT 5 sessions to e over in-memory
// pipes (10,000 TCP connections would take 20,000 descriptors in this one
// process, its whole limit), each subscribed at QoS 1, with the tests'
// raw client: it writes each packet in one Write, where Paho writes a
// packet's parts separately, which two of its goroutines may interleave
// on a pipe (a TCP connection gathers them into one write).
func connectIdle(b *testing.B, e *env, n int) {
	b.Helper()
	conns := make([]net.Conn, 0, n)
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range n {
		client, server := net.Pipe()
		conns = append(conns, client)
		e.srv.wg.Add(1)
		go func() {
			defer e.srv.wg.Done()
			e.srv.serveConn(context.Background(), server, true)
		}()
		r := &raw{t: b, c: client, r: bufio.NewReader(client), version: 5}
		r.connectAs(fmt.Sprintf("idle-%d", i), 600, packets.Properties{SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true})
		r.subscribe(packets.Subscription{Filter: fmt.Sprintf("idle/%d", i), Qos: 1})
	}
}
