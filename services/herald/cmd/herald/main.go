// Command herald runs all of Herald in one process with embedded NATS
// JetStream, etcd and session store: the embedded default of `make run`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/heraldmq/herald/pkg/config"
	"github.com/heraldmq/herald/pkg/ops"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/services/admin"
	"github.com/heraldmq/herald/services/edge"
	"github.com/heraldmq/herald/services/herald"
	"github.com/heraldmq/herald/services/session"
)

type cli struct {
	Config          kong.ConfigFlag `help:"YAML configuration file (keys are the flag names)." type:"path"`
	DataDir         string          `help:"Directory for all data (JetStream, etcd, session store)." default:"./data" env:"HERALD_DATA_DIR"`
	MQTTAddr        string          `name:"mqtt-addr" help:"MQTT/TCP listen address." default:"127.0.0.1:1883" env:"HERALD_MQTT_ADDR"`
	HTTPAddr        string          `name:"http-addr" help:"HTTP listen address (/sse, /ws, /mqtt, /publish)." default:"127.0.0.1:8080" env:"HERALD_HTTP_ADDR"`
	AdminAddr       string          `help:"Admin API listen address (REST and gRPC)." default:"127.0.0.1:8081" env:"HERALD_ADMIN_ADDR"`
	OpsAddr         string          `help:"Ops listen address (/healthz, /readyz, /metrics, pprof)." default:"127.0.0.1:8082" env:"HERALD_OPS_ADDR"`
	NATSAddr        string          `name:"nats-addr" help:"Let other processes reach the embedded NATS here (e.g. 127.0.0.1:4222), as user herald with the password in <data-dir>/nats-password. Empty: no listener." env:"HERALD_NATS_ADDR"`
	EtcdAddr        string          `help:"Let other processes reach the embedded etcd here (e.g. 127.0.0.1:2379), authentication on, as user root with the password in <data-dir>/etcd-password. Empty: no listener." env:"HERALD_ETCD_ADDR"`
	AnonymousTenant string          `help:"Tenant that clients without credentials land in; empty refuses them (and the admin API then needs --admin-token)." default:"dev" env:"HERALD_ANONYMOUS_TENANT"`
	AdminToken      string          `help:"Operator token for the admin API when not in development mode." env:"HERALD_ADMIN_TOKEN"`
	MaxConnections  int             `help:"Most client connections of the edge, all tenants; more are refused as server busy (0: no bound)." env:"HERALD_MAX_CONNECTIONS"`
	MemoryLimit     int64           `help:"Heap bytes past which new connections are refused as server busy (0: 0.8 of GOMEMLIMIT if set, else none)." env:"HERALD_MEMORY_LIMIT"`
	DrainTimeout    time.Duration   `name:"drain-timeout" help:"On SIGTERM or SIGINT the edge drains first: clients are asked to leave over the first half of this, then everything stops; a second signal stops at once." default:"20s" env:"HERALD_DRAIN_TIMEOUT"`
	HTTPReadHeader  time.Duration   `name:"http-read-header-timeout" help:"Bound on reading an HTTP request's headers." default:"10s" env:"HERALD_HTTP_READ_HEADER_TIMEOUT"`
	HTTPIdle        time.Duration   `name:"http-idle-timeout" help:"An HTTP keep-alive connection without a request for this long is closed." default:"60s" env:"HERALD_HTTP_IDLE_TIMEOUT"`
	HTTPBody        time.Duration   `name:"http-body-timeout" help:"Bound on reading a publish's body; slower is 408 and the connection closed." default:"30s" env:"HERALD_HTTP_BODY_TIMEOUT"`
	HTTPMaxUnauth   int             `name:"http-max-unauthenticated-per-source" help:"Most HTTP connections one source address (IPv6: /64) holds before one of their requests authenticated; more are closed at accept (-1: no bound)." default:"256" env:"HERALD_HTTP_MAX_UNAUTHENTICATED_PER_SOURCE"`
	JWKS            edge.JWKSFlags  `embed:"" prefix:"jwks-"`
	LogFormat       string          `help:"Log format: text or json." default:"text" enum:"json,text" env:"HERALD_LOG_FORMAT"`
	LogLevel        string          `help:"Log level." default:"info" env:"HERALD_LOG_LEVEL"`
	Telemetry       telemetry.Flags `embed:""`
}

func main() {
	var c cli
	kong.Parse(&c, kong.Name("herald"),
		kong.Description("Herald in one process: edge, session service and admin over embedded NATS JetStream, etcd and store."),
		kong.Configuration(config.YAML))
	log := telemetry.NewLogger(ops.NewLogger(os.Stderr, c.LogFormat, c.LogLevel))
	if c.AnonymousTenant != "" {
		banner := strings.Repeat("!", 72)
		fmt.Fprintf(os.Stderr, "%s\n!! DEVELOPMENT MODE: clients WITHOUT CREDENTIALS are admitted into tenant %q.\n!! Anyone who can reach %s or %s can publish and subscribe there,\n!! and the admin API on %s answers WITHOUT CREDENTIALS.\n!! Set --anonymous-tenant='' (HERALD_ANONYMOUS_TENANT=) to require credentials.\n%s\n",
			banner, c.AnonymousTenant, c.MQTTAddr, c.HTTPAddr, c.AdminAddr, banner)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts the drain; a second one ends the process at
	// once (stop gives the signals their default action back).
	context.AfterFunc(ctx, stop)
	tel, err := c.Telemetry.Setup(ctx, "herald", "")
	if err != nil {
		log.Error("telemetry", "err", err)
		os.Exit(1)
	}
	cfg := herald.Config{
		Telemetry: tel,
		DataDir:   c.DataDir,
		NATSAddr:  c.NATSAddr,
		EtcdAddr:  c.EtcdAddr,
		OpsAddr:   c.OpsAddr,
		Edge: edge.Config{ID: "herald", MQTTAddr: c.MQTTAddr, HTTPAddr: c.HTTPAddr, AnonymousTenant: c.AnonymousTenant,
			Shed:  edge.ShedConfig{MaxConnections: c.MaxConnections, MemoryLimit: c.MemoryLimit},
			Drain: edge.DrainConfig{Timeout: c.DrainTimeout},
			HTTP: edge.HTTPConfig{ReadHeaderTimeout: c.HTTPReadHeader, IdleTimeout: c.HTTPIdle, BodyTimeout: c.HTTPBody,
				MaxUnauthenticatedPerSource: c.HTTPMaxUnauth},
			JWKS: c.JWKS.Config()},
		// In development mode the admin API answers without a credential,
		// as the banner says; otherwise it needs the operator token.
		Admin:   admin.Config{Addr: c.AdminAddr, Insecure: c.AnonymousTenant != "", AdminToken: c.AdminToken},
		Session: session.Config{},
	}
	err = herald.Run(ctx, cfg, log)
	_ = tel.Close()
	if err != nil {
		log.Error("herald stopped", "err", err)
		os.Exit(1)
	}
	log.Info("herald stopped")
}
