// Command herald-admin serves Herald's administration API (gRPC and REST on
// one port) over the tenants stored in etcd, and is a small client of that
// API for the shell:
//
//	herald-admin --etcd-endpoints 127.0.0.1:2379            # serve (the default command)
//	herald-admin token                                       # a new operator token and its hash
//	herald-admin tenant create acme
//	herald-admin key create acme --capability 'publish,subscribe:sensors/#'
//
// The client commands talk gRPC to --server with the token in
// HERALD_ADMIN_TOKEN (or --token).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/config"
	"github.com/heraldmq/herald/pkg/ops"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/tlsconf"
	"github.com/heraldmq/herald/pkg/version"
	"github.com/heraldmq/herald/services/admin"
	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// serveCmd is the server's configuration: flags, environment and the YAML
// file (keys are the flag names: "addr", "etcd: {endpoints, prefix}", ...).
type serveCmd struct {
	Admin    admin.Config         `embed:""`
	Operator admin.OperatorConfig `embed:""`
	Etcd     struct {
		Endpoints []string `default:"127.0.0.1:2379" env:"HERALD_ETCD_ENDPOINTS" help:"etcd client endpoints (host:port), comma-separated."`
		Prefix    string   `default:"/herald/" env:"HERALD_ETCD_PREFIX" help:"Key prefix of Herald's data in etcd; ends with /."`
		Username  string   `env:"HERALD_ETCD_USERNAME" placeholder:"USER" help:"etcd user name (https:// endpoints speak TLS)."`
		Password  string   `env:"HERALD_ETCD_PASSWORD" placeholder:"PASSWORD" help:"etcd password (prefer the environment variable to the flag)."`
	} `embed:"" prefix:"etcd-"`
	// The data plane, for the live-state calls; each is optional (the calls
	// needing a missing one answer UNIMPLEMENTED).
	NATSURL          string                `name:"nats-url" env:"HERALD_NATS_URL" placeholder:"URL" help:"NATS server URL(s), comma-separated: enables server-side publish, clearing retained messages and listing or kicking connections."`
	RedisAddrs       []string              `name:"redis-addrs" env:"HERALD_REDIS_ADDRS" placeholder:"ADDR" help:"Redis address(es) of the session store (several mean Redis Cluster): enables reading retained messages and sessions."`
	Redis            store.RedisConnection `embed:""`
	BootstrapTenants []string              `env:"HERALD_BOOTSTRAP_TENANTS" name:"bootstrap-tenant" placeholder:"TENANT" help:"Create these tenants at start if they do not exist (e.g. the local cluster's dev tenant)."`
	LogFormat        string                `default:"json" enum:"text,json" env:"HERALD_LOG_FORMAT" help:"Log format: text or json."`
	LogLevel         string                `default:"info" enum:"debug,info,warn,error" env:"HERALD_LOG_LEVEL" help:"Lowest level logged: debug, info, warn or error."`
	OpsAddr          string                `name:"ops-addr" env:"HERALD_OPS_ADDR" placeholder:"ADDR" help:"Ops listen address serving /metrics, /healthz and pprof (e.g. 127.0.0.1:9093); empty: none."`
	OpsTLS           tlsconf.Files         `embed:"" prefix:"ops-tls-" envprefix:"HERALD_OPS_"`
	Backbone         backbone.Config       `embed:""`
	Telemetry        telemetry.Flags       `embed:""`

	// NATS credentials apart from --nats-url: --nats-user, --nats-password.
	NATS backbone.Credentials `embed:""`
}

// cli is every command.
type cli struct {
	Version kong.VersionFlag `help:"Print the version, the commit and the Go version it was built from, then exit."`
	Config  kong.ConfigFlag  `help:"YAML configuration file; environment and flags override it." placeholder:"FILE"`

	Serve    serveCmd    `cmd:"" default:"withargs" help:"Serve the admin API (the default command)."`
	Token    tokenCmd    `cmd:"" help:"Print a new random operator token and its argon2id hash for --admin-token-hash."`
	Tenant   tenantCmd   `cmd:"" help:"Manage tenants through the admin API."`
	Key      keyCmd      `cmd:"" help:"Manage a tenant's API keys through the admin API."`
	AdminKey adminKeyCmd `cmd:"" name:"admin-key" help:"Manage admin API keys through the admin API (operator only)."`
}

