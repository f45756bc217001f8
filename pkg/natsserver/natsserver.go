// Package natsserver runs a NATS server with JetStream inside a Herald
// process: the backbone of the embedded default (`make run`) and of tests.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures the embedded server.
type Config struct {
	// Addr is the client listen address; default "127.0.0.1:4222".
	// Port 0 picks a free port.
	Addr string `yaml:"addr"`
	// StoreDir holds JetStream data; required unless Memory is set.
	StoreDir string `yaml:"store_dir"`
	// MaxMemory and MaxStore bound JetStream; defaults 256 MiB and 10 GiB.
	MaxMemory int64 `yaml:"max_memory"`
	MaxStore  int64 `yaml:"max_store"`
	// Logs enables the server's own logging.
	Logs bool `yaml:"logs"`
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.StoreDir == "" {
		return errors.New("natsserver: store_dir is required")
	}
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return fmt.Errorf("natsserver: addr: %w", err)
		}
	}
	return nil
}

// Start starts the server and waits until it accepts connections.
func Start(c Config) (*server.Server, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:4222"
	}
	host, portText, _ := net.SplitHostPort(c.Addr)
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("natsserver: port: %w", err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if c.MaxMemory == 0 {
		c.MaxMemory = 256 << 20
	}
	if c.MaxStore == 0 {
		c.MaxStore = 10 << 30
	}
	opts := &server.Options{
		ServerName:         "herald-embedded",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           c.StoreDir,
		JetStreamMaxMemory: c.MaxMemory,
		JetStreamMaxStore:  c.MaxStore,
		NoSigs:             true,
		NoLog:              !c.Logs,
		MaxPayload:         8 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	if c.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, errors.New("natsserver: not ready within 15s")
	}
	return s, nil
}
