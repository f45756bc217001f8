package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/pkg/control"
	"github.com/heraldmq/herald/pkg/record"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Server is the MQTT server of one edge. It is safe for concurrent use.
type Server struct {
	cfg  Config
	node *node.Node
	deps Deps
	log  *slog.Logger

	// sessions keeps persistent sessions; nil: sessions end with their
	// connections.
	sessions  Sessions
	saveStart sync.Once
	// lease is the edge lease that vouches for the held sessions
	// (edgelease.go).
	lease edgeLease

	// deniedQoS0 counts QoS 0 publishes dropped as outside their client's
	// capabilities.
	deniedQoS0 atomic.Int64

	// draining: the edge is leaving (Drain): listeners are closed and a
	// CONNECT that still arrives is refused with 0x88, server unavailable.
	draining atomic.Bool

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	// clients are the connections by control subject (tenant and client
	// identifier); ctlSubs routes control messages to their connection.
	clients map[string]*conn
	ctlSubs map[*control.Sub]*conn
	// retired are the control subscriptions of ended connections, until
	// controlLoop unsubscribes them (release).
	retired map[*control.Sub]retiredSub
	// wg counts accept loops, connections and control goroutines.
	wg sync.WaitGroup

	// inbox receives the control messages of every connection's control
	// subject; made with the first takeover (ctlStart).
	inbox    *control.Inbox
	ctlStart sync.Once
	ctlStop  chan struct{}

	// stopCtx ends with Close: every connection's context derives from it,
	// so that Close aborts what connections wait for (publishes in flight,
	// store calls) without a context of their own per connection.
	stopCtx context.Context
	stopAll context.CancelFunc

	stats counters
}

// Stats are the server's counters since New.
type Stats struct {
	// Dropped counts QoS 0 messages dropped because a connection's queue was full.
	Dropped uint64
	// SlowConsumers counts connections closed because their queue was full of QoS 1 messages.
	SlowConsumers uint64
	// Connections is the number of open connections.
	Connections int
	// OfflineDropped counts messages of resumed sessions skipped beyond
	// MaxOfflineMessages.
	OfflineDropped uint64
	// UnauthorizedDropped counts subscriptions of resumed sessions left
	// out because the credential no longer allows them.
	UnauthorizedDropped uint64
}

type counters struct {
	dropped             atomic.Uint64
	slowConsumers       atomic.Uint64
	offlineDropped      atomic.Uint64
	unauthorizedDropped atomic.Uint64
}

// New returns a server over the edge's core n, writing sessions and
// coordinating takeovers through deps.
func New(cfg Config, n *node.Node, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if n == nil {
		return nil, errors.New("mqtt: the edge's core is required")
	}
	if !cfg.SoleEdge && (deps.Control == nil || deps.ClientSubject == nil) {
		return nil, errors.New("mqtt: the control plane and the clients' control subjects are required unless the edge is the sole edge")
	}
	if deps.ClientSubject == nil {
		// A sole edge only names its own connections.
		deps.ClientSubject = func(tenant, clientID string) string { return tenant + "\x00" + clientID }
	}
	stopCtx, stopAll := context.WithCancel(context.Background())
	cfg = cfg.WithDefaults()
	return &Server{cfg: cfg, node: n, deps: deps, log: n.Logger(), sessions: deps.Sessions,
		listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{},
		clients: map[string]*conn{}, ctlSubs: map[*control.Sub]*conn{},
		retired: map[*control.Sub]retiredSub{}, ctlStop: make(chan struct{}),
		stopCtx: stopCtx, stopAll: stopAll}, nil
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return Stats{Dropped: s.stats.dropped.Load(), SlowConsumers: s.stats.slowConsumers.Load(), Connections: n,
		OfflineDropped: s.stats.offlineDropped.Load(), UnauthorizedDropped: s.stats.unauthorizedDropped.Load()}
}

// Serve accepts MQTT connections on l until ctx is done or Close is called,
// then closes l and returns nil. Connections it accepted end with ctx or
// Close.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	if s.closed || s.draining.Load() {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		s.wg.Done()
	}()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	// The connections of this listener share one context: it ends with
	// ctx or Close, and then ends them (even after Serve returned, as after
	// a Drain). One context per listener, not per connection: an idle
	// connection's memory is what an edge holds most of.
	cctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(s.stopCtx, cancel)
	context.AfterFunc(cctx, func() { s.shutdownConns(cctx) })

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || s.isClosed() || s.draining.Load() {
				return nil
			}
			if !errors.Is(err, net.ErrClosed) {
				// Out of descriptors or similar: wait rather than spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-ctx.Done():
					return nil
				}
			}
			return fmt.Errorf("mqtt: accept: %w", err)
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(cctx, nc, false)
		}()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// shutdownConns shuts down the connections served with ctx.
