// Package etcdserver runs a single-member etcd inside a Herald process: the
// tenant store of the embedded default (`make run`) and of tests.
package etcdserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Config configures the embedded server.
type Config struct {
	// DataDir holds the member's data (the WAL and the bolt database);
	// required. `make run` uses ./data/etcd.
	DataDir string `yaml:"data_dir"`
	// ClientAddr is the client listen address; default "127.0.0.1:2379".
	// Port 0 picks a free port; read it back with ClientAddr.
	ClientAddr string `yaml:"client_addr"`
	// PeerAddr is the peer (raft) listen address; default "127.0.0.1:0": a
	// single member has no peers, so any free port will do.
	PeerAddr string `yaml:"peer_addr"`
	// Logs enables the server's own logging (zap, to stderr, level info).
	Logs bool `yaml:"logs"`
	// NoFsync skips fsync: faster, and loses data on a crash. Tests only.
	NoFsync bool `yaml:"-"`
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("etcdserver: data_dir is required")
	}
	for name, addr := range map[string]string{"client_addr": c.ClientAddr, "peer_addr": c.PeerAddr} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("etcdserver: %s: %w", name, err)
		}
	}
	return nil
}

// readyTimeout bounds how long Start waits for the member to elect itself.
const readyTimeout = 30 * time.Second

// Start starts the server and waits until it serves clients. Close the
// returned server to stop it.
func Start(c Config) (*embed.Etcd, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.ClientAddr == "" {
		c.ClientAddr = "127.0.0.1:2379"
	}
	if c.PeerAddr == "" {
		c.PeerAddr = "127.0.0.1:0"
	}
	// The advertised URLs are the configured ones, port 0 included: a lone
	// member never dials its peer URL, and Herald's clients are given the
	// endpoint rather than discovering it from the member list.
	clientURL := url.URL{Scheme: "http", Host: c.ClientAddr}
	peerURL := url.URL{Scheme: "http", Host: c.PeerAddr}

	cfg := embed.NewConfig()
	cfg.Name = "herald-embedded"
	cfg.Dir = c.DataDir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
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

// ClientAddr returns the host:port clients reach e at, such as
// "127.0.0.1:2379": the endpoint to give clientv3.
func ClientAddr(e *embed.Etcd) string {
	return e.Clients[0].Addr().String()
}
