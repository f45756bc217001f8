package testserver

import (
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/etcdserver"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Etcd starts an in-process single-member etcd on a free loopback port,
// without authentication, with its data in a temporary directory and its
// logging off, and returns the client endpoint (host:port); it stops at the
// end of the test.
func Etcd(tb testing.TB) (endpoint string) {
	tb.Helper()
	e, err := etcdserver.Start(etcdserver.Config{
		DataDir:    tb.TempDir(),
		ClientAddr: "127.0.0.1:0",
		NoFsync:    true,
		NoAuth:     true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Close)
	return e.ClientAddr()
}

// EtcdClient connects to the etcd at endpoint; the client closes at the end
// of the test.
func EtcdClient(tb testing.TB, endpoint string) *clientv3.Client {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}
