// Package admin is Herald's administration API: gRPC and, through
// grpc-gateway, REST with JSON, both on one port, plus the OpenAPI document
// and health endpoints.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/tlsconf"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"github.com/heraldmq/herald/proto/openapi"
	"github.com/heraldmq/herald/services/admin/console"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

// DefaultAddr is the default Config.Addr.
const DefaultAddr = "127.0.0.1:8081"

// Config configures the admin server. The kong tags make it the flags and
// environment of herald-admin and, under the prefix "admin-", of the
// all-in-one herald; YAML files use the flag names as keys.
type Config struct {
	// Addr serves gRPC and REST alike; default DefaultAddr. Port 0 picks a
	// free port (see Server.Addr).
	Addr string `default:"127.0.0.1:8081" env:"HERALD_ADMIN_ADDR" help:"Address serving the admin API: gRPC and REST (JSON) on one port."`
	// ShutdownTimeout bounds how long Run waits for requests in flight once
	// its context is done; default 10s.
	ShutdownTimeout time.Duration `default:"10s" env:"HERALD_ADMIN_SHUTDOWN_TIMEOUT" help:"How long to let requests in flight finish on shutdown."`
	// ReadyTimeout bounds the tenant-store probe behind /readyz; default 2s.
	ReadyTimeout time.Duration `default:"2s" env:"HERALD_ADMIN_READY_TIMEOUT" help:"How long /readyz waits for the tenant store."`
	// OperatorConfig says how the operator authenticates. The commands
	// embed it at their top level, without the admin's prefix (the flags
	// are --admin-token and --admin-token-hash in every binary).
	OperatorConfig `kong:"-"`
	// Insecure serves every request without a credential as the operator.
	// It is the embedded development mode's escape hatch (make run), never
	// for a shared deployment; a token, if configured, is still checked
	// when presented.
	Insecure bool `env:"HERALD_ADMIN_INSECURE" help:"DEVELOPMENT ONLY: accept requests without a credential, with operator rights."`
	// DeletionRetry is how often tenant deletions left unfinished (their
	// data not yet removed, a step having failed) are resumed; default
	// 30s. They are resumed once at start too.
	DeletionRetry time.Duration `default:"30s" env:"HERALD_ADMIN_DELETION_RETRY" help:"How often to resume tenant deletions whose data removal failed."`
	// TLS, when its certificate is set, serves gRPC and REST over TLS
	// (HTTP/2 by ALPN) and nothing in plain text. With client CAs, only
	// clients holding a certificate signed by one of them get a
	// connection (mutual TLS); every call still needs its credential.
	TLS tlsconf.Files `embed:"" prefix:"tls-" envprefix:"HERALD_ADMIN_"`
}

