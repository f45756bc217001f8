package main

import (
	"testing"

	"github.com/alecthomas/kong"
	"github.com/heraldmq/herald/pkg/config"
)

// TestEverySettingReachable ensures every setting of herald-session — the
// service's (session.Config, its store limits) and the wiring's — is a
// flag with an environment variable, and so a YAML key.
func TestEverySettingReachable(t *testing.T) {
	var c cli
	p, err := kong.New(&c)
	if err != nil {
		t.Fatal(err)
	}
	if miss := config.Unreachable(p.Model.Node, c); len(miss) > 0 {
		t.Errorf("not reachable from flags, environment and YAML: %v", miss)
	}
	if _, err := p.Parse([]string{"--replay-max-messages", "5", "--max-sessions", "3", "--poll-interval", "1s"}); err != nil {
		t.Fatal(err)
	}
	if l := c.Session.Limits; l.Replay.MaxMessages != 5 || l.Sessions != 3 || c.Session.PollInterval.Seconds() != 1 {
		t.Fatalf("session config %+v", c.Session)
	}
}
