// Package admin is Herald's administration API: gRPC and, through
// grpc-gateway, REST with JSON, both on one port, plus the OpenAPI document
// and health endpoints.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/heraldmq/herald/pkg/tenant"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"github.com/heraldmq/herald/proto/openapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

// DefaultAddr is the default Config.Addr.
const DefaultAddr = "127.0.0.1:8081"

// Config configures the admin server. The kong tags make it the flags and
// environment of herald-admin too.
type Config struct {
	// Addr serves gRPC and REST alike; default DefaultAddr. Port 0 picks a
	// free port (see Server.Addr).
	Addr string `yaml:"addr" default:"127.0.0.1:8081" env:"HERALD_ADMIN_ADDR" help:"Address serving the admin API: gRPC and REST (JSON) on one port."`
	// ShutdownTimeout bounds how long Run waits for requests in flight once
	// its context is done; default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" default:"10s" env:"HERALD_ADMIN_SHUTDOWN_TIMEOUT" help:"How long to let requests in flight finish on shutdown."`
	// ReadyTimeout bounds the tenant-store probe behind /readyz; default 2s.
	ReadyTimeout time.Duration `yaml:"ready_timeout" default:"2s" env:"HERALD_ADMIN_READY_TIMEOUT" help:"How long /readyz waits for the tenant store."`
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
	return c
}

// Server serves the admin API. Create it with New, then call Run once.
type Server struct {
	cfg  Config
	src  tenant.Source
	log  *slog.Logger
	grpc *grpc.Server
	http *http.Server

	running   atomic.Bool
	listening chan struct{} // closed once addr is set, or Run failed to listen
	addr      string
}

// New returns a server for the tenants in src. A nil log discards.
func New(cfg Config, src tenant.Source, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("admin: nil tenant source")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg.withDefaults(),
		src:       src,
		log:       log,
		grpc:      grpc.NewServer(),
		listening: make(chan struct{}),
	}

	tenants := &tenantService{src: src, log: log}
	adminv1.RegisterTenantServiceServer(s.grpc, tenants)
	reflection.Register(s.grpc)

	// The gateway calls the service directly rather than dialling the gRPC
	// server: no loopback hop, and nothing to dial before Run listens. gRPC
	// interceptors added later must be applied to this path too.
	gw := runtime.NewServeMux()
	if err := adminv1.RegisterTenantServiceHandlerServer(context.Background(), gw, tenants); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	mux.Handle("/", gw)

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	// gRPC clients speak HTTP/2 without TLS (h2c, prior knowledge).
	protocols.SetUnencryptedHTTP2(true)
	s.http = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				s.grpc.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
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
	s.addr = ln.Addr().String()
	close(s.listening)
	s.log.Info("admin API listening", "addr", s.addr)

	served := make(chan error, 1)
	go func() { served <- s.http.Serve(ln) }()
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
