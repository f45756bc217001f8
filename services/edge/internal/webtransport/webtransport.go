// Package webtransport serves Herald's native protocol — the WebSocket
// protocol's frames, subscribe with resume or a start, publish with
// acknowledgements carrying the position — over WebTransport (HTTP/3, QUIC):
// the carrier for clients that gain from QUIC (no head-of-line blocking
// with the connection's other traffic, connection migration across
// networks, 0-RTT resumption) where a network lets UDP through.
//
// # Connecting
//
//	new WebTransport("https://<edge>:<webtransport port>/wt[?token=…][&binary=1]",
//	                 {serverCertificateHashes: [{algorithm: "sha-256", value: <hash>}]})
//
// The listener needs TLS (--webtransport-addr with the edge's certificate,
// or its own); serverCertificateHashes lets a browser trust a
// self-signed one — an ECDSA certificate valid 14 days at most (the W3C
// rule) — without a CA: GET /webtransport on the edge's HTTP listener
// answers the URL and the certificate's hash. Credentials as on /ws:
// ?token= (a browser sends no cookie and no Authorization header over
// WebTransport). A page's origin passes when its host name is the
// listener's (the edge's own pages, on its HTTP port) or matches the
// WebSocket origin patterns (ws.origin_patterns and the CORS origins).
//
// # Streams
//
// After the session opens, the client opens one bidirectional stream, the
// control stream, and everything goes over it: the client's frames
// (subscribe, unsubscribe, publish, ping) and the edge's (acks, messages,
// gaps, errors), exactly those of the WebSocket protocol (package ws),
// each framed as
//
//	kind (1 byte: 0x1 text, 0x2 binary — RFC 6455's opcodes) · length (4 bytes, big-endian) · frame
//
// A binary frame (with ?binary=1) has the WebSocket protocol's binary
// layout inside. One ordered stream, not datagrams nor a stream per
// subscription: the protocol's guarantees — each subscription's messages
// in stream order, once, a gap announced, a publish acknowledged with its
// position — need an ordered, reliable channel, which datagrams are not
// (and they are bounded by the path's MTU, about 1,200 bytes), and one
// stream keeps one writer, one queue and one bound per connection, as on
// every other transport (docs/protocols.md says more).
//
// # Closing
//
// The session closes with the WebSocket protocol's close code as its
// WebTransport error code and the reason as its message (a browser reads
// them from WebTransport.closed): 1013 slow consumer (the client
// resubscribes with from), 1008 revoked credential or repeated bad frames,
// 1009 a frame over max_frame_size (on its header), 1002 an unknown frame
// kind, 1007 a text frame that is not UTF-8, 1012 the edge leaving (drain,
// shutdown). Liveness is QUIC's own: keep-alive PINGs every
// ws.ping_interval, the connection closed after ws.idle_timeout without
// an answer. A QUIC connection that carries no session is closed after
// 10 s, however alive its peer keeps it.
//
// The protocol itself — authentication, admission and the tenant's
// limits, the feed and its slow-consumer policy, revocation, drain,
// telemetry (protocol "webtransport") — is package ws's session over a
// ws.Conn this package implements (streamConn): a second carrier, not a
// second copy.
package webtransport

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	wt "github.com/quic-go/webtransport-go"

	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/services/edge/internal/cors"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/ws"
)

// noSessionTimeout closes a QUIC connection without a session.
const noSessionTimeout = 10 * time.Second

// Path is where sessions are opened.
const Path = "/wt"

// Config configures the WebTransport listener. The zero value is off.
type Config struct {
	// Addr is the UDP address of the HTTP/3 listener; empty: none.
	Addr string `name:"addr" env:"HERALD_WEBTRANSPORT_ADDR" placeholder:"ADDR" help:"Serve WebTransport (HTTP/3, UDP) here, e.g. 127.0.0.1:8443; needs TLS (--tls-cert and --tls-key, or --webtransport-cert and --webtransport-key)."`
	// CertFile and KeyFile are the listener's PEM certificate and key;
	// default the HTTP listener's (tls.cert_file, tls.key_file).
	CertFile string `name:"cert" type:"path" env:"HERALD_WEBTRANSPORT_CERT" placeholder:"PATH" help:"PEM certificate of the WebTransport listener (default: --tls-cert)."`
	KeyFile  string `name:"key" type:"path" env:"HERALD_WEBTRANSPORT_KEY" placeholder:"PATH" help:"PEM private key of --webtransport-cert (default: --tls-key)."`
}

// Enabled reports whether the listener is configured.
func (c Config) Enabled() bool { return c.Addr != "" }

