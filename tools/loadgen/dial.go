package main

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// sources hands out local source addresses 127.0.0.1 … 127.0.0.<n> in turn,
// so that N connections to one server port need not share 64k ports.
type sources struct {
	n    int
	next atomic.Uint64
}

func (s *sources) addr() *net.TCPAddr {
	i := s.next.Add(1) % uint64(s.n)
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}
}

func (s *sources) dialer() *net.Dialer {
	return &net.Dialer{LocalAddr: s.addr(), Timeout: 10 * time.Second}
}

func (s *sources) dial(ctx context.Context, addr string) (net.Conn, error) {
	return s.dialer().DialContext(ctx, "tcp", addr)
}

// httpClient returns an HTTP client whose every connection comes from the
// next source address.
func (s *sources) httpClient() *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return s.dialer().DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 1 << 16,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr}
}
