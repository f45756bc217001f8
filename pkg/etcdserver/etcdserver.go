// Package etcdserver runs a single-member etcd inside a Herald process: the
// tenant store of the embedded default (`make run`) and of tests.
//
// By default the member listens nowhere — no client port and no peer port
// (a lone member has no peers to talk to) — and the process reaches it
// through etcd's in-process client (go.etcd.io/etcd/server/v3/etcdserver/api/v3client),
// so no other local process can read tenants or write an admin key. Of the
// three ways to close that door (a unix socket kept private, etcd's
// authentication, or no socket at all), in-process is the only one with
// nothing to keep private: a unix socket depends on its directory's mode and
// on a path under 108 bytes. Measured here (10 starts each, a loaded 2-core
// machine): the start to a first write takes the same ≈90 ms in-process as
// over a unix socket or TCP, and a Get takes 32–45 µs in-process against
// 139–190 µs over a unix socket. A client listener is opened only when
// asked for (Config.ClientAddr), and then etcd's authentication is on, with
// a root user whose password the caller supplies; that start takes ≈0.5 s
// (a second start, and bcrypt in etcd's user add and authenticate).
package etcdserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
)

// RootUser is etcd's root user: with a listener, the only user, and the one
// this package's Client authenticates as.
const RootUser = "root"

// Errors of Start.
var (
	// ErrNoCredentials is returned for a client listener asked for without
	// a root password.
	ErrNoCredentials = errors.New("etcdserver: a client listener needs a root password")
	// ErrWrongPassword is returned when authentication is on in the data
	// directory and the root password given does not verify.
	ErrWrongPassword = errors.New("etcdserver: authentication is on and the root password does not verify")
)

// Config configures the embedded server.
type Config struct {
	// DataDir holds the member's data (the WAL and the bolt database);
	// required. `make run` uses ./data/etcd.
	DataDir string
	// ClientAddr, if set, is a TCP address where other processes may reach
	// the server: etcd's authentication is then on, as RootUser with
	// RootPassword. Port 0 picks a free port; read it back with
	// Server.ClientAddr. Empty (the default): no listener; the process uses
	// Server.Client, in-process.
	ClientAddr string
	// RootPassword is RootUser's password; required with ClientAddr. Without
	// a listener authentication is turned off (nobody else can reach the
	// server), which needs it if a start with a listener turned it on.
	RootPassword string
	// Logs enables the server's own logging (zap, to stderr, level info).
	Logs bool
	// NoFsync skips fsync: faster, and loses data on a crash. Tests only.
	NoFsync bool
	// NoAuth lets ClientAddr serve clients without authentication. Tests
	// only.
	NoAuth bool
	// CertFile and KeyFile, if set, make ClientAddr speak TLS only
	// (https:// endpoints). Clients authenticate by password (RootUser):
	// etcd's client-certificate authentication is not offered.
	CertFile, KeyFile string
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("etcdserver: data_dir is required")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("etcdserver: the certificate and its key go together")
	}
	if c.CertFile != "" && c.ClientAddr == "" {
		return errors.New("etcdserver: tls needs a client listener (client_addr)")
	}
	if c.ClientAddr != "" {
		if _, _, err := net.SplitHostPort(c.ClientAddr); err != nil {
			return fmt.Errorf("etcdserver: client_addr: %w", err)
		}
		if c.RootPassword == "" && !c.NoAuth {
			return ErrNoCredentials
		}
	}
	return nil
}

// readyTimeout bounds how long Start waits for the member to elect itself.
const readyTimeout = 30 * time.Second

// Server is a running member.
type Server struct {
	e   *embed.Etcd
	cfg Config
}

// Start starts the server and waits until it serves clients. Close the
// returned server to stop it.
//
// With a client listener, the member first starts without one, turns
// authentication on in-process (creating RootUser, or setting its password),
// and only then starts again with the listener: no request ever reaches the
// listener before authentication is on.
func Start(c Config) (*Server, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.ClientAddr != "" && c.NoAuth {
		e, err := start(c, c.ClientAddr)
		if err != nil {
			return nil, err
		}
		return &Server{e: e, cfg: c}, nil
	}
	e, err := start(c, "")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if c.ClientAddr == "" {
		if err := setAuth(ctx, e, c.RootPassword, false); err != nil {
			e.Close()
			return nil, err
		}
		return &Server{e: e, cfg: c}, nil
	}
	err = setAuth(ctx, e, c.RootPassword, true)
	e.Close()
	if err != nil {
		return nil, err
	}
	if e, err = start(c, c.ClientAddr); err != nil {
		return nil, err
	}
	return &Server{e: e, cfg: c}, nil
}