// OperatorConfig is the operator's credential for the admin API.
type OperatorConfig struct {
	// AdminToken is the operator token: a request bearing it may do
	// everything. Only its SHA-256 is kept in memory. Set at most one of
	// AdminToken and AdminTokenHash; with neither, only admin keys stored
	// in etcd authenticate (and there are none until an operator makes
	// one), unless Insecure.
	AdminToken string `name:"admin-token" env:"HERALD_ADMIN_TOKEN" placeholder:"TOKEN" help:"Operator token for the admin API (prefer --admin-token-hash, which keeps the secret out of the configuration)."`
	// AdminTokenHash is the operator token's argon2id hash (PHC string, as
	// printed by "herald-admin token"), so the configuration holds no
	// secret.
	AdminTokenHash string `name:"admin-token-hash" env:"HERALD_ADMIN_TOKEN_HASH" placeholder:"HASH" help:"argon2id hash of the operator token, as printed by 'herald-admin token'."`
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return fmt.Errorf("admin: addr: %w", err)
		}
	}
	if c.ShutdownTimeout < 0 {
		return errors.New("admin: shutdown_timeout is negative")
	}
	if c.ReadyTimeout < 0 {
		return errors.New("admin: ready_timeout is negative")
	}
	if c.DeletionRetry < 0 {
		return errors.New("admin: deletion_retry is negative")
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if c.AdminToken != "" && c.AdminTokenHash != "" {
		return errors.New("admin: set admin_token or admin_token_hash, not both")
	}
	if c.AdminTokenHash != "" {
		// A wrong secret against a readable hash is ErrBadSecret; an
		// unreadable hash is ErrBadToken.
		if err := authz.VerifySecret("", c.AdminTokenHash); errors.Is(err, authz.ErrBadToken) {
			return fmt.Errorf("admin: admin_token_hash: %w", err)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 2 * time.Second
	}
	if c.DeletionRetry == 0 {
		c.DeletionRetry = 30 * time.Second
	}
	return c
}

// Server serves the admin API. Create it with New, then call Run once.
type Server struct {
	cfg  Config
	src  *tenant.Etcd
	log  *slog.Logger
	grpc *grpc.Server
	http *http.Server

	running   atomic.Bool
	listening chan struct{} // closed once addr is set, or Run failed to listen
	addr      string

	// Data plane, set by options; nil when not wired.
	store store.Store
	bb    *backbone.Backbone
	// maint builds the identity index and finishes tenant deletions.
	maint *maintainer
	// telemetry, if set, wraps the HTTP handler (see WithTelemetry).
	telemetry *telemetry.Providers
}

// New returns a server over the tenants and credentials in src. A nil log
// discards. Options (WithStore, WithBackbone) connect the live-state calls
// to the data plane.
func New(cfg Config, src *tenant.Etcd, log *slog.Logger, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("admin: nil tenant store")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	auth := &authenticator{log: log, store: src, insecure: cfg.Insecure, tokenHash: cfg.AdminTokenHash, verify: authz.NewVerifyCache(0)}
	if cfg.AdminToken != "" {
		sum := sha256.Sum256([]byte(cfg.AdminToken))
		auth.tokenSum = sum[:]
	}
	switch {
	case cfg.Insecure:
		log.Warn("admin API: INSECURE — requests without a credential have operator rights; for development only")
	case cfg.AdminToken == "" && cfg.AdminTokenHash == "":
		log.Warn("admin API: no operator token configured; only admin keys stored in etcd are accepted (set --admin-token-hash)")
	}
	s := &Server{
		cfg:       cfg.withDefaults(),
		src:       src,
		log:       log,
		grpc:      grpc.NewServer(grpc.UnaryInterceptor(auth.unary), grpc.StreamInterceptor(auth.stream)),
		listening: make(chan struct{}),
	}
	for _, opt := range opts {
		opt(s)
	}

	var erase *eraser
	if s.store != nil && s.bb != nil {
		erase = &eraser{tenants: src, store: s.store, bb: s.bb, log: log}
	}
	s.maint = &maintainer{tenants: src, erase: erase, log: log, interval: s.cfg.DeletionRetry, indexed: new(atomic.Bool)}
	tenants := &tenantService{store: src, log: log, erase: erase}
	creds := &credentialService{store: src, log: log, kdf: authz.DefaultArgon2}
	adminKeys := &adminKeyService{store: src, log: log, kdf: authz.DefaultArgon2}
	live := &liveService{tenants: src, store: s.store, bb: s.bb, log: log, edgeTimeout: EdgeReplyTimeout}
	if s.bb != nil {
		live.edges = s.bb.Control()
	}
	adminv1.RegisterTenantServiceServer(s.grpc, tenants)
	adminv1.RegisterCredentialServiceServer(s.grpc, creds)
	adminv1.RegisterAdminKeyServiceServer(s.grpc, adminKeys)
	adminv1.RegisterLiveServiceServer(s.grpc, live)
	reflection.Register(s.grpc)

	// The gateway calls the services directly rather than dialling the
	// gRPC server: no loopback hop, and nothing to dial before Run listens.
	// So the gRPC interceptors do not apply to it; auth.http does the same
	// for REST.
	gw := runtime.NewServeMux(runtime.WithErrorHandler(challenge))
	ctx := context.Background()
	for _, register := range []func() error{
		func() error { return adminv1.RegisterTenantServiceHandlerServer(ctx, gw, tenants) },
		func() error { return adminv1.RegisterCredentialServiceHandlerServer(ctx, gw, creds) },
		func() error { return adminv1.RegisterAdminKeyServiceHandlerServer(ctx, gw, adminKeys) },
		func() error { return adminv1.RegisterLiveServiceHandlerServer(ctx, gw, live) },
	} {
		if err := register(); err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
	}
	// "retained/{topic=**}" also matches the bare ".../retained" (an empty
	// topic), and the gateway tries the routes registered last first: route
	// the collection itself to ListRetained.
	if err := gw.HandlePath(http.MethodGet, "/v1/tenants/{tenant}/retained", live.listRetainedREST(gw)); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	// The web console: static pages calling the REST API below with the
	// user's key; they hold no data of their own.
	ui, err := console.Handler()
	if err != nil {
		return nil, err
	}
	mux.Handle(console.Path, ui)
	mux.Handle("GET "+strings.TrimSuffix(console.Path, "/"), http.RedirectHandler(console.Path, http.StatusMovedPermanently))
	mux.Handle("/", auth.http(gw, gw))

	tlsCfg, err := cfg.TLS.Server(tls.RequireAndVerifyClientCert, tls.NoClientCert)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if tlsCfg != nil {
		protocols.SetHTTP2(true)
	} else {
		// gRPC clients speak HTTP/2 without TLS (h2c, prior knowledge).
		protocols.SetUnencryptedHTTP2(true)
	}
	s.http = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				s.grpc.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		Protocols:         protocols,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if s.telemetry != nil {
		s.http.Handler = telemetry.AdminHandler(*s.telemetry, s.http.Handler)
	}
	return s, nil
}

// Run listens on Config.Addr and serves until ctx is done, then stops
// accepting, lets requests in flight finish for up to
// Config.ShutdownTimeout, and returns nil. It returns an error if it cannot
// listen or serving fails.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("admin: Run called twice")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		close(s.listening)
		return fmt.Errorf("admin: %w", err)
	}
	// The identity index before the first request (the maintainer retries
	// if etcd is down).
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	s.maint.reconcile(rctx)
	cancel()
	s.addr = ln.Addr().String()
	close(s.listening)
	s.log.Info("admin API listening", "addr", s.addr, "tls", s.http.TLSConfig != nil)

	mctx, stopMaint := context.WithCancel(ctx)
	maintained := make(chan struct{})
	go func() {
		defer close(maintained)
		s.maint.run(mctx)
	}()
	defer func() {
		stopMaint()
		<-maintained
	}()

	served := make(chan error, 1)
	go func() {
		if s.http.TLSConfig != nil {
			served <- s.http.ServeTLS(ln, "", "")
			return
		}
		served <- s.http.Serve(ln)
	}()
	select {
	case err := <-served:
		s.grpc.Stop()
		return fmt.Errorf("admin: %w", err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err = s.http.Shutdown(shutdownCtx)
	if err != nil {
		s.log.Warn("admin API: requests still running at shutdown, closing them", "err", err)
		s.http.Close()
	}
	s.grpc.Stop()
	<-served
	s.log.Info("admin API stopped")
	return nil
}

// Addr returns the address Run listens on, such as "127.0.0.1:8081" — the
// port filled in when Config.Addr asked for 0. It blocks until Run has
// bound it, and returns "" if Run could not listen.
func (s *Server) Addr() string {
	<-s.listening
	return s.addr
}

// healthz reports that the process serves HTTP.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// readyz reports whether the tenant store answers, by reading one tenant.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if _, _, err := s.src.List(ctx, 1, ""); err != nil {
		s.log.Warn("admin API not ready", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "tenant store unavailable")
		return
	}
	fmt.Fprintln(w, "ok")
}

// serveOpenAPI serves the OpenAPI document generated from the protos.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openapi.Admin)
}
