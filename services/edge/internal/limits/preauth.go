package limits

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"

	"github.com/heraldmq/herald/services/edge/internal/auth"
)

// PreAuth bounds, per source address (auth.SourceKey: the IPv4 address,
// the IPv6 /64), the connections of a listener that have not
// authenticated yet: accepted, and no request on them has presented a
// credential that was accepted. Timeouts bound how long each such
// connection lives (the HTTP server's header and idle timeouts, MQTT's
// connect timeout); PreAuth bounds how many one source holds at once, so
// that a single host cannot hold thousands of sockets, and their memory,
// without ever authenticating.
//
// A connection accepted while its source holds the maximum is closed at
// once, before anything is read from it (a TLS handshake included): the
// policy when the bound is reached. A connection is released from the
// count when a request on it authenticates (Authenticated) or when it
// closes. Anonymous clients of a development tenant count as
// authenticated. Behind a proxy or a NAT, many clients share a source:
// the bound must leave room for their connections between accept and
// their first request.
type PreAuth struct {
	max int

	mu   sync.Mutex
	held map[string]int // unauthenticated connections by source

	refused atomic.Uint64
}

// NewPreAuth returns a PreAuth allowing max unauthenticated connections per
// source; max <= 0 means no bound.
func NewPreAuth(max int) *PreAuth {
	return &PreAuth{max: max, held: map[string]int{}}
}

// Refused returns how many connections were closed at accept because their
// source held the maximum.
func (p *PreAuth) Refused() uint64 { return p.refused.Load() }

// Held returns the unauthenticated connections the source of addr holds.
func (p *PreAuth) Held(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held[auth.SourceKey(addr)]
}

// Listener returns l counting its connections against their sources. A
// nil PreAuth or one without a bound returns l itself.
func (p *PreAuth) Listener(l net.Listener) net.Listener {
	if p == nil || p.max <= 0 {
		return l
	}
	return &preAuthListener{Listener: l, p: p}
}

type preAuthListener struct {
	net.Listener
	p *PreAuth
}

// Accept returns the next connection whose source is under the bound,
// closing those over it.
func (l *preAuthListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := auth.SourceKey(c.RemoteAddr().String())
		l.p.mu.Lock()
		if l.p.held[src] >= l.p.max {
			l.p.mu.Unlock()
			l.p.refused.Add(1)
			c.Close()
			continue
		}
		l.p.held[src]++
		l.p.mu.Unlock()
		return &preAuthConn{Conn: c, p: l.p, src: src}, nil
	}
}

// preAuthConn is a connection counted against its source until released.
type preAuthConn struct {
	net.Conn
	p        *PreAuth
	src      string
	released atomic.Bool
}

// release takes the connection out of its source's count, once.
func (c *preAuthConn) release() {
	if !c.released.CompareAndSwap(false, true) {
		return
	}
	c.p.mu.Lock()
	if c.p.held[c.src]--; c.p.held[c.src] <= 0 {
		delete(c.p.held, c.src)
	}
	c.p.mu.Unlock()
}

// Close implements net.Conn.
func (c *preAuthConn) Close() error {
	c.release()
	return c.Conn.Close()
}

type preAuthKey struct{}

// ConnContext is for http.Server.ConnContext: it makes the connection
// reachable from its requests' contexts, for Authenticated.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*preAuthConn); ok {
		return context.WithValue(ctx, preAuthKey{}, pc)
	}
	return ctx
}

// Authenticated releases the connection that ctx's request came on from
// its source's count of unauthenticated connections: call it once a
// credential on the connection was accepted. Idempotent; a no-op for a
// context without such a connection.
func Authenticated(ctx context.Context) {
	if pc, ok := ctx.Value(preAuthKey{}).(*preAuthConn); ok {
		pc.release()
	}
}
