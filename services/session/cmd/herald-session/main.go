// Command herald-session runs Herald's session service in cluster mode: it
// consumes every tenant stream of an external NATS JetStream and keeps
// retained messages and replay buffers in Redis (standalone or Cluster), or
// in a local bbolt file with --store=embedded.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/config"
	"github.com/heraldmq/herald/pkg/ops"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/tlsconf"
	"github.com/heraldmq/herald/pkg/version"
	"github.com/heraldmq/herald/services/session"
	"github.com/nats-io/nats.go"
)

// cli is the command's configuration, from flags, the environment
// (HERALD_*) and the YAML file alike (keys are the flag names). The
// service's own settings are session.Config, the struct the service reads;
// the rest wires it to NATS and the store.
type cli struct {
	Version    kong.VersionFlag      `help:"Print the version, the commit and the Go version it was built from, then exit."`
	Config     kong.ConfigFlag       `help:"YAML configuration file (keys are the flag names)." type:"path" placeholder:"FILE"`
	Session    session.Config        `embed:""`
	NATSURL    string                `name:"nats-url" help:"NATS server URL(s), comma-separated." default:"nats://127.0.0.1:4222" env:"HERALD_NATS_URL"`
	Store      string                `help:"Where derived state lives: redis, or embedded (a bbolt file, single process only)." default:"redis" enum:"redis,embedded" env:"HERALD_STORE"`
	RedisAddrs []string              `help:"Redis address(es); several mean Redis Cluster." default:"127.0.0.1:6379" env:"HERALD_REDIS_ADDRS"`
	Redis      store.RedisConnection `embed:""`
	StorePath  string                `help:"bbolt file of --store=embedded." default:"./data/session.db" type:"path" env:"HERALD_STORE_PATH"`
	OpsAddr    string                `help:"Ops listen address (/healthz, /readyz, /metrics, pprof)." default:"127.0.0.1:9092" env:"HERALD_OPS_ADDR"`
	OpsTLS     tlsconf.Files         `embed:"" prefix:"ops-tls-" envprefix:"HERALD_OPS_"`
	LogFormat  string                `help:"Log format: json or text." default:"json" enum:"json,text" env:"HERALD_LOG_FORMAT"`
	LogLevel   string                `help:"Lowest level logged: debug, info, warn or error." default:"info" enum:"debug,info,warn,error" env:"HERALD_LOG_LEVEL"`
	Backbone   backbone.Config       `embed:""`
	Telemetry  telemetry.Flags       `embed:""`

	// NATS credentials apart from --nats-url: --nats-user, --nats-password.
	NATS backbone.Credentials `embed:""`
}

func main() {
	var c cli
	kong.Parse(&c, kong.Name("herald-session"),
		kong.Description("Herald session service: the single writer of retained messages and replay buffers."),
		kong.Configuration(config.YAML), kong.Vars{"version": version.String("herald-session")})
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "herald-session:", err)
		os.Exit(1)
	}
}

func run(c cli) error {
	log := ops.NewLogger(os.Stderr, c.LogFormat, c.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tel, err := c.Telemetry.Setup(ctx, "herald-session", c.Session.ReplicaID)
	if err != nil {
		return err
	}
	defer tel.Close()
	log = telemetry.NewLogger(log)
	p := tel.Providers()

	cfg := c.Session
	cfg.Telemetry = p
	if err := cfg.Validate(); err != nil {
		return err
	}

	opsTLS, err := c.OpsTLS.Server(tls.RequireAndVerifyClientCert, tls.NoClientCert)
	if err != nil {
		return fmt.Errorf("ops %w", err)
	}
	o := ops.New()
	o.Handle("GET /metrics", tel.MetricsHandler())
	nc, err := backbone.Connect(c.NATSURL, "herald-session", func(_ *nats.Conn, _ *nats.Subscription, err error) {
		log.Warn("nats", "err", err)
	}, c.NATS.Options()...)
	if err != nil {
		return err
	}
	defer nc.Close()
	o.AddCheck("nats", backbone.Connected(nc))
	bb, err := backbone.New(nc, c.Backbone, backbone.WithTelemetry(p))
	if err != nil {
		return err
	}

	var st store.Store
	switch c.Store {
	case "embedded":
		e, err := store.OpenEmbedded(c.StorePath)
		if err != nil {
			return err
		}
		st = e
	default:
		rdb := c.Redis.Client(c.RedisAddrs)
		defer rdb.Close()
		rdb.AddHook(telemetry.RedisHook(p))
		o.AddCheck("redis", func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
		st = c.Redis.Store(rdb)
	}
	defer st.Close()

	svc, err := session.New(cfg, bb, bb.Bucket(cfg.LeaseBucket()), st, log)
	if err != nil {
		return err
	}
	// The service's counters, as JSON, next to the health checks (until the
	// OpenTelemetry work exports them as metrics).
	o.Handle("/stats", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			session.Stats
			Owned []string
		}{svc.Stats(), svc.Owned()})
	}))
	o.AddCheck("session", func(context.Context) error {
		if !svc.Ready() {
			return fmt.Errorf("session: tenants not listed yet")
		}
		return nil
	})
	opsErr := make(chan error, 1)
	go func() {
		err := o.ServeTLS(ctx, c.OpsAddr, opsTLS)
		if err != nil {
			stop() // without its ops port the service cannot be probed: stop
		}
		opsErr <- err
	}()

	log.Info("herald-session started", "nats", backbone.Redacted(c.NATSURL), "store", c.Store, "ops", c.OpsAddr, "replica", cfg.WithDefaults().ReplicaID)
	err = svc.Run(ctx)
	stop()
	if oerr := <-opsErr; err == nil {
		err = oerr
	}
	log.Info("herald-session stopped")
	return err
}
