// Package herald runs all of Herald in one process — the embedded default
// behind `make run`: an embedded NATS server with JetStream (the backbone), an
// embedded etcd (tenants), an embedded bbolt store (retained messages and
// replay buffers), and the edge, session service and admin API over them. The
// services are the same code as in cluster mode; only their dependencies are
// in-process, so nothing needs installing.
//
// The embedded NATS server and etcd listen on no socket unless asked to
// (Config.NATSAddr, Config.EtcdAddr): the services reach them in-process,
// and the only doors are the edge's, the admin API's and the ops port. A
// listener asked for requires the credentials Herald keeps in the data
// directory (mode 0600), never logged.
package herald

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/etcdserver"
	"github.com/heraldmq/herald/pkg/natsserver"
	"github.com/heraldmq/herald/pkg/ops"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/tlsconf"
	"github.com/heraldmq/herald/services/admin"
	"github.com/heraldmq/herald/services/edge"
	"github.com/heraldmq/herald/services/session"
	"github.com/nats-io/nats.go"
)

// Config configures the embedded default.
type Config struct {
	// DataDir holds everything the process keeps: nats/, etcd/, session.db
	// and the credentials of the listeners below. Made with mode 0700.
	DataDir string
	// NATSAddr, if set, lets other processes (tools looking at the
	// backbone, a second process attaching) reach the embedded NATS server
	// there, as NATSUser with the password in DataDir/NATSPasswordFile.
	// Empty (the default): no listener.
	NATSAddr string
	// EtcdAddr, if set, lets other processes reach the embedded etcd there,
	// with etcd's authentication on, as its root user with the password in
	// DataDir/EtcdPasswordFile. Empty (the default): no listener.
	EtcdAddr string
	// OpsAddr serves /healthz, /readyz and pprof.
	OpsAddr string
	// NATSTLS, EtcdTLS and OpsTLS, when their certificate is set, serve
	// the NATS listener, the etcd listener and the ops port over TLS only
	// (the edge's and the admin API's are Edge.TLS and Admin.TLS). Client
	// CAs require client certificates on NATS and ops; etcd's clients
	// authenticate by password, so EtcdTLS takes no client CAs.
	NATSTLS, OpsTLS tlsconf.Files
	EtcdTLS         tlsconf.CertFiles
	// Backbone configures the tenant streams on the embedded NATS.
	Backbone backbone.Config
	Edge     edge.Config
	Admin    admin.Config
	Session  session.Config
	// Telemetry, if set, is what every service records with; its metrics
	// are served at /metrics on OpsAddr.
	Telemetry *telemetry.Telemetry
}

// The credentials of the listeners Config asks for. Each password is made
// at random the first time its listener is asked for and kept, mode 0600,
// in the data directory, so that a process attaching again after a restart
// uses the same one.
const (
	NATSUser         = "herald"
	NATSPasswordFile = "nats-password"
	EtcdUser         = etcdserver.RootUser
	EtcdPasswordFile = "etcd-password"
)

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("herald: data dir is required")
	}
	var errs []error
	for _, l := range []struct {
		name  string
		files tlsconf.Files
	}{{"nats", c.NATSTLS}, {"etcd", c.EtcdTLS.Files()}, {"ops", c.OpsTLS}} {
		if err := l.files.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("herald: %s %w", l.name, err))
		}
	}
	if c.NATSTLS.Enabled() && c.NATSAddr == "" {
		errs = append(errs, errors.New("herald: nats tls needs the NATS listener (nats_addr)"))
	}
	if c.EtcdTLS.Files().Enabled() && c.EtcdAddr == "" {
		errs = append(errs, errors.New("herald: etcd tls needs the etcd listener (etcd_addr)"))
	}
	return errors.Join(append(errs, c.Backbone.Validate(), c.Edge.Validate(), c.Admin.Validate(), c.Session.Validate())...)
}

