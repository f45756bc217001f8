package etcdserver

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func connect(t *testing.T, addr string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestStartRestart ensures the server serves clients on a free port and keeps its data across a restart.
func TestStartRestart(t *testing.T) {
	dir := t.TempDir()
	e, err := Start(Config{DataDir: dir, ClientAddr: "127.0.0.1:0", NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	addr := ClientAddr(e)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := connect(t, addr).Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	e.Close()

	e, err = Start(Config{DataDir: dir, ClientAddr: addr, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	resp, err := connect(t, addr).Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart k = %v", resp.Kvs)
	}
}

// TestValidate ensures a missing data directory and malformed addresses are rejected.
func TestValidate(t *testing.T) {
	for _, c := range []Config{
		{},
		{DataDir: "d", ClientAddr: "nohost"},
		{DataDir: "d", PeerAddr: "1.2.3.4"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
		if _, err := Start(c); err == nil {
			t.Errorf("Start(%+v) succeeded", c)
		}
	}
	if err := (Config{DataDir: "d"}).Validate(); err != nil {
		t.Fatal(err)
	}
}
