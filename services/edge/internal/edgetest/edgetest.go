// Package edgetest builds edge nodes over a real embedded NATS server for
// the transports' integration tests.
package edgetest

import (
	"log/slog"
	"testing"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/hub"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/nats-io/nats-server/v2/server"
)

// Tenant is the anonymous tenant of the nodes built here.
const Tenant = "dev"

// NATS starts an embedded NATS server with JetStream for the test.
func NATS(tb testing.TB) *server.Server {
	tb.Helper()
	return testserver.NATS(tb)
}

// Node returns an edge node named id over s, with its own NATS connection,
// backbone, live interest and hub, admitting anonymous clients into Tenant.
// It has no session store: replays read the stream. Everything is released
// at the end of the test.
func Node(tb testing.TB, s *server.Server, id string) *node.Node {
	tb.Helper()
	bb, err := backbone.New(testserver.NATSConn(tb, s), backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	var h *hub.Hub
	live := bb.NewLive(backbone.LiveConfig{}, func(m *message.Message) { h.Dispatch(m) })
	tb.Cleanup(live.Close)
	h = hub.New(live)
	return &node.Node{ID: id, Backbone: bb, Hub: h, Auth: auth.Anonymous{Tenant: Tenant}, Log: slog.Default()}
}
