package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/admin"
)

func parse(t *testing.T, args ...string) cli {
	t.Helper()
	var c cli
	p, err := parser(&c, kong.Exit(func(int) { t.Fatal("kong exited") }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConfigFile ensures the YAML file fills the same fields as the flags, and the environment overrides it.
func TestConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin.yaml")
	yaml := "addr: 127.0.0.1:9999\nshutdown_timeout: 3s\netcd:\n  endpoints: [10.0.0.1:2379, 10.0.0.2:2379]\n  prefix: /h/\nlog_format: json\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c := parse(t, "--config", file)
	if c.Admin.Addr != "127.0.0.1:9999" || c.Admin.ShutdownTimeout != 3*time.Second ||
		!slices.Equal(c.Etcd.Endpoints, []string{"10.0.0.1:2379", "10.0.0.2:2379"}) || c.Etcd.Prefix != "/h/" || c.LogFormat != "json" {
		t.Fatalf("from file: %+v", c)
	}
	t.Setenv("HERALD_ADMIN_ADDR", "127.0.0.1:7777")
	if c := parse(t, "--config", file); c.Admin.Addr != "127.0.0.1:7777" {
		t.Fatalf("environment did not override the file: %s", c.Admin.Addr)
	}
	c = parse(t)
	if c.Admin.Addr != "127.0.0.1:7777" || !slices.Equal(c.Etcd.Endpoints, []string{"127.0.0.1:2379"}) || c.Etcd.Prefix != "/herald/" {
		t.Fatalf("defaults: %+v", c)
	}
}

// TestRun ensures herald-admin serves against a real etcd and stops when its context ends.
func TestRun(t *testing.T) {
	c := parse(t, "--addr", "127.0.0.1:0", "--etcd-endpoints", testserver.Etcd(t))
	ctx, cancel := context.WithCancel(context.Background())
	servers := make(chan *admin.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, c, slog.New(slog.DiscardHandler), func(s *admin.Server) { servers <- s })
	}()
	var srv *admin.Server
	select {
	case srv = <-servers:
	case err := <-done:
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + srv.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