// Run starts everything and blocks until ctx is done, then stops it all in
// reverse order.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("herald: data dir: %w", err)
	}

	natsTLS, err := cfg.NATSTLS.Server(tls.RequireAndVerifyClientCert, tls.NoClientCert)
	if err != nil {
		return fmt.Errorf("herald: nats %w", err)
	}
	opsTLS, err := cfg.OpsTLS.Server(tls.RequireAndVerifyClientCert, tls.NoClientCert)
	if err != nil {
		return fmt.Errorf("herald: ops %w", err)
	}
	natsCfg := natsserver.Config{Addr: cfg.NATSAddr, StoreDir: filepath.Join(cfg.DataDir, "nats"), TLS: natsTLS}
	if cfg.NATSAddr != "" {
		pw, err := secret(filepath.Join(cfg.DataDir, NATSPasswordFile), true)
		if err != nil {
			return err
		}
		natsCfg.User, natsCfg.Password = NATSUser, pw
	}
	ns, err := natsserver.Start(natsCfg)
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	if cfg.NATSAddr != "" {
		log.Info("embedded NATS listens for other processes", "url", ns.ClientURL(), "user", NATSUser,
			"password_file", filepath.Join(cfg.DataDir, NATSPasswordFile))
	}

	// Without a listener the password is still needed if a start with one
	// left etcd's authentication on.
	etcdPassword, err := secret(filepath.Join(cfg.DataDir, EtcdPasswordFile), cfg.EtcdAddr != "")
	if err != nil {
		return err
	}
	etcd, err := etcdserver.Start(etcdserver.Config{DataDir: filepath.Join(cfg.DataDir, "etcd"), ClientAddr: cfg.EtcdAddr,
		RootPassword: etcdPassword, CertFile: cfg.EtcdTLS.Cert, KeyFile: cfg.EtcdTLS.Key})
	if err != nil {
		return err
	}
	defer etcd.Close()
	if cfg.EtcdAddr != "" {
		log.Info("embedded etcd listens for other processes", "addr", etcd.ClientAddr(), "tls", cfg.EtcdTLS.Files().Enabled(), "user", EtcdUser,
			"password_file", filepath.Join(cfg.DataDir, EtcdPasswordFile))
	}
	cli, err := etcd.Client()
	if err != nil {
		return err
	}
	defer cli.Close()
	tenants, err := tenant.NewEtcd(cli, tenant.EtcdConfig{}, log)
	if err != nil {
		return err
	}

	st, err := store.OpenEmbedded(filepath.Join(cfg.DataDir, "session.db"))
	if err != nil {
		return err
	}
	defer st.Close()

	var edgeSrv atomic.Pointer[edge.Server]
	nc, err := backbone.Connect(natsserver.InProcessURL(ns), "herald", func(c *nats.Conn, sub *nats.Subscription, err error) {
		if s := edgeSrv.Load(); s != nil {
			s.AsyncErrorHandler()(c, sub, err)
		}
	}, natsCfg.ConnectOptions(ns)...)
	if err != nil {
		return err
	}
	defer nc.Close()
	var p telemetry.Providers
	if cfg.Telemetry != nil {
		p = cfg.Telemetry.Providers()
	}
	cfg.Session.Telemetry = p
	bb, err := backbone.New(nc, cfg.Backbone, backbone.WithTelemetry(p))
	if err != nil {
		return err
	}

	if t := cfg.Edge.AnonymousTenant; t != "" {
		err := tenants.Ensure(ctx, tenant.Tenant{ID: t, DisplayName: "Development tenant (anonymous access)"})
		switch {
		case errors.Is(err, tenant.ErrDeleting):
			// Its data is being deleted: the admin API below finishes
			// that, and the next start creates the tenant anew.
			log.Warn("the development tenant is still being deleted; it is created again at the next start", "tenant", t)
		case err != nil:
			return err
		default:
			if _, err := bb.EnsureTenant(ctx, t); err != nil {
				return err
			}
		}
	}

	// This process's store is a file no other process opens: no other
	// edge can hold one of its sessions.
	cfg.Edge.MQTT.SoleEdge = true
	es, err := edge.New(cfg.Edge, bb, st, store.NewEdgeWriter(st), log, edge.WithTenants(tenants, nil), edge.WithTelemetry(p))
	if err != nil {
		return err
	}
	edgeSrv.Store(es)
	ss, err := session.New(cfg.Session, bb, bb.Bucket(cfg.Session.LeaseBucket()), st, log)
	if err != nil {
		return err
	}
	as, err := admin.New(cfg.Admin, tenants, log, admin.WithStore(st), admin.WithBackbone(bb), admin.WithTelemetry(p))
	if err != nil {
		return err
	}

	o := ops.New()
	if cfg.Telemetry != nil {
		o.Handle("GET /metrics", cfg.Telemetry.MetricsHandler())
	}
	o.AddCheck("nats", backbone.Connected(nc))
	o.AddCheck("edge", es.Ready)
	o.AddCheck("session", func(context.Context) error {
		if !ss.Ready() {
			return errors.New("session service: not ready")
		}
		return nil
	})

	// The edge drains when ctx ends; the rest (sessions, admin, ops
	// with its readiness) stop after it, once its clients have left.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rest, cancelRest := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRest()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for name, run := range map[string]func(context.Context) error{
		"edge": es.RunDraining, "session": ss.Run, "admin": as.Run,
		"ops": func(ctx context.Context) error { return o.ServeTLS(ctx, cfg.OpsAddr, opsTLS) },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runCtx := rest
			if name == "edge" {
				runCtx = ctx
				defer cancelRest()
			}
			if err := run(runCtx); err != nil && runCtx.Err() == nil {
				// Named once: the services' errors mostly name
				// themselves ("edge: mqtt listen: ..."), the ops
				// server's do not.
				if !strings.HasPrefix(err.Error(), name+": ") {
					err = fmt.Errorf("%s: %w", name, err)
				}
				errs <- err
				cancel()
				cancelRest()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}
