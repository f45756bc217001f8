package edge

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/sse"
	"github.com/heraldmq/herald/services/edge/internal/ws"
)

// DrainConfig configures how an edge leaves (Server.Drain).
type DrainConfig struct {
	// Timeout bounds the drain: the clients still connected then are
	// closed at once. The clients are asked to leave over its first half,
	// so that their reconnects to the other edges are spread. Default 20s;
	// keep it below the orchestrator's grace period (Kubernetes:
	// terminationGracePeriodSeconds, 30s by default).
	Timeout time.Duration `name:"timeout" env:"HERALD_DRAIN_TIMEOUT" help:"On SIGTERM or SIGINT: readiness turns false, listeners close, clients are asked to leave over the first half of this, and the edge exits when they are gone or at its end; a second signal exits at once."`
	// Reference, when set, is sent to MQTT 5 clients as the Server
	// Reference of a DISCONNECT 0x9C (use another server) instead of
	// 0x8B (server shutting down): the address of the edges' balancer,
	// say.
	Reference string `name:"reference" env:"HERALD_DRAIN_REFERENCE" placeholder:"ADDR" help:"Server Reference sent to MQTT 5 clients with DISCONNECT 0x9C (use another server) when draining, instead of 0x8B (server shutting down)."`
	// RetryMin and RetryMax bound the reconnect delay ("retry:" field,
	// drawn at random per stream) written to an SSE stream before it
	// ends: EventSource clients come back spread over that window.
	// Defaults 500ms and 3s.
	RetryMin time.Duration `name:"retry-min" env:"HERALD_DRAIN_RETRY_MIN" help:"Least reconnect delay (SSE retry: field, drawn at random per stream) written to an SSE stream a drain ends (default 500ms)."`
	RetryMax time.Duration `name:"retry-max" env:"HERALD_DRAIN_RETRY_MAX" help:"Most reconnect delay written to an SSE stream a drain ends (default 3s)."`
}

// DefaultDrainTimeout is the default DrainConfig.Timeout.
const DefaultDrainTimeout = 20 * time.Second

// WithDefaults returns the config with zero fields set to their defaults.
func (c DrainConfig) WithDefaults() DrainConfig {
	if c.Timeout == 0 {
		c.Timeout = DefaultDrainTimeout
	}
	if c.RetryMin == 0 {
		c.RetryMin = 500 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = max(3*time.Second, c.RetryMin)
	}
	return c
}

// Validate reports a configuration error.
func (c DrainConfig) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.Timeout < 0:
		return errors.New("edge: drain timeout must not be negative")
	case c.RetryMin < 0 || c.RetryMax < c.RetryMin:
		return errors.New("edge: drain retry_min must be ≥ 0 and ≤ retry_max")
	}
	return nil
}

// ErrDraining is the readiness error of a draining edge.
var ErrDraining = errors.New("edge: draining")

// ErrNotListening is the readiness error of an edge whose listeners are not
// bound yet (Run is still loading the tenants, or not called).
var ErrNotListening = errors.New("edge: not listening yet")

// drainState is what Drain needs of the edge.
type drainState struct {
	started atomic.Bool
	sse     *sse.Handler
	ws      *ws.Handler
	httpL   net.Listener // under Server.mu
	// polls are the long-polls waiting, each with the cancel of its
	// context: a drain returns them at once.
	pmu   sync.Mutex
	polls map[*context.CancelFunc]struct{}
}

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.drain.started.Load() }

// Ready is the edge's readiness check: ErrNotListening until its listeners
// are bound, so that nothing is sent to a port that refuses it; then
// ErrDraining once Drain was called, so that balancers stop sending it
// clients before its listeners close.
func (s *Server) Ready(context.Context) error {
	select {
	case <-s.listening:
	default:
		return ErrNotListening
	}
	if s.Draining() {
		return ErrDraining
	}
	return nil
}

// DrainReport says how a drain went.
type DrainReport struct {
	// Clients is how many connections were asked to leave; Left, how many
	// were still open when the drain ended (closed by Run's end).
	Clients, Left int
	// Took is how long the drain lasted.
	Took time.Duration
}

