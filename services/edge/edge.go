// Package edge is Herald's stateless edge gateway: it terminates MQTT (TCP
// and WebSocket), Server-Sent Events, the native WebSocket protocol and HTTP
// publish, authenticates clients, publishes onto the JetStream backbone and
// fans live messages out to its local subscribers. Everything an edge holds
// can be rebuilt by another edge: clients may reconnect anywhere.
package edge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/pkg/tlsconf"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/cors"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/limits"
	"github.com/heraldmq/herald/services/edge/internal/mqtt"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/poll"
	"github.com/heraldmq/herald/services/edge/internal/sse"
	"github.com/heraldmq/herald/services/edge/internal/tenantauth"
	"github.com/heraldmq/herald/services/edge/internal/web"
	"github.com/heraldmq/herald/services/edge/internal/webtransport"
	"github.com/heraldmq/herald/services/edge/internal/ws"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// Config configures an edge.
type Config struct {
	// ID names the edge in logs and message origins; default random.
	ID string `name:"id" env:"HERALD_EDGE_ID" placeholder:"ID" help:"Edge id (default: random)."`
	// MQTTAddr is the MQTT/TCP listen address; default 127.0.0.1:1883.
	MQTTAddr string `name:"mqtt-addr" env:"HERALD_MQTT_ADDR" placeholder:"ADDR" help:"MQTT/TCP listen address (default 127.0.0.1:1883)."`
	// HTTPAddr serves /sse, /ws, /mqtt, /publish, /poll, /healthz and,
	// with Demo, the example page at /; default 127.0.0.1:8080.
	HTTPAddr string `name:"http-addr" env:"HERALD_HTTP_ADDR" placeholder:"ADDR" help:"HTTP listen address: SSE (/sse), WebSocket (/ws), MQTT over WebSocket (/mqtt), HTTP publish (/publish), long-polling (/poll), /healthz, and / (the example page, see --demo) (default 127.0.0.1:8080)."`
	// MQTTTLSAddr, when set, also serves MQTT over TLS (conventionally port
	// 8883) with the certificate of TLS, which must then be set.
	MQTTTLSAddr string `name:"mqtt-tls-addr" env:"HERALD_MQTT_TLS_ADDR" placeholder:"ADDR" help:"Also serve MQTT over TLS here (needs --tls-cert and --tls-key), e.g. 127.0.0.1:8883."`
	// TLS, when its files are set, serves HTTPAddr over TLS, with HTTP/2
	// and HTTP/1.1 offered by ALPN.
	TLS TLSConfig `embed:"" prefix:"tls-"`
	// H2C also serves HTTP/2 without TLS (prior knowledge, as proxies and
	// service meshes speak it) next to HTTP/1.1; plaintext only.
	H2C bool `name:"h2c" env:"HERALD_H2C" help:"Also serve HTTP/2 without TLS (prior knowledge) on the HTTP address."`
	// Demo serves the example page (a live topic viewer, GET /): "auto"
	// (the default) serves it when AnonymousTenant is set, that is in
	// development; "on" or "off" decide.
	Demo string `name:"demo" env:"HERALD_DEMO" placeholder:"MODE" help:"Serve the example page at /: auto (when --anonymous-tenant is set), on, off."`
	// AnonymousTenant admits clients without credentials into this tenant.
	// Empty (the default) refuses them. The embedded default sets "dev".
	AnonymousTenant string `name:"anonymous-tenant" env:"HERALD_ANONYMOUS_TENANT" default:"${anonymous_tenant}" help:"Admit clients without credentials into this tenant (development only)."`
	// LiveBuffer bounds live messages received and not yet fanned out; default 65536.
	LiveBuffer int `name:"live-buffer" env:"HERALD_LIVE_BUFFER" placeholder:"N" help:"Live messages received and not yet fanned out to subscribers (default 65536)."`
	// SlowAfter is how long a subscriber's filling queue may hold its
	// tenant's publishers back before the subscriber, taking less than a
	// quarter of its queue in that time, counts as slow and its own
	// overflow policy applies (node.Config.SlowAfter); 0: 2s; negative:
	// publishers are never slowed.
	SlowAfter time.Duration `name:"slow-after" env:"HERALD_SLOW_AFTER" help:"How long a subscriber's filling queue may hold its tenant's publishers back before the subscriber, taking less than a quarter of its queue in that time, counts as slow and sheds or is closed by its own policy; while other tenants are served, a subscriber that takes nothing for a twentieth of it is slow at once, and one tenant's deliveries wait for room at most a tenth of it in every half; negative: publishers are never slowed (default 2s)."`
	// ShutdownGrace bounds the close of what is left when Run's context
	// ends (after a Drain, or instead of one); default 5s.
	ShutdownGrace time.Duration `name:"shutdown-grace" env:"HERALD_SHUTDOWN_GRACE" help:"Bound on closing what is left when the edge stops, after its drain or instead of one (default 5s)."`
	// Drain is how the edge leaves on SIGTERM: see Server.Drain.
	Drain DrainConfig `embed:"" prefix:"drain-"`

	MQTT mqtt.Config `embed:"" prefix:"mqtt-"`
	SSE  sse.Config  `embed:"" prefix:"sse-"`
	WS   ws.Config   `embed:"" prefix:"ws-"`
	Poll poll.Config `embed:"" prefix:"poll-"`
	// WebTransport, when its address is set, serves the WebSocket
	// protocol over WebTransport (HTTP/3, UDP), with TLS required.
	WebTransport webtransport.Config   `embed:"" prefix:"webtransport-"`
	Publish      httpapi.PublishConfig `embed:"" prefix:"publish-"`
	// CORS applies to every HTTP endpoint; its origins are also allowed
	// to open WebSockets.
	CORS cors.Config `embed:"" prefix:"cors-"`
	// Shed refuses new connections, whatever their tenant, when the edge
	// holds its maximum of them or is short of memory.
	Shed ShedConfig `embed:""`
	// HTTP bounds the HTTP listener's connections while they read a
	// request or wait for one, and before they authenticate.
	HTTP HTTPConfig `embed:"" prefix:"http-"`
	// JWKS bounds the fetching of the JWKS documents tenants' JWT keys
	// name (authenticated mode), and says which internal networks such a
	// fetch may reach (none by default).
	JWKS JWKSConfig `embed:"" prefix:"jwks-"`
}

