// Package edgetest builds edge nodes over a real embedded NATS server for
// the transports' integration tests.
package edgetest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Tenant is the anonymous tenant of the nodes built here.
const Tenant = "dev"

// NATS starts an embedded NATS server with JetStream for the test.
func NATS(tb testing.TB) *server.Server {
	tb.Helper()
	return testserver.NATS(tb)
}

// Node returns an edge node named id over s, with its own NATS connection,
// backbone and live interest, admitting anonymous clients into Tenant. It
// has no session store unless an option gives one: replays read the
// stream. Options refine the node's configuration. Everything is released
// at the end of the test.
func Node(tb testing.TB, s *server.Server, id string, opts ...func(*node.Config)) *node.Node {
	tb.Helper()
	nc := testserver.NATSConn(tb, s)
	bb, err := backbone.New(nc, backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	var n *node.Node
	live := bb.NewLive(backbone.LiveConfig{}, func(m *message.Message) { n.Dispatch(m) })
	tb.Cleanup(live.Close)
	cfg := node.Config{ID: id, Stream: bb, Interest: live, Auth: auth.Anonymous{Tenant: Tenant}, Log: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	if n, err = node.New(cfg); err != nil {
		tb.Fatal(err)
	}
	jetStreams.Store(n, js)
	conns.Store(n, nc)
	tb.Cleanup(func() {
		jetStreams.Delete(n)
		conns.Delete(n)
	})
	return n
}

// jetStreams are JetStream contexts on the servers of the nodes built
// here, conns their NATS connections.
var jetStreams, conns sync.Map // *node.Node → jetstream.JetStream, *nats.Conn

// Conn returns the NATS connection of a node built by Node, for tests that
// break it.
func Conn(n *node.Node) *nats.Conn {
	nc, _ := conns.Load(n)
	return nc.(*nats.Conn)
}

// JetStream returns a JetStream context on the server of a node built by
// Node, for tests that act on the stream behind the core, as another
// process would (purging it, say).
func JetStream(n *node.Node) jetstream.JetStream {
	js, _ := jetStreams.Load(n)
	return js.(jetstream.JetStream)
}

// Anonymous is the identity of the anonymous clients of Tenant.
var Anonymous = auth.Identity{Tenant: Tenant, Anonymous: true}

// Admit admits a connection of the anonymous identity on n, released at the
// end of the test.
func Admit(tb testing.TB, n *node.Node) *node.Admission {
	tb.Helper()
	a, err := n.Admit(context.Background(), node.ClientInfo{ID: "test", Protocol: "test", Identity: Anonymous}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.Release)
	return a
}

// Publish publishes m as the anonymous identity of Tenant, waiting for its
// store, and returns it as stored (sequence and time set).
func Publish(tb testing.TB, n *node.Node, m *message.Message) *message.Message {
	tb.Helper()
	r, err := n.Publish(context.Background(), node.Caller{Identity: Anonymous}, m, node.PublishOptions{Wait: node.WaitStored})
	if err != nil {
		tb.Fatal(err)
	}
	pos, err := r.Wait(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	stored := *m
	stored.Seq, stored.Time = pos.Seq, time.Now()
	return &stored
}

// Stored returns every message of Tenant's stream, in order, as a
// subscriber resuming from its start reads them (the core's replay).
func Stored(tb testing.TB, n *node.Node) []*message.Message {
	tb.Helper()
	ctx := context.Background()
	f, err := n.Subscribe(ctx, Admit(tb, n), []string{"#"}, node.After(message.Position{}), node.Policy{Queue: 1})
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []*message.Message
	if _, err := f.Replay(ctx, func(it node.Item) error {
		if !it.Gap() {
			out = append(out, it.Msg)
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return out
}

// Refusing is an option of Node: an authenticator without an anonymous
// tenant, which refuses everyone.
func Refusing(c *node.Config) { c.Auth = auth.Anonymous{} }

// Position returns the position of a message Publish stored.
func Position(tb testing.TB, n *node.Node, m *message.Message) message.Position {
	tb.Helper()
	head, err := n.Head(context.Background(), Tenant)
	if err != nil {
		tb.Fatal(err)
	}
	return message.Position{Epoch: head.Epoch, Seq: m.Seq}
}

// MemoryNode returns an edge node over an in-memory backbone (no NATS),
// for tests of pure logic (fuzzing a transport's input, say), admitting
// anonymous clients into Tenant.
func MemoryNode(tb testing.TB, opts ...func(*node.Config)) *node.Node {
	tb.Helper()
	n, _ := MemoryNodeOn(tb, backbone.NewMemory(), opts...)
	return n
}

// MemoryNodeOn returns an edge node over the in-memory backbone mem (edges
// may share one), and the backbone.
func MemoryNodeOn(tb testing.TB, mem *backbone.Memory, opts ...func(*node.Config)) (*node.Node, *backbone.Memory) {
	tb.Helper()
	var n *node.Node
	live := mem.NewLive(func(m *message.Message) { n.Dispatch(m) })
	tb.Cleanup(live.Close)
	cfg := node.Config{ID: "mem", Stream: mem, Interest: live, Auth: auth.Anonymous{Tenant: Tenant},
		Log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return n, mem
}