func parser(c *cli, opts ...kong.Option) (*kong.Kong, error) {
	return kong.New(c, append([]kong.Option{
		kong.Name("herald-admin"),
		kong.Description("Herald's administration API: gRPC and REST (JSON) on one port; and a client of it."),
		kong.Configuration(config.YAML),
		kong.Vars{"version": version.String("herald-admin")},
	}, opts...)...)
}

func main() {
	var c cli
	p, err := parser(&c)
	if err != nil {
		panic(err)
	}
	kctx, err := p.Parse(os.Args[1:])
	p.FatalIfErrorf(err)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if kctx.Command() == "serve" {
		log := ops.NewLogger(os.Stderr, c.Serve.LogFormat, c.Serve.LogLevel)
		if err := run(ctx, c.Serve, log, nil); err != nil {
			log.Error("herald-admin failed", "err", err)
			os.Exit(1)
		}
		return
	}
	kctx.BindTo(ctx, (*context.Context)(nil))
	kctx.Bind(output{w: os.Stdout})
	p.FatalIfErrorf(kctx.Run())
}

// run serves the admin API until ctx is done. started, if not nil, gets the
// server before it runs, so that tests can learn its address.
func run(ctx context.Context, c serveCmd, log *slog.Logger, started func(*admin.Server)) error {
	tel, err := c.Telemetry.Setup(ctx, "herald-admin", "")
	if err != nil {
		return err
	}
	defer tel.Close()
	log = telemetry.NewLogger(log)
	p := tel.Providers()
	if c.OpsAddr != "" {
		opsTLS, err := c.OpsTLS.Server(tls.RequireAndVerifyClientCert, tls.NoClientCert)
		if err != nil {
			return fmt.Errorf("ops %w", err)
		}
		o := ops.New()
		o.Handle("GET /metrics", tel.MetricsHandler())
		opsCtx, opsStop := context.WithCancel(ctx)
		opsErr := make(chan error, 1)
		go func() { opsErr <- o.ServeTLS(opsCtx, c.OpsAddr, opsTLS) }()
		defer func() {
			opsStop()
			if err := <-opsErr; err != nil {
				log.Warn("ops server failed", "err", err)
			}
		}()
	}
	etcd, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Etcd.Endpoints,
		DialTimeout: 5 * time.Second,
		Username:    c.Etcd.Username,
		Password:    c.Etcd.Password,
		// Failures reach us as errors; the client's own zap logs would be a
		// second, differently formatted stream.
		Logger:      zap.NewNop(),
		DialOptions: telemetry.EtcdDialOptions(p),
	})
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()
	src, err := tenant.NewEtcd(etcd, tenant.EtcdConfig{Prefix: c.Etcd.Prefix}, log)
	if err != nil {
		return err
	}
	for _, id := range c.BootstrapTenants {
		err := src.Ensure(ctx, tenant.Tenant{ID: id, DisplayName: "Bootstrapped tenant " + id})
		if errors.Is(err, tenant.ErrDeleting) {
			// The server below finishes the deletion; the next start
			// creates the tenant anew.
			log.Warn("bootstrap tenant is still being deleted; it is created again at the next start", "tenant", id)
			continue
		}
		if err != nil {
			return fmt.Errorf("bootstrap tenant %s: %w", id, err)
		}
	}
	opts := []admin.Option{admin.WithTelemetry(p)}
	if len(c.RedisAddrs) > 0 {
		rdb := c.Redis.Client(c.RedisAddrs)
		defer rdb.Close()
		rdb.AddHook(telemetry.RedisHook(p))
		opts = append(opts, admin.WithStore(c.Redis.Store(rdb)))
	}
	if c.NATSURL != "" {
		nc, err := backbone.Connect(c.NATSURL, "herald-admin", func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("nats", "err", err)
		}, c.NATS.Options()...)
		if err != nil {
			return err
		}
		defer nc.Close()
		bb, err := backbone.New(nc, c.Backbone, backbone.WithTelemetry(p))
		if err != nil {
			return err
		}
		opts = append(opts, admin.WithBackbone(bb))
	}
	cfg := c.Admin
	cfg.OperatorConfig = c.Operator
	srv, err := admin.New(cfg, src, log, opts...)
	if err != nil {
		return err
	}
	if started != nil {
		started(srv)
	}
	return srv.Run(ctx)
}