// JWKSConfig configures the fetching of tenants' JWKS documents; an
// alias, so that the commands embedding an edge can set it.
type JWKSConfig = tenantauth.JWKSConfig

// HTTPConfig bounds the HTTP listener's connections in the phases where a
// client holds the edge's resources without having authenticated or
// while it sends: reading a request's headers, reading a publish's body,
// idling between requests, and being accepted at all. Established
// streams (SSE, WebSocket) and waiting long-polls are long-lived by
// design and are not bounded here: they are authenticated, counted
// against their tenant, and have their own keep-alives.
type HTTPConfig struct {
	// ReadHeaderTimeout bounds the reading of a request's headers, from
	// the connection's accept or its previous request; default 10s.
	ReadHeaderTimeout time.Duration `name:"read-header-timeout" env:"HERALD_HTTP_READ_HEADER_TIMEOUT" help:"Bound on reading an HTTP request's headers (default 10s)."`
	// IdleTimeout closes a keep-alive connection that carries no request
	// for that long (HTTP/2: no stream); default 60s.
	IdleTimeout time.Duration `name:"idle-timeout" env:"HERALD_HTTP_IDLE_TIMEOUT" help:"An HTTP keep-alive connection without a request for this long is closed (default 60s)."`
	// BodyTimeout bounds the reading of a publish's body (single or
	// batch), from the moment the publish handler has its headers:
	// slower, it is answered 408 request_timeout (or its earlier refusal)
	// and the connection closed; default 30s (8 MiB, the largest batch,
	// at ~2.2 Mbit/s).
	BodyTimeout time.Duration `name:"body-timeout" env:"HERALD_HTTP_BODY_TIMEOUT" help:"Bound on reading a publish's body; slower is 408 and the connection closed (default 30s)."`
	// MaxUnauthenticatedPerSource bounds the connections one source (IPv4
	// address, IPv6 /64) holds before any request on them authenticated;
	// more are closed at accept (limits.PreAuth). Default 256; -1 for no
	// bound. Behind a proxy that does not keep the client's address, all
	// connections share the proxy's: raise it, or bound at the proxy.
	MaxUnauthenticatedPerSource int `name:"max-unauthenticated-per-source" env:"HERALD_HTTP_MAX_UNAUTHENTICATED_PER_SOURCE" placeholder:"N" help:"Most HTTP connections one source address (IPv6: /64) holds before one of their requests authenticated; more are closed at accept (-1: no bound)."`
}

