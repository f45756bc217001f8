package sse_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/sse"
)

// waitUntil polls cond until it holds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in time", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClientGoneReleasesStream ensures a detached stream whose client
// closes the connection leaves the hub at once, with no write needed to
// notice it.
func TestClientGoneReleasesStream(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	srv := serve(t, sse.Config{Heartbeat: time.Hour}, n)
	c := open(t, srv, "topic=a&topic=b", nil)
	if got := n.Subscriptions(); got != 2 {
		t.Fatalf("hub holds %d subscriptions, want 2", got)
	}
	c.cancel()
	waitUntil(t, "subscriptions released", func() bool { return n.Subscriptions() == 0 })
}

// TestEndStreams ensures EndStreams ends every detached stream in order:
// the given tail (a retry: field) as the last data, then the end of the
// chunked body, so the client sees a complete stream end, not an error.
func TestEndStreams(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	h := sse.NewHandler(sse.Config{}, n)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/sse?topic=a")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
	// A live message is written by the detached stream only: once it is
	// read, the stream is detached.
	publish(t, n, "a", []byte("before"))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the live message: %v", err)
		}
		if strings.Contains(line, `"payload":"before"`) {
			break
		}
	}
	h.EndStreams(func() []byte { return []byte("retry: 4321\n\n") })
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("body after EndStreams: %v (read %q)", err, rest)
	}
	if !strings.HasSuffix(string(rest), "retry: 4321\n\n") {
		t.Fatalf("stream ended with %q", rest)
	}
	waitUntil(t, "subscription released", func() bool { return n.Subscriptions() == 0 })
}

// TestHTTP2Stream ensures a stream over HTTP/2, which cannot be hijacked,
// still carries live messages and heartbeats, and ends with its request.
func TestHTTP2Stream(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	srv := httptest.NewUnstartedServer(sse.NewHandler(sse.Config{Heartbeat: 50 * time.Millisecond}, n))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sse?topic=h2", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() string {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("stream ended: %v", sc.Err())
		}
		return sc.Text()
	}
	if line := next(); !strings.HasPrefix(line, "retry: ") {
		t.Fatalf("first line %q", line)
	}
	publish(t, n, "h2", []byte("over h2"))
	var sawData, sawPing bool
	for !sawData || !sawPing {
		switch line := next(); {
		case strings.HasPrefix(line, "data: ") && strings.Contains(line, `"payload":"over h2"`):
			sawData = true
		case line == ": ping":
			sawPing = true
		}
	}
	cancel()
	waitUntil(t, "subscription released", func() bool { return n.Subscriptions() == 0 })
}

// TestHTTP2StreamLeaves ensures a drain ends an HTTP/2 stream as it ends
// an HTTP/1 one — the one writer writes the tail (a retry: field) as the
// stream's last data and ends the response — rather than leaving it to
// the end of the request.
func TestHTTP2StreamLeaves(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	h := sse.NewHandler(sse.Config{Heartbeat: time.Hour}, n)
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL + "/sse?topic=h2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
	waitUntil(t, "stream open", func() bool { return h.Open() == 1 })
	leave := h.Leavers(func() []byte { return []byte("retry: 4321\n\n") })
	if len(leave) != 1 {
		t.Fatalf("%d streams to leave, want 1", len(leave))
	}
	leave[0](context.Background())
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("body after the drain: %v (read %q)", err, rest)
	}
	if !strings.HasSuffix(string(rest), "retry: 4321\n\n") {
		t.Fatalf("stream ended with %q", rest)
	}
	waitUntil(t, "subscription released", func() bool { return n.Subscriptions() == 0 })
}
