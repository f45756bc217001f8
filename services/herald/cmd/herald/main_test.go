package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/config"
	"github.com/heraldmq/herald/services/admin"
	"github.com/heraldmq/herald/services/edge"
	"github.com/heraldmq/herald/services/session"
)

func parser(t *testing.T, c *cli) *kong.Kong {
	t.Helper()
	p, err := kong.New(c, kong.Configuration(config.YAML), kong.Vars{"anonymous_tenant": "dev"},
		kong.Exit(func(int) { t.Fatal("kong exited") }))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// flagsOf returns the flag names of a parser.
func flagsOf(p *kong.Kong) []string {
	var out []string
	for _, g := range p.Model.AllFlags(true) {
		for _, f := range g {
			out = append(out, f.Name)
		}
	}
	return out
}

// TestEverySettingReachable ensures every setting of the all-in-one is a
// flag with an environment variable (and so a YAML key), and that it
// takes every setting of the services it runs: the flags of edge.Config,
// session.Config and backbone.Config as herald-edge and herald-session
// spell them, admin.Config's under "admin-".
func TestEverySettingReachable(t *testing.T) {
	var c cli
	p := parser(t, &c)
	if miss := config.Unreachable(p.Model.Node, c); len(miss) > 0 {
		t.Errorf("not reachable from flags, environment and YAML: %v", miss)
	}
	have := flagsOf(p)
	var services struct {
		Backbone backbone.Config      `embed:""`
		Edge     edge.Config          `embed:""`
		Session  session.Config       `embed:""`
		Admin    admin.Config         `embed:"" prefix:"admin-"`
		Operator admin.OperatorConfig `embed:""`
	}
	sp, err := kong.New(&services, kong.Vars{"anonymous_tenant": ""})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flagsOf(sp) {
		if !slices.Contains(have, f) {
			t.Errorf("the all-in-one lacks --%s", f)
		}
	}
}

// TestCORSOrigins ensures the all-in-one's CORS origins reach the edge it
// runs from a flag, the environment and the YAML file alike (the edge's
// other settings take the same way, through the same struct).
func TestCORSOrigins(t *testing.T) {
	parse := func(args ...string) cli {
		t.Helper()
		var c cli
		if _, err := parser(t, &c).Parse(args); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := parse("--cors-origins", "https://app.example.com,https://*.example.org"); !slices.Equal(c.Edge.CORS.AllowedOrigins,
		[]string{"https://app.example.com", "https://*.example.org"}) {
		t.Errorf("flag: %v", c.Edge.CORS.AllowedOrigins)
	}
	file := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(file, []byte("cors:\n  origins: [https://yaml.example]\n  credentials: true\nsse:\n  queue_size: 7\nadmin:\n  addr: 127.0.0.1:9999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := parse("--config", file)
	if !slices.Equal(c.Edge.CORS.AllowedOrigins, []string{"https://yaml.example"}) || !c.Edge.CORS.AllowCredentials ||
		c.Edge.SSE.QueueSize != 7 || c.Admin.Addr != "127.0.0.1:9999" {
		t.Errorf("YAML: %+v %+v, admin %q", c.Edge.CORS, c.Edge.SSE, c.Admin.Addr)
	}
	t.Setenv("HERALD_CORS_ORIGINS", "https://env.example")
	t.Setenv("HERALD_SESSION_POLL_INTERVAL", "3s")
	if c := parse(); !slices.Equal(c.Edge.CORS.AllowedOrigins, []string{"https://env.example"}) || c.Session.PollInterval != 3*time.Second ||
		c.Edge.AnonymousTenant != "dev" {
		t.Errorf("environment: %v, poll %v, anonymous %q", c.Edge.CORS.AllowedOrigins, c.Session.PollInterval, c.Edge.AnonymousTenant)
	}
}