// Defaults of HTTPConfig.
const (
	DefaultHTTPReadHeaderTimeout           = 10 * time.Second
	DefaultHTTPIdleTimeout                 = 60 * time.Second
	DefaultHTTPBodyTimeout                 = 30 * time.Second
	DefaultHTTPMaxUnauthenticatedPerSource = 256
)

// WithDefaults returns the config with zero fields set to their defaults.
func (c HTTPConfig) WithDefaults() HTTPConfig {
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultHTTPReadHeaderTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultHTTPIdleTimeout
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = DefaultHTTPBodyTimeout
	}
	if c.MaxUnauthenticatedPerSource == 0 {
		c.MaxUnauthenticatedPerSource = DefaultHTTPMaxUnauthenticatedPerSource
	}
	return c
}

// Validate reports a configuration error.
func (c HTTPConfig) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.ReadHeaderTimeout < 0, c.IdleTimeout < 0, c.BodyTimeout < 0:
		return errors.New("edge: http timeouts must not be negative")
	case c.MaxUnauthenticatedPerSource < -1:
		return errors.New("edge: http max_unauthenticated_per_source must be -1 (no bound) or more")
	}
	return nil
}

// ShedConfig configures the edge's load shedding; an alias, so that the
// commands embedding an edge can set it.
type ShedConfig = limits.ShedConfig

// TLSConfig names the certificate of the HTTP listener.
type TLSConfig struct {
	// CertFile and KeyFile are PEM files; both or neither.
	CertFile string `name:"cert" type:"path" env:"HERALD_TLS_CERT" placeholder:"PATH" help:"PEM certificate: serve HTTP over TLS (HTTP/2 and HTTP/1.1)."`
	KeyFile  string `name:"key" type:"path" env:"HERALD_TLS_KEY" placeholder:"PATH" help:"PEM private key of --tls-cert."`
	// ClientCAFile, when set, verifies client certificates against these
	// CAs (an identity may then be matched by subject). Without it client
	// certificates are still asked for and matched by SHA-256 fingerprint
	// only: the handshake proves the client holds the key. A client
	// without a certificate is not refused by TLS; it authenticates
	// otherwise.
	ClientCAFile string `name:"client-ca" type:"path" env:"HERALD_TLS_CLIENT_CA" placeholder:"PATH" help:"PEM CAs that client certificates are verified against (then also matched by subject); without it certificates match by fingerprint."`
}

// Enabled reports whether TLS is configured.
func (c TLSConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Values of Config.Demo.
const (
	DemoAuto = "auto"
	DemoOn   = "on"
	DemoOff  = "off"
)

// HeaderEdge is the response header naming the edge that answered, on
// every HTTP response: operators and tests see which edge behind a load
// balancer holds a stream.
const HeaderEdge = "X-Herald-Edge"

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.ID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.ID = "edge-" + hex.EncodeToString(b[:])
	}
	if c.MQTTAddr == "" {
		c.MQTTAddr = "127.0.0.1:1883"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.LiveBuffer == 0 {
		c.LiveBuffer = 65536
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 5 * time.Second
	}
	if c.Demo == "" {
		c.Demo = DemoAuto
	}
	c.Drain = c.Drain.WithDefaults()
	c.HTTP = c.HTTP.WithDefaults()
	return c
}

