package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/heraldmq/herald/pkg/config"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/admin"
)

func parse(t *testing.T, args ...string) serveCmd {
	t.Helper()
	var c cli
	p, err := parser(&c, kong.Exit(func(int) { t.Fatal("kong exited") }))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := p.Parse(args)
	if err != nil {
		t.Fatal(err)
	}
	if kctx.Command() != "serve" {
		t.Fatalf("command %q, want serve", kctx.Command())
	}
	return c.Serve
}

// command runs one client command line and returns what it printed.
func command(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var c cli
	p, err := parser(&c, kong.Exit(func(int) { t.Fatal("kong exited") }))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := p.Parse(args)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	kctx.BindTo(t.Context(), (*context.Context)(nil))
	kctx.Bind(output{w: &out})
	err = kctx.Run()
	return out.String(), err
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

// TestCredentialsConfig ensures the NATS, Redis Sentinel and etcd
// credentials come from the YAML file like every other flag, and the
// environment overrides them.
func TestCredentialsConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin.yaml")
	yaml := "nats:\n  user: herald\n  password: from-file\nredis:\n  sentinel:\n    username: sentinel-user\n    password: sentinel-file\n" +
		"etcd:\n  username: herald-admin\n  password: etcd-file\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c := parse(t, "--config", file)
	if c.NATS.User != "herald" || c.NATS.Password != "from-file" || c.Redis.SentinelUsername != "sentinel-user" ||
		c.Redis.SentinelPassword != "sentinel-file" || c.Etcd.Username != "herald-admin" || c.Etcd.Password != "etcd-file" {
		t.Fatalf("from file: %+v %+v %q %q", c.NATS, c.Etcd, c.Redis.SentinelUsername, c.Redis.SentinelPassword)
	}
	t.Setenv("HERALD_NATS_PASSWORD", "from-env")
	t.Setenv("HERALD_REDIS_SENTINEL_PASSWORD", "sentinel-env")
	if c := parse(t, "--config", file); c.NATS.Password != "from-env" || c.Redis.SentinelPassword != "sentinel-env" {
		t.Fatalf("environment did not override the file: %q %q", c.NATS.Password, c.Redis.SentinelPassword)
	}
}

// TestRun ensures herald-admin serves against a real etcd and stops when its context ends.
func TestRun(t *testing.T) {
	c := parse(t, "--addr", "127.0.0.1:0", "--etcd-endpoints", testserver.Etcd(t), "--admin-token", "t")
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

// serve runs herald-admin serve with c until the test ends, and points the
// client commands at it (HERALD_ADMIN_SERVER).
func serve(t *testing.T, c serveCmd) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	servers := make(chan *admin.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, c, slog.New(slog.DiscardHandler), func(s *admin.Server) { servers <- s })
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case srv := <-servers:
		t.Setenv("HERALD_ADMIN_SERVER", srv.Addr())
	case err := <-done:
		done <- err
		t.Fatalf("herald-admin serve: %v", err)
	}
}

