// Package testserver starts the real servers Herald's integration tests run
// against — NATS with JetStream, Redis (standalone and Cluster), etcd — on
// free loopback ports, and stops them when the test ends.
package testserver

import (
	"testing"

	"github.com/heraldmq/herald/pkg/natsserver"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS starts an in-process NATS server with JetStream on a free port,
// without authentication, and returns it; it shuts down at the end of the test.
func NATS(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := natsserver.Start(natsserver.Config{Addr: "127.0.0.1:0", StoreDir: tb.TempDir(), NoAuth: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// NATSConn connects to s; the connection closes at the end of the test.
func NATSConn(tb testing.TB, s *server.Server, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