// demo reports whether the example page is served.
func (c Config) demo() bool {
	return c.Demo == DemoOn || (c.Demo == DemoAuto && c.AnonymousTenant != "")
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	c = c.WithDefaults()
	for name, a := range map[string]string{"mqtt_addr": c.MQTTAddr, "http_addr": c.HTTPAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("edge: %s: %w", name, err)
		}
	}
	if c.AnonymousTenant != "" && !backbone.ValidTenant(c.AnonymousTenant) {
		return fmt.Errorf("edge: anonymous_tenant %q is not a valid tenant id", c.AnonymousTenant)
	}
	if c.LiveBuffer < 0 || c.ShutdownGrace < 0 {
		return errors.New("edge: negative limit")
	}
	if c.TLS.Enabled() && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		return errors.New("edge: tls needs both cert_file and key_file")
	}
	if c.MQTTTLSAddr != "" {
		if _, _, err := net.SplitHostPort(c.MQTTTLSAddr); err != nil {
			return fmt.Errorf("edge: mqtt_tls_addr: %w", err)
		}
		if !c.TLS.Enabled() {
			return errors.New("edge: mqtt_tls_addr needs tls.cert_file and tls.key_file")
		}
	}
	if c.TLS.Enabled() && c.H2C {
		return errors.New("edge: h2c is HTTP/2 without TLS: drop it when tls is set (TLS offers HTTP/2 itself)")
	}
	if c.Demo != DemoAuto && c.Demo != DemoOn && c.Demo != DemoOff {
		return fmt.Errorf("edge: demo must be %q, %q or %q, got %q", DemoAuto, DemoOn, DemoOff, c.Demo)
	}
	return errors.Join(c.MQTT.Validate(), c.SSE.Validate(), c.WS.Validate(), c.Poll.Validate(), c.WebTransport.Validate(c.TLS.Enabled()),
		c.Publish.Validate(), c.CORS.Validate(), c.Shed.Validate(), c.Drain.Validate(), c.HTTP.Validate(), c.JWKS.Validate())
}

// Server is one edge.
type Server struct {
	cfg  Config
	log  *slog.Logger
	bb   *backbone.Backbone
	node *node.Node
	live *backbone.Live
	mqtt *mqtt.Server
	http *http.Server
	// preauth bounds the HTTP connections per source not authenticated yet.
	preauth *limits.PreAuth

	// Set by WithTenants (authenticated mode); nil otherwise.
	dir     *tenant.Directory
	quota   *limits.Limits
	clients *node.Clients

	// wt is the WebTransport listener; nil unless configured.
	wt *webtransport.Server

	mu        sync.Mutex
	mqttAddr  net.Addr
	httpAddr  net.Addr
	wtAddr    net.Addr
	listening chan struct{}

	// drain is the state of Drain (drain.go).
	drain drainState
}

// Option adds to what New builds.
type Option func(*options)

type options struct {
	tenants *tenant.Etcd
	redis   redis.UniversalClient
	tel     *telemetry.Providers
}

// WithTelemetry records the edge's metrics (connections, messages and bytes
// in and out, delivery latency, live queue) and message spans ("publish"
// on ingress, one "deliver" per live message) with p.
func WithTelemetry(p telemetry.Providers) Option {
	return func(o *options) { o.tel = &p }
}

// DirectoryReadyTimeout bounds how long Run waits for the tenant Directory's
// first full load before it starts accepting clients anyway (they are then
// judged on what has been loaded: unknown keys are refused).
const DirectoryReadyTimeout = 10 * time.Second

// WithTenants switches the edge to authenticated mode over the tenants,
// credentials and limits stored in etcd (src): clients authenticate with API
// keys, JWTs or certificates (tenantauth), every publish and subscribe is
// authorized against the credential's capabilities, tenants' limits hold
// (connections counted cluster-wide in rdb; a nil rdb counts per edge,
// right for a single edge only), and a revoked credential or deleted tenant
// closes its live connections. Config.AnonymousTenant, if set, still admits
// clients without credentials into that tenant.
func WithTenants(src *tenant.Etcd, rdb redis.UniversalClient) Option {
	return func(o *options) { o.tenants, o.redis = src, rdb }
}

