package limits

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, addr, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c within d.
func closedByServer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF || (err != nil && !isTimeout(err))
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestPreAuth ensures a source holds at most the bound of unauthenticated
// connections (the next one is closed at accept, other sources are not
// affected), and that a connection that authenticates or closes gives its
// place back, once.
func TestPreAuth(t *testing.T) {
	p := NewPreAuth(3)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := p.Listener(raw)
	defer l.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	addr := raw.Addr().String()
	next := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no connection accepted")
			return nil
		}
	}

	var server []net.Conn
	for range 3 {
		dialFrom(t, addr, "127.0.0.1")
		server = append(server, next())
	}
	over := dialFrom(t, addr, "127.0.0.1")
	if !closedByServer(over, 5*time.Second) {
		t.Fatal("a fourth unauthenticated connection from the source was kept")
	}
	if p.Refused() != 1 || p.Held("127.0.0.1:1") != 3 {
		t.Fatalf("refused %d, held %d; want 1, 3", p.Refused(), p.Held("127.0.0.1:1"))
	}
	// Another source is not affected.
	other := dialFrom(t, addr, "127.0.0.2")
	next()
	if closedByServer(other, 100*time.Millisecond) {
		t.Fatal("another source's connection was closed")
	}

	// Authenticated (twice: once counts) and closed connections free
	// their place.
	ctx := ConnContext(context.Background(), server[0])
	Authenticated(ctx)
	Authenticated(ctx)
	server[0].Close() // already released: no second release
	if got := p.Held("127.0.0.1:1"); got != 2 {
		t.Fatalf("held %d after one authenticated, want 2", got)
	}
	server[1].Close()
	server[1].Close()
	if got := p.Held("127.0.0.1:1"); got != 1 {
		t.Fatalf("held %d after one closed, want 1", got)
	}
	for range 2 {
		c := dialFrom(t, addr, "127.0.0.1")
		next()
		if closedByServer(c, 100*time.Millisecond) {
			t.Fatal("a connection under the bound was closed")
		}
	}
	if p.Refused() != 1 {
		t.Fatalf("refused %d, want 1", p.Refused())
	}
	// A context of no counted connection is ignored.
	Authenticated(context.Background())
}

// TestPreAuthUnbounded ensures no bound leaves the listener as it is.
func TestPreAuthUnbounded(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, p := range []*PreAuth{nil, NewPreAuth(0), NewPreAuth(-1)} {
		if l := p.Listener(raw); l != raw {
			t.Fatalf("%+v wrapped the listener", p)
		}
	}
}
