package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/heraldmq/herald/pkg/config"
)

// TestEverySettingReachable ensures every setting of herald-edge — the
// edge's own (edge.Config and the transports' configs under it) and the
// wiring's — is a flag with an environment variable, and so a YAML key.
func TestEverySettingReachable(t *testing.T) {
	var c cli
	p, err := kong.New(&c, kong.Vars{"anonymous_tenant": ""})
	if err != nil {
		t.Fatal(err)
	}
	if miss := config.Unreachable(p.Model.Node, c); len(miss) > 0 {
		t.Errorf("not reachable from flags, environment and YAML: %v", miss)
	}
}

// TestOneConfigSource ensures a setting of a transport reaches the
// edge.Config the edge runs with from the YAML file (nested keys), the
// environment and a flag, the flag winning.
func TestOneConfigSource(t *testing.T) {
	file := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(file, []byte("ws:\n  queue_size: 9\n  slow_consumer: drop\nmqtt:\n  session_lease: 7s\ncors:\n  origins: [https://a.example]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_SSE_HEARTBEAT", "4s")
	var c cli
	p, err := kong.New(&c, kong.Configuration(config.YAML), kong.Vars{"anonymous_tenant": ""})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse([]string{"--config", file, "--ws-queue-size", "11"}); err != nil {
		t.Fatal(err)
	}
	e := c.Edge
	if e.WS.QueueSize != 11 || e.WS.SlowConsumer != "drop" || e.MQTT.SessionLease != 7*time.Second ||
		e.SSE.Heartbeat != 4*time.Second || !slices.Equal(e.CORS.AllowedOrigins, []string{"https://a.example"}) {
		t.Fatalf("edge config %+v %+v %+v %+v", e.WS, e.MQTT, e.SSE, e.CORS)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
}
