package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/alecthomas/kong"
)

type testCLI struct {
	Config kong.ConfigFlag `help:"config file"`
	MQTT   struct {
		Addr string `default:"127.0.0.1:1883" env:"T_MQTT_ADDR"`
	} `embed:"" prefix:"mqtt-"`
	DataDir string `default:"./data" env:"T_DATA_DIR"`
	Dev     bool
}

// TestPrecedence ensures flags beat environment, which beats the file, which beats defaults.
func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("mqtt:\n  addr: 1.1.1.1:1\ndata-dir: /file\ndev: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(args []string, env map[string]string) testCLI {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		var c testCLI
		p, err := kong.New(&c, kong.Configuration(YAML))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Parse(args); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := parse([]string{"--config", file}, nil)
	if c.MQTT.Addr != "1.1.1.1:1" || c.DataDir != "/file" || !c.Dev {
		t.Fatalf("file not applied: %+v", c)
	}
	c = parse([]string{"--config", file}, map[string]string{"T_DATA_DIR": "/env"})
	if c.DataDir != "/env" {
		t.Fatalf("env not above file: %+v", c)
	}
	c = parse([]string{"--config", file, "--data-dir", "/flag"}, nil)
	if c.DataDir != "/flag" {
		t.Fatalf("flag not above env: %+v", c)
	}
	c = parse(nil, nil)
	if c.MQTT.Addr != "127.0.0.1:1883" {
		t.Fatalf("default: %+v", c)
	}
}

// TestUnreachable ensures a flag without an environment variable and a
// field no flag sets are reported, and a fully reachable struct is not.
func TestUnreachable(t *testing.T) {
	type inner struct {
		QueueSize int `env:"T_Q"`
		Hidden    int `kong:"-"`
	}
	type ok struct {
		Config kong.ConfigFlag
		Inner  inner  `embed:"" prefix:"in-"`
		Addr   string `name:"addr" env:"T_ADDR"`
	}
	var c ok
	p, err := kong.New(&c)
	if err != nil {
		t.Fatal(err)
	}
	if got := Unreachable(p.Model.Node, c); len(got) != 0 {
		t.Fatalf("reachable struct reported: %v", got)
	}
	type bad struct {
		Inner inner `embed:"" prefix:"in-"`
		Dev   bool
	}
	var b bad
	p, err = kong.New(&b)
	if err != nil {
		t.Fatal(err)
	}
	if got := Unreachable(p.Model.Node, b); len(got) != 1 || got[0] != "--dev: no environment variable" {
		t.Fatalf("got %v", got)
	}
}
