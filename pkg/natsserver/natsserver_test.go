package natsserver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/natsserver"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func start(t *testing.T, c natsserver.Config) *server.Server {
	t.Helper()
	c.StoreDir = t.TempDir()
	s, err := natsserver.Start(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// storeOne stores a message through nc, to show it reaches JetStream.
func storeOne(t *testing.T, nc *nats.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// TestNoListener ensures the default server opens no socket, and that the
// process's in-process client reaches JetStream.
func TestNoListener(t *testing.T) {
	before := testserver.Listeners(t)
	c := natsserver.Config{}
	s := start(t, c)
	if got := testserver.Listeners(t); len(got) != len(before) {
		t.Fatalf("listening on %v (before start: %v)", got, before)
	}
	nc, err := nats.Connect(s.ClientURL(), c.ConnectOptions(s)...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	storeOne(t, nc)
}

// TestListenerNeedsUser ensures a listener refuses a client without
// credentials or with a wrong password, serves the configured user, and
// that the in-process client authenticates as that user too.
func TestListenerNeedsUser(t *testing.T) {
	c := natsserver.Config{Addr: "127.0.0.1:0", User: "herald", Password: "secret-1"}
	s := start(t, c)
	for _, opts := range [][]nats.Option{nil, {nats.UserInfo("herald", "wrong")}} {
		if nc, err := nats.Connect(s.ClientURL(), opts...); !errors.Is(err, nats.ErrAuthorization) {
			if nc != nil {
				nc.Close()
			}
			t.Fatalf("connect with %d options: %v, want %v", len(opts), err, nats.ErrAuthorization)
		}
	}
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("herald", "secret-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	storeOne(t, nc)
	own, err := nats.Connect(s.ClientURL(), c.ConnectOptions(s)...)
	if err != nil {
		t.Fatalf("in-process as the user: %v", err)
	}
	own.Close()
}

// TestValidate ensures a missing store, a malformed address, a user
// without a password and a listener without credentials are rejected.
func TestValidate(t *testing.T) {
	for _, c := range []natsserver.Config{
		{},
		{StoreDir: "d", Addr: "nohost"},
		{StoreDir: "d", User: "u"},
		{StoreDir: "d", Addr: "127.0.0.1:0"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (natsserver.Config{StoreDir: "d", Addr: "127.0.0.1:0"}).Validate(); !errors.Is(err, natsserver.ErrNoCredentials) {
		t.Fatalf("listener without credentials: %v", err)
	}
	for _, c := range []natsserver.Config{{StoreDir: "d"}, {StoreDir: "d", Addr: "127.0.0.1:0", NoAuth: true}} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
