package etcdserver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/etcdserver"
	"github.com/heraldmq/herald/pkg/testserver"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func start(t *testing.T, c etcdserver.Config) *etcdserver.Server {
	t.Helper()
	c.NoFsync = true
	s, err := etcdserver.Start(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func client(t *testing.T, s *etcdserver.Server) *clientv3.Client {
	t.Helper()
	cli, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// dial connects to addr as user (none if empty).
func dial(t *testing.T, addr, user, password string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second,
		Username: user, Password: password, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestNoListener ensures the default server opens no socket at all, client
// or peer, and serves the process through the in-process client, watches
// included.
func TestNoListener(t *testing.T) {
	before := testserver.Listeners(t)
	s := start(t, etcdserver.Config{DataDir: t.TempDir()})
	defer s.Close()
	if got := testserver.Listeners(t); len(got) != len(before) {
		t.Fatalf("listening on %v (before start: %v)", got, before)
	}
	if s.ClientAddr() != "" {
		t.Fatalf("ClientAddr %q without a listener", s.ClientAddr())
	}
	cli := client(t, s)
	w := cli.Watch(ctx(t), "k", clientv3.WithPrefix())
	if _, err := cli.Put(ctx(t), "k1", "v"); err != nil {
		t.Fatal(err)
	}
	if ev := <-w; len(ev.Events) != 1 || string(ev.Events[0].Kv.Key) != "k1" {
		t.Fatalf("watch: %+v", ev)
	}
}

// TestListenerNeedsRoot ensures a client listener refuses a client without
// credentials or with a wrong password and serves the root user; that the
// process's own client authenticates; and that a later start without the
// listener turns authentication off and keeps the data.
func TestListenerNeedsRoot(t *testing.T) {
	dir := t.TempDir()
	s := start(t, etcdserver.Config{DataDir: dir, ClientAddr: "127.0.0.1:0", RootPassword: "secret-1"})
	addr := s.ClientAddr()
	if _, err := dial(t, addr, "", "").Put(ctx(t), "/herald/admin-keys/x", "operator"); !errors.Is(err, rpctypes.ErrUserEmpty) {
		t.Fatalf("a put without credentials: %v, want %v", err, rpctypes.ErrUserEmpty)
	}
	if _, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second,
		Username: etcdserver.RootUser, Password: "wrong", Logger: zap.NewNop()}); !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Fatalf("a wrong root password: %v, want %v", err, rpctypes.ErrAuthFailed)
	}
	if _, err := dial(t, addr, etcdserver.RootUser, "secret-1").Put(ctx(t), "k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, s).Put(ctx(t), "k2", "v2"); err != nil {
		t.Fatalf("the process's own client: %v", err)
	}
	s.Close()

	// Authentication is on in the data now: the root password must verify.
	if _, err := etcdserver.Start(etcdserver.Config{DataDir: dir, ClientAddr: "127.0.0.1:0", RootPassword: "other", NoFsync: true}); !errors.Is(err, etcdserver.ErrWrongPassword) {
		t.Fatalf("start with a wrong password: %v, want ErrWrongPassword", err)
	}
	if _, err := etcdserver.Start(etcdserver.Config{DataDir: dir, NoFsync: true}); err == nil {
		t.Fatal("start without a listener and without the password: auth left on and nothing said")
	}

	s = start(t, etcdserver.Config{DataDir: dir, RootPassword: "secret-1"})
	defer s.Close()
	resp, err := client(t, s).Get(ctx(t), "k", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 2 {
		t.Fatalf("after restart: %v", resp.Kvs)
	}
}

// TestStartRestart ensures a server without authentication (tests) serves
// clients on a free port and keeps its data across a restart.
func TestStartRestart(t *testing.T) {
	dir := t.TempDir()
	s := start(t, etcdserver.Config{DataDir: dir, ClientAddr: "127.0.0.1:0", NoAuth: true})
	addr := s.ClientAddr()
	if _, err := dial(t, addr, "", "").Put(ctx(t), "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = start(t, etcdserver.Config{DataDir: dir, ClientAddr: addr, NoAuth: true})
	defer s.Close()
	resp, err := dial(t, addr, "", "").Get(ctx(t), "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart k = %v", resp.Kvs)
	}
}

// TestValidate ensures a missing data directory, a malformed address and a
// listener without a root password are rejected.
func TestValidate(t *testing.T) {
	for _, c := range []etcdserver.Config{
		{},
		{DataDir: "d", ClientAddr: "nohost"},
		{DataDir: "d", ClientAddr: "127.0.0.1:0"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
		if _, err := etcdserver.Start(c); err == nil {
			t.Errorf("Start(%+v) succeeded", c)
		}
	}
	if err := (etcdserver.Config{DataDir: "d", ClientAddr: "127.0.0.1:0"}).Validate(); !errors.Is(err, etcdserver.ErrNoCredentials) {
		t.Fatalf("listener without password: %v", err)
	}
	if err := (etcdserver.Config{DataDir: "d"}).Validate(); err != nil {
		t.Fatal(err)
	}
}