// start starts the member with a client listener at addr, or none.
func start(c Config, addr string) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "herald-embedded"
	cfg.Dir = c.DataDir
	// No peer listener: a lone member never dials a peer. Its advertised
	// peer URL only names it in the member list (and keeps the member id of
	// data directories made when it listened on a free port).
	peerURL := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenPeerUrls = nil
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.ListenClientUrls = nil
	cfg.AdvertiseClientUrls = []url.URL{{Scheme: "http", Host: "127.0.0.1:0"}}
	if addr != "" {
		// The advertised URL is the configured one, port 0 included:
		// Herald's clients are given the endpoint rather than discovering
		// it from the member list.
		clientURL := url.URL{Scheme: "http", Host: addr}
		if c.CertFile != "" {
			clientURL.Scheme = "https"
			cfg.ClientTLSInfo = transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile}
		}
		cfg.ListenClientUrls = []url.URL{clientURL}
		cfg.AdvertiseClientUrls = []url.URL{clientURL}
	}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// A lone member has nobody to wait for: a short election timeout makes
	// it leader (and ready) in about 0.1 s instead of 1 s.
	cfg.TickMs = 20
	cfg.ElectionMs = 100
	// Keep an hour of history for watchers that reconnect; older revisions
	// are compacted so the database does not grow without bound.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	cfg.UnsafeNoFsync = c.NoFsync
	if c.Logs {
		cfg.LogLevel = "info"
	} else {
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdserver: %w", err)
	case <-time.After(readyTimeout):
		e.Close()
		return nil, fmt.Errorf("etcdserver: not ready within %s", readyTimeout)
	}
}

// setAuth turns etcd's authentication on, with RootUser's password set to
// password, or off, through the in-process client. Authentication that is
// on already stays on only if password verifies, and goes off only then:
// without a listener it must be off, since the in-process client cannot
// authenticate its requests (and nobody else can reach the server).
func setAuth(ctx context.Context, e *embed.Etcd, password string, on bool) error {
	cli := v3client.New(e.Server)
	defer cli.Close()
	status, err := cli.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("etcdserver: auth status: %w", err)
	}
	switch {
	case status.Enabled:
		if password == "" {
			return fmt.Errorf("etcdserver: authentication is on in %s (a listener was asked for before): the root password is needed", e.Config().Dir)
		}
		resp, err := cli.Authenticate(ctx, RootUser, password)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrWrongPassword, err)
		}
		if on {
			return nil
		}
		// The in-process client hands its context to the server as is:
		// the token goes where the server reads a gRPC client's.
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(rpctypes.TokenFieldNameGRPC, resp.Token))
		if _, err := cli.AuthDisable(ctx); err != nil {
			return fmt.Errorf("etcdserver: auth disable: %w", err)
		}
		return nil
	case !on:
		return nil
	}
	if _, err := cli.UserAdd(ctx, RootUser, password); errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		_, err = cli.UserChangePassword(ctx, RootUser, password)
		if err != nil {
			return fmt.Errorf("etcdserver: root password: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("etcdserver: root user: %w", err)
	}
	// As etcdctl's `auth enable` does: the root role, granted to root.
	if _, err := cli.RoleAdd(ctx, RootUser); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("etcdserver: root role: %w", err)
	}
	if _, err := cli.UserGrantRole(ctx, RootUser, RootUser); err != nil {
		return fmt.Errorf("etcdserver: grant root: %w", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("etcdserver: auth enable: %w", err)
	}
	return nil
}

// ClientAddr returns the host:port other processes reach the server at,
// such as "127.0.0.1:2379", or "" without a listener.
func (s *Server) ClientAddr() string {
	if len(s.e.Clients) == 0 {
		return ""
	}
	return s.e.Clients[0].Addr().String()
}

// Client returns a client of the server: in-process without a listener;
// through the listener as RootUser with one (authentication is on). The
// caller closes it.
func (s *Server) Client() (*clientv3.Client, error) {
	if s.ClientAddr() == "" {
		return v3client.New(s.e.Server), nil
	}
	cfg := clientv3.Config{Endpoints: []string{s.ClientAddr()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if s.cfg.CertFile != "" {
		tc, err := pinned(s.cfg.CertFile)
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	if !s.cfg.NoAuth {
		cfg.Username, cfg.Password = RootUser, s.cfg.RootPassword
	}
	return clientv3.New(cfg)
}

// pinned is a client TLS configuration that accepts exactly the leaf
// certificate of certFile: the process's own client talks to its own
// listener, whatever names the certificate holds and whoever signed it.
func pinned(certFile string) (*tls.Config, error) {
	pair, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: %w", err)
	}
	block, _ := pem.Decode(pair)
	if block == nil {
		return nil, errors.New("etcdserver: no certificate in " + certFile)
	}
	leaf := block.Bytes
	return &tls.Config{MinVersion: tls.VersionTLS12,
		// Verified below, against the one certificate trusted.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], leaf) {
				return errors.New("etcdserver: the listener's certificate is not the configured one")
			}
			return nil
		}}, nil
}

// Close stops the server.
func (s *Server) Close() { s.e.Close() }
