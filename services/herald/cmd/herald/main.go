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

	"github.com/alecthomas/kong"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/config"
	"github.com/heraldmq/herald/pkg/ops"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/tlsconf"
	"github.com/heraldmq/herald/pkg/version"
	"github.com/heraldmq/herald/services/admin"
	"github.com/heraldmq/herald/services/edge"
	"github.com/heraldmq/herald/services/herald"
	"github.com/heraldmq/herald/services/session"
)

// cli is the command's configuration, from flags, the environment
// (HERALD_*) and the YAML file alike (keys are the flag names). The
// services' settings are the structs they read — edge.Config,
// session.Config and admin.Config (under the prefix "admin-") — the same
// as the cluster commands herald-edge, herald-session and herald-admin
// take; the rest is the embedded default's own.
type cli struct {
	Version  kong.VersionFlag `help:"Print the version, the commit and the Go version it was built from, then exit."`
	Config   kong.ConfigFlag  `help:"YAML configuration file (keys are the flag names)." type:"path" placeholder:"FILE"`
	DataDir  string           `help:"Directory for all data (JetStream, etcd, session store)." default:"./data" env:"HERALD_DATA_DIR"`
	OpsAddr  string           `help:"Ops listen address (/healthz, /readyz, /metrics, pprof)." default:"127.0.0.1:8082" env:"HERALD_OPS_ADDR"`
	NATSAddr string           `name:"nats-addr" placeholder:"ADDR" help:"Let other processes reach the embedded NATS here (e.g. 127.0.0.1:4222), as user herald with the password in <data-dir>/nats-password. Empty: no listener." env:"HERALD_NATS_ADDR"`
	EtcdAddr string           `placeholder:"ADDR" help:"Let other processes reach the embedded etcd here (e.g. 127.0.0.1:2379), authentication on, as user root with the password in <data-dir>/etcd-password. Empty: no listener." env:"HERALD_ETCD_ADDR"`
	// Each listener of the process takes a certificate: the edge's and the
	// admin API's are in their configs (--tls-*, --admin-tls-*).
	OpsTLS    tlsconf.Files        `embed:"" prefix:"ops-tls-" envprefix:"HERALD_OPS_"`
	NATSTLS   tlsconf.Files        `embed:"" prefix:"nats-tls-" envprefix:"HERALD_NATS_"`
	EtcdTLS   tlsconf.CertFiles    `embed:"" prefix:"etcd-tls-" envprefix:"HERALD_ETCD_"`
	Backbone  backbone.Config      `embed:""`
	Edge      edge.Config          `embed:""`
	Session   session.Config       `embed:""`
	Admin     admin.Config         `embed:"" prefix:"admin-"`
	Operator  admin.OperatorConfig `embed:""`
	LogFormat string               `help:"Log format: text or json." default:"text" enum:"json,text" env:"HERALD_LOG_FORMAT"`
	LogLevel  string               `help:"Lowest level logged: debug, info, warn or error." default:"info" enum:"debug,info,warn,error" env:"HERALD_LOG_LEVEL"`
	Telemetry telemetry.Flags      `embed:""`
}

func main() {
	var c cli
	kong.Parse(&c, kong.Name("herald"),
		kong.Description("Herald in one process: edge, session service and admin over embedded NATS JetStream, etcd and store."),
		kong.Configuration(config.YAML),
		// Development by default: clients without credentials land in dev
		// (--anonymous-tenant='' requires them).
		kong.Vars{"anonymous_tenant": "dev", "version": version.String("herald")})
	log := telemetry.NewLogger(ops.NewLogger(os.Stderr, c.LogFormat, c.LogLevel))
	ec := c.Edge.WithDefaults()
	if ec.AnonymousTenant != "" {
		banner := strings.Repeat("!", 72)
		reach := ec.MQTTAddr + " or " + ec.HTTPAddr
		if ec.WebTransport.Addr != "" {
			reach = ec.MQTTAddr + ", " + ec.HTTPAddr + " or " + ec.WebTransport.Addr + " (WebTransport)"
		}
		fmt.Fprintf(os.Stderr, "%s\n!! DEVELOPMENT MODE: clients WITHOUT CREDENTIALS are admitted into tenant %q.\n!! Anyone who can reach %s can publish and subscribe there,\n!! and the admin API on %s answers WITHOUT CREDENTIALS.\n!! Set --anonymous-tenant='' (HERALD_ANONYMOUS_TENANT=) to require credentials.\n%s\n",
			banner, ec.AnonymousTenant, reach, c.Admin.Addr, banner)
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
		NATSTLS:   c.NATSTLS,
		EtcdTLS:   c.EtcdTLS,
		OpsTLS:    c.OpsTLS,
		Backbone:  c.Backbone,
		Edge:      c.Edge,
		Admin:     c.Admin,
		Session:   c.Session,
	}
	if cfg.Edge.ID == "" {
		cfg.Edge.ID = "herald"
	}
	cfg.Admin.OperatorConfig = c.Operator
	// In development mode the admin API answers without a credential, as
	// the banner says; otherwise it needs the operator token.
	cfg.Admin.Insecure = cfg.Admin.Insecure || c.Edge.AnonymousTenant != ""
	v := version.Get()
	log.Info("herald starting", "version", v.Version, "commit", v.Commit, "data_dir", c.DataDir,
		"ops", c.OpsAddr, "ops_tls", c.OpsTLS.Enabled())
	err = herald.Run(ctx, cfg, log)
	_ = tel.Close()
	if err != nil {
		log.Error("herald stopped", "err", err)
		os.Exit(1)
	}
	log.Info("herald stopped")
}
