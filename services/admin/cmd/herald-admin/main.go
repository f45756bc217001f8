// Command herald-admin serves Herald's administration API (gRPC and REST on
// one port) over the tenants stored in etcd.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/heraldmq/herald/pkg/config"
	"github.com/heraldmq/herald/pkg/ops"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/services/admin"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// cli is herald-admin's configuration: flags, environment and the YAML file
// (keys are the flag names: "addr", "etcd: {endpoints, prefix}", ...).
type cli struct {
	Config kong.ConfigFlag `help:"YAML configuration file; environment and flags override it." placeholder:"FILE"`
	Admin  admin.Config    `embed:""`
	Etcd   struct {
		Endpoints []string `default:"127.0.0.1:2379" env:"HERALD_ETCD_ENDPOINTS" help:"etcd client endpoints (host:port), comma-separated."`
		Prefix    string   `default:"/herald/" env:"HERALD_ETCD_PREFIX" help:"Key prefix of Herald's data in etcd; ends with /."`
	} `embed:"" prefix:"etcd-"`
	BootstrapTenants []string `env:"HERALD_BOOTSTRAP_TENANTS" name:"bootstrap-tenant" help:"Create these tenants at start if they do not exist (e.g. the local cluster's dev tenant)."`
	LogFormat        string   `default:"text" enum:"text,json" env:"HERALD_LOG_FORMAT" help:"Log format: text or json."`
	LogLevel         string   `default:"info" enum:"debug,info,warn,error" env:"HERALD_LOG_LEVEL" help:"Lowest level logged: debug, info, warn or error."`
}

func parser(c *cli, opts ...kong.Option) (*kong.Kong, error) {
	return kong.New(c, append([]kong.Option{
		kong.Name("herald-admin"),
		kong.Description("Herald's administration API: gRPC and REST (JSON) on one port."),
		kong.Configuration(config.YAML),
	}, opts...)...)
}

func main() {
	var c cli
	p, err := parser(&c)
	if err != nil {
		panic(err)
	}
	_, err = p.Parse(os.Args[1:])
	p.FatalIfErrorf(err)
	log := ops.NewLogger(os.Stderr, c.LogFormat, c.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log, nil); err != nil {
		log.Error("herald-admin failed", "err", err)
		os.Exit(1)
	}
}

// run serves the admin API until ctx is done. started, if not nil, gets the
// server before it runs, so that tests can learn its address.
func run(ctx context.Context, c cli, log *slog.Logger, started func(*admin.Server)) error {
	etcd, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Etcd.Endpoints,
		DialTimeout: 5 * time.Second,
		// Failures reach us as errors; the client's own zap logs would be a
		// second, differently formatted stream.
		Logger: zap.NewNop(),
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
		if err := src.Ensure(ctx, tenant.Tenant{ID: id, DisplayName: "Bootstrapped tenant " + id}); err != nil {
			return fmt.Errorf("bootstrap tenant %s: %w", id, err)
		}
	}
	srv, err := admin.New(c.Admin, src, log)
	if err != nil {
		return err
	}
	if started != nil {
		started(srv)
	}
	return srv.Run(ctx)
}