// Drain makes the edge leave without losing anything: readiness turns
// false at once; the listeners close (a connection still arriving is
// answered MQTT CONNACK 0x88 or HTTP 503 with Retry-After); then every
// client is asked to leave, one at a time at random moments over the first
// half of the drain timeout — MQTT sessions saved and DISCONNECT 0x8B (or
// 0x9C), WebSockets flushed and closed 1012, SSE streams ended after a
// random "retry:", long-polls answered — and Drain returns once all are
// gone, at the drain timeout, or when ctx ends. The edge keeps serving the
// clients not yet asked: cancel Run's context afterwards to close the rest.
func (s *Server) Drain(ctx context.Context) DrainReport {
	start := time.Now()
	if !s.drain.started.CompareAndSwap(false, true) {
		return DrainReport{}
	}
	cfg := s.cfg.Drain
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	s.mqtt.Drain()
	s.mu.Lock()
	hl := s.drain.httpL
	s.mu.Unlock()
	if hl != nil {
		_ = hl.Close()
	}
	// Idle keep-alive connections close now; busy ones after their
	// response (the gate answers 503 and Connection: close meanwhile).
	s.http.SetKeepAlivesEnabled(false)

	leave := s.mqtt.Leavers(cfg.Reference)
	leave = append(leave, s.drain.ws.Leavers()...)
	if s.wt != nil {
		leave = append(leave, s.wt.Leavers()...)
	}
	leave = append(leave, s.drain.sse.Leavers(func() []byte { return sse.RetryField(randomIn(cfg.RetryMin, cfg.RetryMax)) })...)
	leave = append(leave, s.pollLeavers()...)
	s.log.Info("edge draining", "clients", len(leave), "timeout", cfg.Timeout)

	// One timer walks the schedule; a leave runs on a goroutine of its
	// own only while it saves and writes.
	at := spread(len(leave), cfg.Timeout/2)
	slices.Sort(at)
	var wg sync.WaitGroup
	t := time.NewTimer(0)
	<-t.C
walk:
	for i, f := range leave {
		t.Reset(time.Until(start.Add(at[i])))
		select {
		case <-t.C:
			wg.Go(func() { f(ctx) })
		case <-ctx.Done():
			break walk
		}
	}
	t.Stop()
	wg.Wait()
	left := s.waitClientsGone(ctx)
	r := DrainReport{Clients: len(leave), Left: left, Took: time.Since(start)}
	s.log.Info("edge drained", "clients", r.Clients, "left", r.Left, "took", r.Took)
	return r
}

// spread returns n delays over [0, window): one drawn at random in each of
// n equal slots, in random order, so that the clients leave at a steady
// rate with jitter rather than all at once.
func spread(n int, window time.Duration) []time.Duration {
	at := make([]time.Duration, n)
	slot := window / time.Duration(max(n, 1))
	for i := range at {
		at[i] = time.Duration(i)*slot + randomIn(0, slot)
	}
	rand.Shuffle(n, func(i, j int) { at[i], at[j] = at[j], at[i] })
	return at
}

// randomIn returns a uniformly random duration in [lo, hi].
func randomIn(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + rand.N(hi-lo+1)
}

// drainPoll is how often a drain looks whether its clients are gone.
const drainPoll = 20 * time.Millisecond

// waitClientsGone waits until the edge holds no client connection or ctx
// ends, and returns how many are left.
func (s *Server) waitClientsGone(ctx context.Context) int {
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		n := s.Clients()
		if n == 0 {
			return 0
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return s.Clients()
		}
	}
}

// Clients returns the number of client connections a drain waits for:
// MQTT, WebSocket (and WebTransport), SSE over HTTP/1 and long-polls.
func (s *Server) Clients() int {
	s.drain.pmu.Lock()
	polls := len(s.drain.polls)
	s.drain.pmu.Unlock()
	wt := 0
	if s.wt != nil {
		wt = s.wt.Open()
	}
	return s.mqtt.Stats().Connections + s.drain.ws.Open() + s.drain.sse.Open() + polls + wt
}

// pollLeavers returns a function per waiting long-poll that answers it.
func (s *Server) pollLeavers() []func(context.Context) {
	s.drain.pmu.Lock()
	defer s.drain.pmu.Unlock()
	leave := make([]func(context.Context), 0, len(s.drain.polls))
	for cancel := range s.drain.polls {
		leave = append(leave, func(context.Context) { (*cancel)() })
	}
	return leave
}

// drainRetryAfter is the Retry-After of the requests a draining edge
// refuses: the client should come back at once, to another edge.
const drainRetryAfter = 1

// gate refuses new requests once the edge drains (503, JSON, Retry-After;
// /healthz still answers) and registers long-polls so that a drain can
// answer them.
func (s *Server) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Draining() && r.URL.Path != "/healthz" {
			w.Header().Set("Retry-After", strconv.Itoa(drainRetryAfter))
			w.Header().Set("Connection", "close")
			httpapi.WriteJSON(w, http.StatusServiceUnavailable, httpapi.ErrorBody{Error: httpapi.ErrorDetail{
				Code: fault.CodeUnavailable, Message: "this edge is shutting down: retry, on another edge"}})
			return
		}
		if r.URL.Path == "/poll" {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			key := &cancel
			s.drain.pmu.Lock()
			if s.drain.polls == nil {
				s.drain.polls = make(map[*context.CancelFunc]struct{})
			}
			s.drain.polls[key] = struct{}{}
			s.drain.pmu.Unlock()
			defer func() {
				s.drain.pmu.Lock()
				delete(s.drain.polls, key)
				s.drain.pmu.Unlock()
			}()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// RunDraining runs the edge (Run) until ctx ends, then drains it (Drain)
// and closes what is left (Run's end).
func (s *Server) RunDraining(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	s.Drain(context.WithoutCancel(ctx))
	cancel()
	return <-done
}
