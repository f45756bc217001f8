// Command herald-edge runs one Herald edge in cluster mode: MQTT, SSE,
// WebSocket and HTTP publish in front of an external NATS JetStream, reading
// retained messages and replay buffers from Redis.
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
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
	"github.com/heraldmq/herald/services/edge"
	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// cli is the command's configuration, from flags, the environment
// (HERALD_*) and the YAML file alike (keys are the flag names, nested maps
// joined with "-": "sse: {queue_size: 10}" is --sse-queue-size). The edge's
// own settings are edge.Config, the struct the edge reads; the rest wires
// the edge to NATS, Redis and etcd.
type cli struct {
	Version kong.VersionFlag `help:"Print the version, the commit and the Go version it was built from, then exit."`
	Config  kong.ConfigFlag  `help:"YAML configuration file (keys are the flag names)." type:"path" placeholder:"FILE"`
	Edge    edge.Config      `embed:""`

	NATSURL       string                `name:"nats-url" help:"NATS server URL(s), comma-separated." default:"nats://127.0.0.1:4222" env:"HERALD_NATS_URL"`
	RedisAddrs    []string              `help:"Redis address(es); several mean Redis Cluster." default:"127.0.0.1:6379" env:"HERALD_REDIS_ADDRS"`
	Redis         store.RedisConnection `embed:""`
	OpsAddr       string                `help:"Ops listen address (/healthz, /readyz, /metrics, pprof)." default:"127.0.0.1:9090" env:"HERALD_OPS_ADDR"`
	OpsTLS        tlsconf.Files         `embed:"" prefix:"ops-tls-" envprefix:"HERALD_OPS_"`
	EtcdEndpoints []string              `name:"etcd-endpoints" placeholder:"ADDR" help:"etcd endpoints holding tenants, credentials and limits: authenticated mode. Empty: no tenants (only --anonymous-tenant)." env:"HERALD_ETCD_ENDPOINTS"`
	EtcdPrefix    string                `name:"etcd-prefix" help:"etcd key prefix of Herald's tenants." default:"/herald/" env:"HERALD_ETCD_PREFIX"`
	EtcdUsername  string                `name:"etcd-username" placeholder:"USER" help:"etcd user name (https:// endpoints speak TLS)." env:"HERALD_ETCD_USERNAME"`
	EtcdPassword  string                `name:"etcd-password" placeholder:"PASSWORD" help:"etcd password (prefer the environment variable to the flag)." env:"HERALD_ETCD_PASSWORD"`
	LogFormat     string                `help:"Log format: json or text." default:"json" enum:"json,text" env:"HERALD_LOG_FORMAT"`
	LogLevel      string                `help:"Lowest level logged: debug, info, warn or error." default:"info" enum:"debug,info,warn,error" env:"HERALD_LOG_LEVEL"`
	Backbone      backbone.Config       `embed:""`
	Telemetry     telemetry.Flags       `embed:""`

	// NATS credentials apart from --nats-url: --nats-user, --nats-password.
	NATS backbone.Credentials `embed:""`
}

func main() {
	var c cli
	kong.Parse(&c, kong.Name("herald-edge"), kong.Description("Herald edge gateway."), kong.Configuration(config.YAML),
		kong.Vars{"anonymous_tenant": "", "version": version.String("herald-edge")})
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "herald-edge:", err)
		os.Exit(1)
	}
}

func run(c cli) error {
	log := ops.NewLogger(os.Stderr, c.LogFormat, c.LogLevel)
	// ctx ends on the first signal, which starts the drain; the ops server
	// and the backbone stay up until the edge has drained.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tel, err := c.Telemetry.Setup(ctx, "herald-edge", c.Edge.ID)
	if err != nil {
		return err
	}
	defer tel.Close()
	log = telemetry.NewLogger(log)
	p := tel.Providers()

	var srv atomic.Pointer[edge.Server]
	nc, err := backbone.Connect(c.NATSURL, "herald-edge", func(conn *nats.Conn, sub *nats.Subscription, err error) {
		if s := srv.Load(); s != nil {
			s.AsyncErrorHandler()(conn, sub, err)
		}
	}, c.NATS.Options()...)
	if err != nil {
		return err
	}
	defer nc.Close()
	bb, err := backbone.New(nc, c.Backbone, backbone.WithTelemetry(p))
	if err != nil {
		return err
	}
	rdb := c.Redis.Client(c.RedisAddrs)
	defer rdb.Close()
	rdb.AddHook(telemetry.RedisHook(p))
	st := c.Redis.Store(rdb)

	if c.Edge.AnonymousTenant != "" {
		log.Warn("ANONYMOUS CLIENTS ARE ADMITTED into tenant " + c.Edge.AnonymousTenant + ": for development only")
	}
	opts := []edge.Option{edge.WithTelemetry(p)}
	if len(c.EtcdEndpoints) > 0 {
		cli, err := clientv3.New(clientv3.Config{Endpoints: c.EtcdEndpoints, DialTimeout: 5 * time.Second,
			Username: c.EtcdUsername, Password: c.EtcdPassword, DialOptions: telemetry.EtcdDialOptions(p),
			// Failures reach the edge as errors, which it logs; the
			// client's own zap logs would be a second, differently
			// formatted stream (and log its cancelled calls at every
			// stop as errors).
			Logger: zap.NewNop()})
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		defer cli.Close()
		tenants, err := tenant.NewEtcd(cli, tenant.EtcdConfig{Prefix: c.EtcdPrefix}, log)
		if err != nil {
			return err
		}
		opts = append(opts, edge.WithTenants(tenants, rdb))
		log.Info("authenticated mode: tenants from etcd", "endpoints", strings.Join(c.EtcdEndpoints, ","), "prefix", c.EtcdPrefix)
	}
	s, err := edge.New(c.Edge, bb, st, store.NewEdgeWriter(st), log, opts...)
	if err != nil {
		return err
	}
	srv.Store(s)

	opsTLS, err := c.OpsTLS.Server(tls.RequireAndVerifyClientCert, tls.NoClientCert)
	if err != nil {
		return fmt.Errorf("ops %w", err)
	}
	o := ops.New()
	o.AddCheck("nats", backbone.Connected(nc))
	o.AddCheck("redis", func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
	o.AddCheck("edge", s.Ready)
	o.Handle("GET /metrics", tel.MetricsHandler())
	opsCtx, opsStop := context.WithCancel(context.Background())
	defer opsStop()
	opsErr := make(chan error, 1)
	go func() { opsErr <- o.ServeTLS(opsCtx, c.OpsAddr, opsTLS) }()

	// The first signal starts the drain; a second one ends the process at
	// once (stop gives the signals their default action back).
	context.AfterFunc(ctx, stop)
	err = s.RunDraining(ctx)
	opsStop()
	if oerr := <-opsErr; err == nil {
		err = oerr
	}
	return err
}