func (s *Server) shutdownConns(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.base == ctx {
			c.shutdown()
		}
	}
}

// serveConn runs one connection until it ends. The caller has counted it
// in s.wg. ctx ends with Close; own says it is this connection's alone
// (MQTT over WebSocket: its request's), whose end then ends the
// connection — a listener's shared one ends its connections itself.
func (s *Server) serveConn(ctx context.Context, nc net.Conn, own bool) {
	c := newConn(s, nc, ctx)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	if s.draining.Load() {
		c.refuseDraining()
		return
	}
	if own {
		stop := context.AfterFunc(ctx, c.shutdown)
		defer stop()
	}
	c.serve(ctx)
}

// DeniedQoS0 returns how many QoS 0 publishes were dropped as outside their
// client's capabilities.
func (s *Server) DeniedQoS0() int64 { return s.deniedQoS0.Load() }

// Close stops accepting, tells every MQTT 5 client the server is shutting
// down (DISCONNECT 0x8B), closes every connection and returns when all
// connection goroutines have stopped.
func (s *Server) Close() {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	// Abort what connections wait for, then end them.
	s.stopAll()
	for c := range s.conns {
		c.shutdown()
	}
	s.mu.Unlock()
	if first {
		close(s.ctlStop)
	}
	s.wg.Wait()
}

// Redirect tells every MQTT 5 client to use another server — reference,
// sent as Server Reference — with DISCONNECT 0x9C (Use another server), or
// 0x9D (Server moved) if permanent, and closes every connection; MQTT
// 3.1.1 clients are just closed. It is the hook for draining an edge: new
// connections are still accepted until Close.
func (s *Server) Redirect(reference string, permanent bool) {
	err := ErrUseAnotherServer
	if permanent {
		err = ErrServerMoved
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.mu.Lock()
		c.disconnectLocked(err, reference)
		c.mu.Unlock()
	}
}

// errDraining refuses the clients that reach a draining edge.
var errDraining = fmt.Errorf("%w: draining, connect to another server", ErrServerUnavailable)

// Drain stops accepting: listeners close (new connections are refused by
// the system) and a connection accepted meanwhile, or arriving over
// WebSocket, is answered CONNACK 0x88, server unavailable (3.1.1: return
// code 3). Connected clients stay until Leavers' functions are called, or
// Close.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		l.Close()
	}
}

// Leavers returns, per connection open now, a function that asks its
// client to leave: the session is saved to the store (cursor, in-flight
// QoS 1 and 2 state), then an MQTT 5 client gets DISCONNECT 0x8B, server
// shutting down — or 0x9C, use another server, with reference as Server
// Reference when reference is set — and an MQTT 3.1.1 client is closed.
// The connection's teardown saves the session once more, disconnected,
// before a takeover from another edge is answered. A drain calls them
// spread over time, so that clients do not all reconnect at once.
func (s *Server) Leavers(reference string) []func(context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	leave := make([]func(context.Context), 0, len(s.conns))
	for c := range s.conns {
		leave = append(leave, func(ctx context.Context) { c.leave(ctx, reference) })
	}
	return leave
}

// leave saves the session and ends the connection without aborting its
// publishes in flight (unlike shutdown): those the client sent complete
// before teardown, and unacknowledged ones are sent again by the client.
func (c *conn) leave(ctx context.Context, reference string) {
	if err := c.saveSession(ctx); err != nil && !errors.Is(err, record.ErrConflict) {
		c.s.log.Warn("mqtt session not saved before leaving", "client", c.clientID, "err", err)
	}
	err := ErrShuttingDown
	if reference != "" {
		err = ErrUseAnotherServer
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.disconnectLocked(err, reference)
}

// refuseDraining answers the CONNECT of a connection that arrived during a
// drain with server unavailable, and closes it (lingering once answered).
func (c *conn) refuseDraining() {
	_ = c.nc.SetReadDeadline(time.Now().Add(min(c.cfg.ConnectTimeout, closeGrace)))
	r := &connReader{nc: c.nc}
	defer r.release()
	defer c.closeLingering(r)
	pk, err := readPacket(r, 0, c.cfg.MaxPacketSize)
	if err != nil || pk.FixedHeader.Type != packets.Connect {
		return
	}
	v := pk.ProtocolVersion
	if v != 5 {
		v = 4
	}
	c.refuse(v, errDraining)
}