// TestClientCommands ensures the client commands create a tenant and a key with capabilities (printing the token once), list and revoke it, against a served API and with the operator token from the environment.
func TestClientCommands(t *testing.T) {
	c := parse(t, "serve", "--addr", "127.0.0.1:0", "--etcd-endpoints", testserver.Etcd(t), "--admin-token", "op-token")
	serve(t, c)

	if _, err := command(t, "tenant", "create", "acme"); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Fatalf("without a token: %v", err)
	}
	t.Setenv("HERALD_ADMIN_TOKEN", "op-token")
	out, err := command(t, "tenant", "create", "acme", "--name", "ACME", "--max-connections", "5")
	if err != nil || !strings.Contains(out, "acme") || !strings.Contains(out, "ACME") {
		t.Fatalf("tenant create: %v\n%s", err, out)
	}
	out, err = command(t, "key", "create", "acme", "--capability", "publish:sensors/#", "-c", "subscribe,history:alerts/+")
	if err != nil {
		t.Fatalf("key create: %v\n%s", err, out)
	}
	token := regexp.MustCompile(`token \(shown once\): (hk_\S+)`).FindStringSubmatch(out)
	if token == nil || !strings.Contains(out, "publish:sensors/#") || !strings.Contains(out, "subscribe,history:alerts/+") {
		t.Fatalf("key create printed:\n%s", out)
	}
	id := strings.Split(token[1], "_")[1]
	if out, err = command(t, "key", "list", "acme", "-o", "json"); err != nil || !strings.Contains(out, id) {
		t.Fatalf("key list: %v\n%s", err, out)
	}
	if _, err := command(t, "key", "create", "acme", "-c", "publish:a/#/b"); err == nil {
		t.Fatal("invalid capability accepted")
	}
	if _, err := command(t, "tenant", "update", "acme", "--max-connections", "7"); err != nil {
		t.Fatal(err)
	}
	if out, err = command(t, "tenant", "list"); err != nil || !strings.Contains(out, "7") {
		t.Fatalf("tenant list: %v\n%s", err, out)
	}
	if _, err := command(t, "key", "revoke", "acme", id); err != nil {
		t.Fatal(err)
	}
	if out, _ = command(t, "key", "list", "acme"); strings.Contains(out, id) {
		t.Fatalf("revoked key listed:\n%s", out)
	}
	if out, err = command(t, "admin-key", "create", "--tenant", "acme"); err != nil || !strings.Contains(out, "hak_") {
		t.Fatalf("admin-key create: %v\n%s", err, out)
	}
	if out, err = command(t, "token"); err != nil || !strings.Contains(out, "$argon2id$") {
		t.Fatalf("token: %v\n%s", err, out)
	}
}

// TestEverySettingReachable ensures every setting of herald-admin serve —
// admin.Config, the operator's credential and the wiring's — is a flag
// with an environment variable, and so a YAML key.
func TestEverySettingReachable(t *testing.T) {
	var c cli
	p, err := parser(&c)
	if err != nil {
		t.Fatal(err)
	}
	var serve *kong.Node
	for _, n := range p.Model.Children {
		if n.Name == "serve" {
			serve = n
		}
	}
	if serve == nil {
		t.Fatal("no serve command")
	}
	if miss := config.Unreachable(serve, c.Serve); len(miss) > 0 {
		t.Errorf("not reachable from flags, environment and YAML: %v", miss)
	}
}

// TestClientCommandsOverTLS ensures herald-admin serve takes its
// certificate and client CAs from its flags and environment, and the
// client commands reach it over mutual TLS with --tls-ca, --tls-cert and
// --tls-key, while a plain-text client, or one without a certificate,
// gets nothing.
func TestClientCommandsOverTLS(t *testing.T) {
	pki := testserver.NewPKI(t)
	t.Setenv("HERALD_ADMIN_TLS_CLIENT_CA", pki.CA)
	c := parse(t, "serve", "--addr", "127.0.0.1:0", "--etcd-endpoints", testserver.Etcd(t), "--admin-token", "op-token",
		"--tls-cert", pki.ServerCert, "--tls-key", pki.ServerKey)
	serve(t, c)
	t.Setenv("HERALD_ADMIN_TOKEN", "op-token")

	if _, err := command(t, "tenant", "list", "--timeout", "3s"); err == nil {
		t.Fatal("a plain-text client listed tenants")
	}
	if _, err := command(t, "tenant", "list", "--timeout", "3s", "--tls-ca", pki.CA); err == nil {
		t.Fatal("a client without a certificate listed tenants")
	}
	out, err := command(t, "tenant", "create", "acme", "--tls-ca", pki.CA, "--tls-cert", pki.ClientCert, "--tls-key", pki.ClientKey)
	if err != nil || !strings.Contains(out, "acme") {
		t.Fatalf("tenant create over mutual TLS: %v\n%s", err, out)
	}
}
