package herald_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/admin"
	"github.com/heraldmq/herald/services/edge"
	"github.com/heraldmq/herald/services/herald"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// freeAddrs returns n distinct free loopback addresses.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

// embedded is a running all-in-one process.
type embedded struct {
	dataDir                            string
	mqtt, http, admin, ops, nats, etcd string
	log                                *testserver.Log
}

// runEmbedded runs the all-in-one as `make run` configures it, on free
// ports, with the NATS and etcd listeners given (empty: none), until the
// test ends, and waits until it is ready.
func runEmbedded(t *testing.T, natsAddr, etcdAddr string) *embedded {
	t.Helper()
	return runEmbeddedWith(t, natsAddr, etcdAddr, nil, http.DefaultClient, "http")
}

// runEmbeddedWith is runEmbedded with the configuration changed by
// configure (if not nil) before the start, its readiness asked with
// client at scheme://ops/readyz.
func runEmbeddedWith(t *testing.T, natsAddr, etcdAddr string, configure func(*herald.Config), client *http.Client, scheme string) *embedded {
	t.Helper()
	a := freeAddrs(t, 4)
	e := &embedded{dataDir: filepath.Join(t.TempDir(), "data"), mqtt: a[0], http: a[1], admin: a[2], ops: a[3],
		nats: natsAddr, etcd: etcdAddr, log: &testserver.Log{}}
	cfg := herald.Config{
		DataDir:  e.dataDir,
		NATSAddr: natsAddr,
		EtcdAddr: etcdAddr,
		OpsAddr:  e.ops,
		Edge:     edge.Config{ID: "herald", MQTTAddr: e.mqtt, HTTPAddr: e.http, AnonymousTenant: "dev"},
		Admin:    admin.Config{Addr: e.admin, Insecure: true},
	}
	if configure != nil {
		configure(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- herald.Run(ctx, cfg, slog.New(slog.NewTextHandler(e.log, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("herald: %v", err)
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-done:
			done <- nil // for the cleanup, which waits for it
			t.Fatalf("herald stopped: %v\n%s", err, e.log)
		default:
		}
		if resp, err := client.Get(scheme + "://" + e.ops + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready in 60s\n%s", e.log)
		}
	}
}

// password reads a credentials file of the data directory and checks that
// only its owner may read it.
func password(t *testing.T, dataDir, name string) string {
	t.Helper()
	path := filepath.Join(dataDir, name)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", name, info.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 32 {
		t.Fatalf("%s holds %d bytes: too short a secret", name, len(b))
	}
	return string(b)
}

// TestEmbeddedListensOnlyOnItsDoors ensures the all-in-one with its
// defaults listens on MQTT, HTTP, admin and ops and on nothing else — no
// NATS, no etcd client or peer port, no unix socket — and keeps its data
// directory to its owner.
func TestEmbeddedListensOnlyOnItsDoors(t *testing.T) {
	before := testserver.Listeners(t)
	e := runEmbedded(t, "", "")
	want := slices.Clone(before)
	for _, a := range []string{e.mqtt, e.http, e.admin, e.ops} {
		want = append(want, "tcp "+a)
	}
	slices.Sort(want)
	if got := testserver.Listeners(t); !slices.Equal(got, want) {
		t.Fatalf("listening on %v, want %v", got, want)
	}
	info, err := os.Stat(e.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v, want 0700", info.Mode().Perm())
	}
}

// TestEmbeddedListenersNeedCredentials ensures NATS and etcd listeners asked
// for refuse clients without credentials — no anonymous SUB herald.>, no
// etcd Put of an admin key — and serve the credentials kept 0600 in the
// data directory, which the log names but never prints.
func TestEmbeddedListenersNeedCredentials(t *testing.T) {
	a := freeAddrs(t, 2)
	e := runEmbedded(t, a[0], a[1])
	natsPassword := password(t, e.dataDir, herald.NATSPasswordFile)
	etcdPassword := password(t, e.dataDir, herald.EtcdPasswordFile)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	for _, opts := range [][]nats.Option{nil, {nats.UserInfo(herald.NATSUser, "guess")}} {
		if nc, err := nats.Connect("nats://"+e.nats, opts...); !errors.Is(err, nats.ErrAuthorization) {
			if nc != nil {
				nc.Close()
			}
			t.Fatalf("NATS connect with %d options: %v, want %v", len(opts), err, nats.ErrAuthorization)
		}
	}
	nc, err := nats.Connect("nats://"+e.nats, nats.UserInfo(herald.NATSUser, natsPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("herald.>")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+e.http+"/publish?topic=doors/x", "text/plain", strings.NewReader("seen"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if m, err := sub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "seen" {
		t.Fatalf("the credentialed subscriber: %v %v", m, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctx, "HERALD_dev"); err != nil {
		t.Fatalf("the credentialed JetStream client: %v", err)
	}

	dial := func(user, password string) (*clientv3.Client, error) {
		return clientv3.New(clientv3.Config{Endpoints: []string{e.etcd}, DialTimeout: 5 * time.Second,
			Username: user, Password: password, Logger: zap.NewNop()})
	}
	anon, err := dial("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Put(ctx, "/herald/admin-keys/intruder", "{}"); !errors.Is(err, rpctypes.ErrUserEmpty) {
		t.Fatalf("etcd put without credentials: %v, want %v", err, rpctypes.ErrUserEmpty)
	}
	if _, err := dial(herald.EtcdUser, "guess"); !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Fatalf("etcd with a wrong password: %v, want %v", err, rpctypes.ErrAuthFailed)
	}
	root, err := dial(herald.EtcdUser, etcdPassword)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if got, err := root.Get(ctx, "/herald/tenants/dev"); err != nil || len(got.Kvs) != 1 {
		t.Fatalf("etcd as root: %v %v", got, err)
	}

	log := e.log.String()
	for name, pw := range map[string]string{"NATS": natsPassword, "etcd": etcdPassword} {
		if strings.Contains(log, pw) {
			t.Errorf("the %s password is in the log", name)
		}
	}
	for _, f := range []string{herald.NATSPasswordFile, herald.EtcdPasswordFile} {
		if !strings.Contains(log, strconv.Quote(filepath.Join(e.dataDir, f))) && !strings.Contains(log, filepath.Join(e.dataDir, f)) {
			t.Errorf("the log does not say where %s is:\n%s", f, log)
		}
	}
}
