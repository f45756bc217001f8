package hostile

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The bounds of the herald TestHTTPBounds runs, small so that the test
// sees them act.
const (
	boundHeader = 2 * time.Second
	boundIdle   = time.Second
	boundBody   = time.Second
	boundUnauth = 20
)

// TestHTTPBounds ensures the HTTP listener bounds what a client can hold
// without authenticating or while sending slowly (a herald run with small
// bounds): one source holds at most max_unauthenticated_per_source
// connections that never authenticated, the rest closed at accept, and
// those are closed after the header timeout; a keep-alive connection
// whose request was refused is closed after the idle timeout; a publish
// body sent at 1 byte per 300 ms is answered 408 after the body timeout
// (401 if the publish is refused before its body is read) and the
// connection closed. Established streams are not bounded: an SSE
// stream, a WebSocket and a long-poll outlive every bound, and
// authenticated connections do not count against the source.
func TestHTTPBounds(t *testing.T) {
	h, err := startHerald(t.TempDir(), "HERALD_ANONYMOUS_TENANT=dev",
		fmt.Sprintf("HERALD_HTTP_READ_HEADER_TIMEOUT=%s", boundHeader), fmt.Sprintf("HERALD_HTTP_IDLE_TIMEOUT=%s", boundIdle),
		fmt.Sprintf("HERALD_HTTP_BODY_TIMEOUT=%s", boundBody), fmt.Sprintf("HERALD_HTTP_MAX_UNAUTHENTICATED_PER_SOURCE=%d", boundUnauth))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			h.dump(os.Stderr)
		}
	})
	host := strings.TrimPrefix(h.HTTP, "http://")

	t.Run("connections that never send: at most the bound per source, closed after the header timeout", func(t *testing.T) {
		const n = 3 * boundUnauth
		conns := make([]net.Conn, n)
		for i := range conns {
			c, err := dialFrom(host, "127.0.5.1")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns[i] = c
		}
		// Those over the bound are closed at once; the others live until
		// the header timeout.
		open := stillOpen(conns, 500*time.Millisecond)
		if open != boundUnauth {
			t.Fatalf("%d of %d silent connections from one source open, want %d", open, n, boundUnauth)
		}
		if open := stillOpen(conns, boundHeader+3*time.Second); open != 0 {
			t.Fatalf("%d silent connections still open after the header timeout", open)
		}
		// Another source was never affected.
		c, err := dialFrom(host, "127.0.5.2")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if stillOpen([]net.Conn{c}, 300*time.Millisecond) != 1 {
			t.Fatal("another source's connection closed")
		}
	})

	t.Run("keep-alive connection after a refused request: closed after the idle timeout", func(t *testing.T) {
		c, err := dialFrom(host, "127.0.5.3")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /sse?topic=a HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer hk_nosuchkey_x\r\n\r\n", host)
		r := bufio.NewReader(c)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Close {
			t.Fatalf("%d (close %v), want 401 keeping the connection", resp.StatusCode, resp.Close)
		}
		start := time.Now()
		if !closedWithin(c, boundIdle+3*time.Second) {
			t.Fatalf("idle connection still open after %v", time.Since(start))
		}
		t.Logf("closed %v after its last answer", time.Since(start).Round(10*time.Millisecond))
	})

	for _, tc := range []struct {
		name, auth string
		status     int
	}{
		{"publish body at 1 byte per 300 ms: 408 after the body timeout, connection closed", "", http.StatusRequestTimeout},
		// Refused before its body is read: net/http reads the rest
		// before answering, under the same bound.
		{"refused publish with a body at 1 byte per 300 ms: 401 within the body timeout, connection closed",
			"Authorization: Bearer hk_nosuchkey_x\r\n", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialFrom(host, "127.0.5.4")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /publish?topic=slow HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n",
				host, tc.auth)
			start := time.Now()
			answered := make(chan *http.Response, 1)
			go func() {
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					close(answered)
					return
				}
				answered <- resp
			}()
			tick := time.NewTicker(300 * time.Millisecond)
			defer tick.Stop()
			for sent := 0; ; {
				select {
				case resp, ok := <-answered:
					took := time.Since(start)
					if !ok || resp.StatusCode != tc.status {
						t.Fatalf("answer %v after %v (%d bytes sent), want %d", resp, took, sent, tc.status)
					}
					if took > boundBody+3*time.Second {
						t.Fatalf("answered after %v", took)
					}
					if !closedWithin(c, 3*time.Second) {
						t.Fatal("connection still open after the answer")
					}
					t.Logf("%d after %v, %d of 100 bytes sent", resp.StatusCode, took.Round(10*time.Millisecond), sent)
					return
				case <-tick.C:
					if sent < 100 {
						_, _ = c.Write([]byte{'x'})
						sent++
					}
					if time.Since(start) > boundBody+5*time.Second {
						t.Fatalf("no answer after %v, %d bytes sent", time.Since(start), sent)
					}
				}
			}
		})
	}

	t.Run("established streams outlive every bound; authenticated connections do not count", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		client := clientFrom(t, "127.0.5.5")
		// More SSE streams from one source than it may hold
		// unauthenticated connections.
		var streams []*bufio.Reader
		for i := range boundUnauth + 5 {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.HTTP+"/sse?topic=bounds/x", nil)
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("SSE stream %d: %v %v", i, resp, err)
			}
			defer resp.Body.Close()
			streams = append(streams, bufio.NewReader(resp.Body))
		}
		ws := dialWSAt(t, h.HTTP, "")
		poll := make(chan int, 1)
		go func() {
			// A long-poll whose wait exceeds every bound.
			var first struct{ Cursor string }
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.HTTP+"/poll?topic=bounds/never&timeout=0", nil)
			resp, err := client.Do(req)
			if err == nil {
				err = jsonDecode(resp, &first)
			}
			if err != nil {
				poll <- -1
				return
			}
			req, _ = http.NewRequestWithContext(ctx, http.MethodGet, h.HTTP+"/poll?topic=bounds/never&timeout=5&cursor="+first.Cursor, nil)
			start := time.Now()
			resp, err = client.Do(req)
			if err != nil {
				poll <- -1
				return
			}
			resp.Body.Close()
			if time.Since(start) < 4*time.Second {
				poll <- -2
				return
			}
			poll <- resp.StatusCode
		}()
		time.Sleep(2*boundHeader + boundIdle + boundBody)
		pr, err := http.Post(h.HTTP+"/publish?topic=bounds/x", "text/plain", strings.NewReader("after the bounds"))
		if err != nil || pr.StatusCode != http.StatusOK {
			t.Fatalf("publish: %v %v", pr, err)
		}
		pr.Body.Close()
		var wg sync.WaitGroup
		for i, r := range streams {
			wg.Go(func() {
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						t.Errorf("SSE stream %d ended: %v", i, err)
						return
					}
					if strings.Contains(line, "after the bounds") {
						return
					}
				}
			})
		}
		wg.Wait()
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		if err := ws.Ping(wctx); err != nil {
			t.Fatalf("WebSocket after the bounds: %v", err)
		}
		if status := <-poll; status != http.StatusOK {
			t.Fatalf("long-poll: %d, want 200 after its 5 s wait", status)
		}
	})
}

// stillOpen waits d and returns how many of conns the server has not
// closed (a read then still waits for data rather than seeing the end).
func stillOpen(conns []net.Conn, d time.Duration) int {
	time.Sleep(d)
	open := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			open++
		}
	}
	return open
}

// dialWSAt opens a native WebSocket to the edge at base (http://…), with
// token if not empty.
func dialWSAt(t *testing.T, base, token string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{}
	if token != "" {
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + token}}
	}
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", opts)
	if err != nil {
		t.Fatalf("dial /ws: %v (%v)", err, resp)
	}
	t.Cleanup(func() { c.CloseNow() })
	// Pings need a reader.
	c.CloseRead(context.Background())
	return c
}

// jsonDecode decodes a response's JSON body and closes it.
func jsonDecode(resp *http.Response, out any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}
