package chaos

import (
	"net"
	"sync"
)

// blackhole is a TCP proxy to one upstream that can be cut: while cut it
// moves no byte in either direction and opens no upstream connection, but
// closes nothing — a network partition as a peer sees it (no RST, no FIN;
// TCP flow control stalls the senders), not a crash. It stands in for
// iptables, which these machines lack.
type blackhole struct {
	ln       net.Listener
	upstream string

	mu    sync.Mutex
	cut   bool
	heal  chan struct{} // closed when a cut ends
	conns []net.Conn
	// active counts the proxied connections up now.
	active int
	wg     sync.WaitGroup
}

func newBlackhole(upstream string) (*blackhole, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &blackhole{ln: ln, upstream: upstream, heal: make(chan struct{})}
	close(b.heal)
	b.wg.Add(1)
	go b.accept()
	return b, nil
}

func (b *blackhole) Addr() string { return b.ln.Addr().String() }

// Active is the number of connections through the proxy now.
func (b *blackhole) Active() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.active
}

// Cut starts the partition; Heal ends it.
func (b *blackhole) Cut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.cut {
		b.cut, b.heal = true, make(chan struct{})
	}
}

func (b *blackhole) Heal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		b.cut = false
		close(b.heal)
	}
}

// gate blocks while the proxy is cut.
func (b *blackhole) gate() {
	b.mu.Lock()
	h := b.heal
	b.mu.Unlock()
	<-h
}

// Close stops the proxy and every connection through it.
func (b *blackhole) Close() {
	b.ln.Close()
	b.Heal()
	b.mu.Lock()
	for _, c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *blackhole) track(c net.Conn) {
	b.mu.Lock()
	b.conns = append(b.conns, c)
	b.mu.Unlock()
}

func (b *blackhole) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.track(c)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.gate() // a connection opened during a cut waits for the heal
			u, err := net.Dial("tcp", b.upstream)
			if err != nil {
				c.Close()
				return
			}
			b.track(u)
			b.mu.Lock()
			b.active++
			b.mu.Unlock()
			var pair sync.WaitGroup
			pair.Add(2)
			b.wg.Add(2)
			go func() { defer pair.Done(); b.pipe(u, c) }()
			go func() { defer pair.Done(); b.pipe(c, u) }()
			pair.Wait()
			b.mu.Lock()
			b.active--
			b.mu.Unlock()
		}()
	}
}

// pipe copies src to dst, holding each chunk while the proxy is cut.
func (b *blackhole) pipe(dst, src net.Conn) {
	defer b.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			b.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: close the other side too
		}
	}
}
