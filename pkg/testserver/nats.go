// Package testserver starts the real servers Herald's integration tests run
// against — NATS with JetStream, Redis (standalone and Cluster), etcd — on
// free loopback ports, and stops them when the test ends.
package testserver

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

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

// NATSCluster starts n in-process NATS servers with JetStream, routed into
// one cluster on free loopback ports, without authentication, and returns
// them once the cluster has a JetStream meta leader; they shut down at the
// end of the test.
func NATSCluster(tb testing.TB, n int) []*server.Server {
	tb.Helper()
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
	}
	srvs := make([]*server.Server, n)
	for i := range srvs {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("s%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "herald-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			tb.Fatal(err)
		}
		go s.Start()
		tb.Cleanup(s.Shutdown)
		srvs[i] = s
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range srvs {
		if !s.ReadyForConnections(10 * time.Second) {
			tb.Fatalf("NATS server %s not ready", s.Name())
		}
	}
	for !srvs[0].JetStreamIsClustered() || !srvs[0].JetStreamIsCurrent() {
		if time.Now().After(deadline) {
			tb.Fatal("NATS cluster: no JetStream meta leader after 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return srvs
}