// Validate reports a configuration error; tlsFallback says whether the
// edge's own certificate is there to fall back on.
func (c Config) Validate(tlsFallback bool) error {
	if !c.Enabled() {
		if c.CertFile != "" || c.KeyFile != "" {
			return errors.New("webtransport: cert and key without addr")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("webtransport: addr: %w", err)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("webtransport: needs both cert and key, or neither (the edge's tls)")
	}
	if c.CertFile == "" && !tlsFallback {
		return errors.New("webtransport: needs TLS: set webtransport cert and key, or the edge's tls cert_file and key_file")
	}
	return nil
}

// Server is the WebTransport listener of an edge.
type Server struct {
	wt     *wt.Server
	h      *ws.Handler
	cert   tls.Certificate
	origin []string
	accept time.Duration // the wait for the control stream
}

// New returns the listener for n, serving the protocol as configured by
// wsCfg (whose origin patterns it applies) with cert; wrap, if set, wraps
// the session handler (the edge's: its header, its refusal while it
// drains). cfg must be valid and enabled.
func New(cfg Config, n *node.Node, wsCfg ws.Config, cert tls.Certificate, wrap func(http.Handler) http.Handler) *Server {
	wsCfg = wsCfg.WithDefaults()
	s := &Server{cert: cert, origin: wsCfg.OriginPatterns, accept: wsCfg.IdleTimeout}
	s.h = ws.NewTransportHandler(wsCfg, n, ws.Transport{Protocol: telemetry.ProtocolWebTransport, Upgrade: s.upgrade})
	var h http.Handler = s.h
	if wrap != nil {
		h = wrap(h)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	s.wt = &wt.Server{
		H3: &http3.Server{
			Handler: mux,
			// A QUIC connection that carries no session (no request) for
			// this long is closed, however alive its peer: only sessions,
			// authenticated and counted, hold the edge's memory for long.
			IdleTimeout: noSessionTimeout,
			TLSConfig:   http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}),
			QUICConfig: &quic.Config{
				MaxIdleTimeout:  wsCfg.IdleTimeout,
				KeepAlivePeriod: min(wsCfg.PingInterval, wsCfg.IdleTimeout/2),
				EnableDatagrams: true,
				// WebTransport's streams need it (RESET_STREAM_AT).
				EnableStreamResetPartialDelivery: true,
			},
		},
		// The edge checks origins itself (upgrade), to answer a refusal
		// with its JSON 403.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return s
}

// CertHash is the SHA-256 of the listener's certificate, which a browser
// passes as serverCertificateHashes to trust a self-signed one.
func (s *Server) CertHash() [32]byte { return sha256.Sum256(s.cert.Certificate[0]) }

// Serve serves sessions on pc until Close.
func (s *Server) Serve(pc net.PacketConn) error {
	err := s.wt.Serve(pc)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, quic.ErrServerClosed) {
		return nil
	}
	return err
}

// Leavers are the open sessions' leave functions, for a drain (see
// ws.Handler.Leavers): each session's queue is written, then it closes
// with 1012.
func (s *Server) Leavers() []func(context.Context) { return s.h.Leavers() }

// Open returns the number of open sessions.
func (s *Server) Open() int { return s.h.Open() }

// Close ends every session with 1012 and closes the listener.
func (s *Server) Close() error {
	s.h.EndSessions()
	return s.wt.Close()
}

// upgrade is the carrier's ws.Upgrader: it checks the page's origin,
// opens the WebTransport session and waits for the client's control
// stream.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, cfg *ws.Config, onFrame func()) (ws.Conn, error) {
	if err := checkOrigin(r, s.origin); err != nil {
		httpapi.WriteError(w, err)
		return nil, err
	}
	sess, err := s.wt.Upgrade(w, r)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.accept)
	defer cancel()
	str, err := sess.AcceptStream(ctx)
	if err != nil {
		_ = sess.CloseWithError(wt.SessionErrorCode(ws.CloseProtocolError), "open the control stream first")
		return nil, errors.Join(errNoControlStream, err)
	}
	onFrame()
	return &streamConn{sess: sess, str: str, limit: cfg.MaxFrameSize}, nil
}

// checkOrigin admits a session from a page whose host name is the
// listener's — the edge's own pages, served on its HTTP port — or one the
// WebSocket origin patterns allow (cors.CheckOrigin), else an error
// wrapping cors.ErrCrossSite (403).
func checkOrigin(r *http.Request, patterns []string) error {
	if u, err := url.Parse(r.Header.Get("Origin")); err == nil && u.Host != "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		if strings.EqualFold(u.Hostname(), host) {
			return nil
		}
	}
	return cors.CheckOrigin(r, patterns)
}
