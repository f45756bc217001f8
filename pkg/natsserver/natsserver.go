// Package natsserver runs a NATS server with JetStream inside a Herald
// process: the backbone of the embedded default (`make run`) and of tests.
//
// By default the server has no network listener at all: the process
// reaches it through nats-server's in-process client (ConnectOptions), so no
// other local process can read or inject any tenant's messages. A listener
// is opened only when asked for (Config.Addr), and then it requires a user
// and password.
package natsserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ErrNoCredentials is returned for a listener asked for without a user and
// password.
var ErrNoCredentials = errors.New("natsserver: a listener needs a user and password")

// Config configures the embedded server.
type Config struct {
	// Addr, if set, is a TCP address where other processes may connect, with
	// User and Password. Port 0 picks a free port. Empty (the default): no
	// listener; connect in-process with ConnectOptions.
	Addr string
	// User and Password are the one user every client, the in-process one
	// included, must present when set; required with Addr.
	User     string
	Password string
	// StoreDir holds JetStream data; required.
	StoreDir string
	// MaxMemory and MaxStore bound JetStream; defaults 256 MiB and 10 GiB.
	MaxMemory int64
	MaxStore  int64
	// Logs enables the server's own logging.
	Logs bool
	// NoAuth lets Addr serve clients without credentials. Tests only.
	NoAuth bool
	// TLS, if set, makes Addr speak TLS only (clients connect with
	// tls://); with ClientCAs, clients must also present a certificate
	// they signed. The in-process client is not affected.
	TLS *tls.Config
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.StoreDir == "" {
		return errors.New("natsserver: store_dir is required")
	}
	if (c.User == "") != (c.Password == "") {
		return errors.New("natsserver: user and password go together")
	}
	if c.TLS != nil && c.Addr == "" {
		return errors.New("natsserver: tls needs a listener (addr)")
	}
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return fmt.Errorf("natsserver: addr: %w", err)
		}
		if c.User == "" && !c.NoAuth {
			return ErrNoCredentials
		}
	}
	return nil
}

// Start starts the server and waits until it accepts connections.
func Start(c Config) (*server.Server, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.MaxMemory == 0 {
		c.MaxMemory = 256 << 20
	}
	if c.MaxStore == 0 {
		c.MaxStore = 10 << 30
	}
	opts := &server.Options{
		ServerName:         "herald-embedded",
		DontListen:         c.Addr == "",
		JetStream:          true,
		StoreDir:           c.StoreDir,
		JetStreamMaxMemory: c.MaxMemory,
		JetStreamMaxStore:  c.MaxStore,
		NoSigs:             true,
		NoLog:              !c.Logs,
		MaxPayload:         8 << 20,
	}
	if c.Addr != "" {
		host, portText, _ := net.SplitHostPort(c.Addr)
		port, err := strconv.Atoi(portText)
		if err != nil {
			return nil, fmt.Errorf("natsserver: port: %w", err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	if c.TLS != nil {
		opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, c.TLS, 2
		opts.TLSVerify = c.TLS.ClientCAs != nil
	}
	if c.User != "" {
		opts.Users = []*server.User{{Username: c.User, Password: c.Password}}
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

// InProcessURL is the URL to connect to s with ConnectOptions: its client
// URL as nats://, since a tls:// one (the server has TLS) would make the
// in-process client, which needs none, attempt a handshake.
func InProcessURL(s *server.Server) string {
	return "nats://" + strings.TrimPrefix(strings.TrimPrefix(s.ClientURL(), "tls://"), "nats://")
}

// ConnectOptions are the options that connect a client of this process to
// s in-process (no socket, whether or not s listens), as c's user when it
// has one. Pass them with InProcessURL(s).
func (c Config) ConnectOptions(s *server.Server) []nats.Option {
	opts := []nats.Option{nats.InProcessServer(s)}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	return opts
}
