package edge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/ops"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge"
)

const waitFor = 10 * time.Second

// TestDrain ensures a draining edge turns unready at once, takes no new
// client, and asks each of its clients to leave in its own protocol: MQTT
// 5 DISCONNECT 0x8B with a reason string, WebSocket close 1012, an SSE
// "retry:" within the configured range then the end of the stream, and an
// answered long-poll; and that the drain ends once they have left.
func TestDrain(t *testing.T) {
	const retryMin, retryMax = 700, 900 // ms
	s, mqttAddr, base := startServer(t, edge.Config{ID: "edge-drain", AnonymousTenant: "dev", Drain: edge.DrainConfig{Timeout: 4 * time.Second,
		RetryMin: retryMin * time.Millisecond, RetryMax: retryMax * time.Millisecond}})
	o := ops.New()
	o.AddCheck("edge", s.Ready)
	opsSrv := httptest.NewServer(o.Handler())
	defer opsSrv.Close()
	if st := status(t, opsSrv.URL+"/readyz"); st != http.StatusOK {
		t.Fatalf("readyz %d before the drain", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitFor)
	defer cancel()

	// MQTT 5.
	disconnects := make(chan *paho.Disconnect, 1)
	conn, err := net.Dial("tcp", mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	mc := paho.NewClient(paho.ClientConfig{Conn: conn, OnServerDisconnect: func(d *paho.Disconnect) { disconnects <- d }})
	if _, err := mc.Connect(ctx, &paho.Connect{ClientID: "drained", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	// WebSocket, subscribed.
	wc, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.CloseNow()
	if err := wc.Write(ctx, websocket.MessageText, []byte(`{"op":"subscribe","id":"1","topic":"d/x"}`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := wc.Read(ctx); err != nil || !strings.Contains(string(b), `"ack"`) {
		t.Fatalf("subscribe: %s %v", b, err)
	}
	// SSE.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?topic=d/x", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("sse: %v %v", resp, err)
	}
	defer resp.Body.Close()
	events := bufio.NewReader(resp.Body)
	if line, err := events.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("sse starts with %q %v", line, err)
	}
	// A long-poll, waiting.
	var first struct{ Cursor string }
	getJSON(t, base+"/poll?topic=d/x", &first)
	polled := make(chan int, 1)
	go func() {
		resp, err := http.Get(base + "/poll?timeout=120&topic=d/x&cursor=" + first.Cursor)
		if err != nil {
			polled <- 0
			return
		}
		resp.Body.Close()
		polled <- resp.StatusCode
	}()
	waitClients(t, s, 4)

	report := make(chan edge.DrainReport, 1)
	go func() { report <- s.Drain(context.Background()) }()

	for st := status(t, opsSrv.URL+"/readyz"); st != http.StatusServiceUnavailable; st = status(t, opsSrv.URL+"/readyz") {
		if ctx.Err() != nil {
			t.Fatalf("readyz %d while draining", st)
		}
	}
	refusedMQTT(t, mqttAddr)
	refusedHTTP(t, base+"/sse?topic=d/x")

	select {
	case d := <-disconnects:
		if d.ReasonCode != 0x8B || d.Properties == nil || d.Properties.ReasonString == "" {
			t.Errorf("MQTT: DISCONNECT %#x %+v, want 0x8B with a reason string", d.ReasonCode, d.Properties)
		}
	case <-ctx.Done():
		t.Error("MQTT: no DISCONNECT")
	}
	for {
		if _, _, err := wc.Read(ctx); err != nil {
			if code := websocket.CloseStatus(err); code != websocket.StatusServiceRestart {
				t.Errorf("WebSocket closed with %d (%v), want 1012", code, err)
			}
			break
		}
	}
	var retries []int
	for {
		line, err := events.ReadString('\n')
		if v, ok := strings.CutPrefix(line, "retry: "); ok {
			ms, _ := strconv.Atoi(strings.TrimSpace(v))
			retries = append(retries, ms)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("SSE ended with %v, want EOF", err)
			}
			break
		}
	}
	if len(retries) != 1 || retries[0] < retryMin || retries[0] > retryMax {
		t.Errorf("SSE retry fields at the end %v, want one in [%d, %d]", retries, retryMin, retryMax)
	}
	if st := <-polled; st != http.StatusOK {
		t.Errorf("long-poll answered %d", st)
	}
	if r := <-report; r.Clients != 4 || r.Left != 0 {
		t.Errorf("drain report %+v, want 4 clients and none left", r)
	}
}

// waitClients waits until s counts n clients (they are set up).
func waitClients(t *testing.T, s *edge.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for s.Clients() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d clients, want %d", s.Clients(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// refusedMQTT fails unless a new MQTT client is refused: no connection, or
// CONNACK 0x88 (server unavailable) if it reached the server.
func refusedMQTT(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ack, err := paho.NewClient(paho.ClientConfig{Conn: conn}).Connect(ctx, &paho.Connect{ClientID: "late", CleanStart: true})
	if err == nil || (ack != nil && ack.ReasonCode != 0x88) {
		t.Errorf("MQTT client admitted while draining: %+v %v", ack, err)
	}
}

// refusedHTTP fails unless a new HTTP request is refused: no connection,
// or 503 with Retry-After and a JSON error.
func refusedHTTP(t *testing.T, url string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitFor}
	resp, err := c.Get(url)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var body struct{ Error struct{ Code string } }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || body.Error.Code == "" {
		t.Errorf("HTTP request while draining: %d Retry-After %q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestNotReadyUntilListening ensures an edge is not ready before Run has
// bound its listeners — a balancer following /readyz would otherwise send
// clients to a port that refuses them — and is once they are.
func TestNotReadyUntilListening(t *testing.T) {
	ns := testserver.NATS(t)
	bb, err := backbone.New(testserver.NATSConn(t, ns), backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s, err := edge.New(edge.Config{ID: "edge-ready", AnonymousTenant: "dev", MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, bb, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(t.Context()); !errors.Is(err, edge.ErrNotListening) {
		t.Fatalf("Ready before Run: %v, want %v", err, edge.ErrNotListening)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("edge run: %v", err)
		}
	}()
	if _, _, err := s.Addrs(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready once listening: %v", err)
	}
}