// New builds an edge over a backbone, a session-state reader (retained
// messages, replay buffers; nil: replays read the streams only) and the
// session writer of its MQTT server (persistent sessions and the edge's
// lease; nil: MQTT sessions end with their connections). The backbone's
// NATS connection stays the caller's.
func New(cfg Config, bb *backbone.Backbone, state node.StateReader, sessions mqtt.Sessions, log *slog.Logger, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.Default()
	}
	log = log.With("edge", cfg.ID)
	s := &Server{cfg: cfg, log: log, bb: bb, listening: make(chan struct{})}
	var n *node.Node
	var tel *telemetry.Edge
	if o.tel != nil {
		tel = telemetry.NewEdge(*o.tel, func() int { return n.Subscriptions() }, func() int { return s.live.Queued() })
	}
	s.live = bb.NewLive(backbone.LiveConfig{Buffer: cfg.LiveBuffer, Log: log, OnDrop: func() {
		tel.LiveDropped()
		log.Warn("live messages dropped (edge too slow for its subscriptions, or its NATS connection broke): reading them back from the streams")
	}}, func(m *message.Message) {
		span := tel.StartDeliver(m)
		tel.EndDeliver(span, n.Dispatch(m))
	})
	ncfg := node.Config{ID: cfg.ID, Stream: bb, Interest: s.live, State: state, Telemetry: tel,
		Auth: auth.Anonymous{Tenant: cfg.AnonymousTenant}, Log: log, SlowAfter: cfg.SlowAfter}
	shed, err := limits.NewShedder(cfg.Shed)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	ncfg.Shed = shed
	if o.tenants != nil {
		clients := &clientsRef{bb: bb}
		s.dir = tenant.NewDirectory(o.tenants, tenant.DirectoryConfig{OnChange: clients.onChange})
		a, err := tenantauth.New(tenantauth.Config{Directory: s.dir, AnonymousTenant: cfg.AnonymousTenant, JWKS: cfg.JWKS, Log: log})
		if err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		clients.c = node.NewClients(node.ClientsConfig{Check: a.Check})
		if s.quota, err = limits.New(limits.Config{EdgeID: cfg.ID, Source: s.dir, Redis: o.redis, Log: log}); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		ncfg.Auth, ncfg.Clients, ncfg.Quota = a, clients.c, s.quota
		s.clients = clients.c
	}
	if n, err = node.New(ncfg); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	s.node = n
	bbCfg := bb.Config()
	deps := mqtt.Deps{Sessions: sessions, Control: bb.Control(), ClientSubject: bbCfg.ClientControlSubject}
	if s.mqtt, err = mqtt.New(cfg.MQTT, s.node, deps); err != nil {
		return nil, err
	}
	wsCfg := cfg.WS
	if hosts := cfg.CORS.Hosts(); len(hosts) > 0 {
		wsCfg.OriginPatterns = append(slices.Clone(wsCfg.OriginPatterns), hosts...)
	}
	pubCfg := cfg.Publish
	pubCfg.BodyTimeout = cfg.HTTP.BodyTimeout
	if cfg.CORS.AllowCredentials {
		pubCfg.CookieOrigins = cfg.CORS.Hosts()
	}
	mux := http.NewServeMux()
	s.drain.sse, s.drain.ws = sse.NewHandler(cfg.SSE, s.node), ws.NewHandler(wsCfg, s.node)
	mux.Handle("GET /sse", s.drain.sse)
	mux.Handle("GET /ws", sameOrigin(wsCfg.OriginPatterns, s.drain.ws))
	mux.Handle("GET /mqtt", sameOrigin(cfg.MQTT.WebSocketOrigins, s.mqtt.WebSocketHandler()))
	mux.Handle("POST /publish", httpapi.NewPublishHandlerConfig(pubCfg, s.node))
	mux.Handle("GET /poll", poll.NewHandler(cfg.Poll, s.node))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	if cfg.WebTransport.Enabled() {
		certFile, keyFile := cfg.WebTransport.CertFile, cfg.WebTransport.KeyFile
		if certFile == "" {
			certFile, keyFile = cfg.TLS.CertFile, cfg.TLS.KeyFile
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("edge: webtransport tls: %w", err)
		}
		s.wt = webtransport.New(cfg.WebTransport, s.node, wsCfg, cert, func(h http.Handler) http.Handler {
			return edgeHeader(cfg.ID, s.gate(h))
		})
	}
	mux.HandleFunc("GET /webtransport", s.webTransportInfo)
	if cfg.demo() {
		page := web.NewHandler()
		for _, pattern := range web.Routes {
			mux.Handle(pattern, page)
		}
	}
	// No ReadTimeout or WriteTimeout: they would cut SSE streams, WebSockets
	// and long-polls, which are long-lived by design. The phases before a
	// request is served are bounded instead (HTTPConfig).
	s.preauth = limits.NewPreAuth(cfg.HTTP.MaxUnauthenticatedPerSource)
	s.http = &http.Server{Handler: edgeHeader(cfg.ID, cors.Middleware(cfg.CORS, s.gate(mux))),
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout, IdleTimeout: cfg.HTTP.IdleTimeout, ConnContext: limits.ConnContext,
		Protocols: new(http.Protocols)}
	s.http.Protocols.SetHTTP1(true)
	switch {
	case cfg.TLS.Enabled():
		// Without client CAs, certificates are still asked for: a client
		// may authenticate by its certificate's fingerprint.
		tc, err := tlsconf.Files{Cert: cfg.TLS.CertFile, Key: cfg.TLS.KeyFile, ClientCA: cfg.TLS.ClientCAFile}.
			Server(tls.VerifyClientCertIfGiven, tls.RequestClientCert)
		if err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		s.http.TLSConfig = tc
		s.http.Protocols.SetHTTP2(true)
	case cfg.H2C:
		s.http.Protocols.SetUnencryptedHTTP2(true)
	}
	return s, nil
}

// clientsRef lets the Directory's OnChange reach the Clients built after it.
type clientsRef struct {
	c  *node.Clients
	bb *backbone.Backbone
}

func (r *clientsRef) onChange(ch tenant.Change) {
	if ch.Kind == tenant.KindTenant {
		// A tenant deleted, or created again once its deletion finished,
		// has another stream (or none): the epoch cached for it would
		// stamp the new stream's positions with the old history's epoch.
		r.bb.Forget(ch.Tenant)
	}
	if r.c != nil {
		r.c.OnChange(ch)
	}
}

// sameOrigin refuses a WebSocket upgrade from a page of a foreign origin
// (one not matching hosts) with 403 and the JSON error of every other
// refusal, before next (whose library would answer the same in plain
// text) sees it.
func sameOrigin(hosts []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := cors.CheckOrigin(r, hosts); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// edgeHeader names the edge on every response.
func edgeHeader(id string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderEdge, id)
		next.ServeHTTP(w, r)
	})
}

// AsyncErrorHandler is to be installed on the backbone's NATS connection
// (nats.ErrorHandler) so that slow-consumer drops reach the edge.
func (s *Server) AsyncErrorHandler() func(*nats.Conn, *nats.Subscription, error) {
	return func(_ *nats.Conn, sub *nats.Subscription, err error) { s.live.AsyncError(sub, err) }
}

// Addrs returns the MQTT and HTTP listen addresses once Run is listening.
func (s *Server) Addrs(ctx context.Context) (mqttAddr, httpAddr net.Addr, err error) {
	select {
	case <-s.listening:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mqttAddr, s.httpAddr, nil
}

// Run listens and serves until ctx is done, then closes every connection
// and returns once all of the edge's goroutines have stopped.
func (s *Server) Run(ctx context.Context) error {
	var bg sync.WaitGroup
	defer bg.Wait()
	if s.dir != nil {
		// The tenant Directory and the limits' heartbeat run for as long
		// as the edge; they stop after the servers (deferred cancel runs
		// before bg.Wait).
		bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		bg.Add(2)
		go func() {
			defer bg.Done()
			if err := s.dir.Run(bgCtx); err != nil {
				s.log.Error("tenant directory stopped", "err", err)
			}
		}()
		go func() {
			defer bg.Done()
			if err := s.quota.Run(bgCtx); err != nil {
				s.log.Error("limits stopped", "err", err)
			}
		}()
		t := time.NewTimer(DirectoryReadyTimeout)
		select {
		case <-s.dir.Ready():
			t.Stop()
		case <-t.C:
			s.log.Warn("tenant directory not loaded yet: accepting clients anyway", "waited", DirectoryReadyTimeout)
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		stopCtl, err := s.startAdminControl()
		if err != nil {
			return fmt.Errorf("edge: admin control: %w", err)
		}
		defer stopCtl()
	}
	ml, err := net.Listen("tcp", s.cfg.MQTTAddr)
	if err != nil {
		return fmt.Errorf("edge: mqtt listen: %w", err)
	}
	hl, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		ml.Close()
		return fmt.Errorf("edge: http listen: %w", err)
	}
	hl = s.preauth.Listener(hl)
	wl, err := s.listenWebTransport()
	if err != nil {
		ml.Close()
		hl.Close()
		return fmt.Errorf("edge: webtransport listen: %w", err)
	}
	s.mu.Lock()
	s.mqttAddr, s.httpAddr = ml.Addr(), hl.Addr()
	s.drain.httpL = hl
	s.mu.Unlock()
	close(s.listening)
	s.log.Info("edge listening", "mqtt", ml.Addr().String(), "http", hl.Addr().String(),
		"tls", s.cfg.TLS.Enabled(), "h2c", s.cfg.H2C, "demo", s.cfg.demo())

	// Long-lived handlers (SSE, WebSocket) watch the request context, which
	// derives from ctx: cancelling ctx ends them, so Shutdown can finish.
	s.http.BaseContext = func(net.Listener) context.Context { return ctx }
	errc := make(chan error, 4)
	servers := 2
	go func() { errc <- s.mqtt.Serve(ctx, ml) }()
	if wl != nil {
		s.log.Info("edge listening for WebTransport", "addr", wl.LocalAddr().String())
		servers++
		go func() {
			// A drain closes the listener itself: not an error.
			if err := s.wt.Serve(wl); err != nil && !s.Draining() {
				errc <- fmt.Errorf("edge: webtransport: %w", err)
				return
			}
			errc <- nil
		}()
	}
	if s.cfg.MQTTTLSAddr != "" {
		tl, err := net.Listen("tcp", s.cfg.MQTTTLSAddr)
		if err != nil {
			errc <- fmt.Errorf("edge: mqtt tls listen: %w", err)
		} else {
			s.log.Info("edge listening for MQTT over TLS", "addr", tl.Addr().String())
			// The handshake runs on the connection's own goroutine, at its
			// first read, under the CONNECT timeout.
			tl = tls.NewListener(tl, s.http.TLSConfig.Clone())
			go func() { errc <- s.mqtt.Serve(ctx, tl) }()
		}
		servers++
	}
	go func() {
		serve := s.http.Serve
		if s.http.TLSConfig != nil {
			serve = func(l net.Listener) error { return s.http.ServeTLS(l, "", "") }
		}
		// A drain closes the listener itself: not an error.
		if err := serve(hl); !errors.Is(err, http.ErrServerClosed) && !s.Draining() {
			errc <- err
			return
		}
		errc <- nil
	}()
	var first error
	received := 0
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case err := <-errc:
			received++
			// During a drain the listeners close while the clients
			// leave: the edge runs on until ctx ends.
			if err == nil && s.Draining() {
				continue
			}
			first = err
			break wait
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownGrace)
	defer cancel()
	_ = s.http.Shutdown(shutdownCtx)
	if s.wt != nil {
		_ = s.wt.Close()
	}
	ml.Close()
	s.mqtt.Close()
	for ; received < servers; received++ {
		if err := <-errc; err != nil && first == nil && ctx.Err() == nil {
			first = err
		}
	}
	s.live.Close()
	return first
}
