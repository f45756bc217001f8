package edge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"github.com/eclipse/paho.golang/paho"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/testserver"
	"github.com/heraldmq/herald/services/edge"
)

// start runs an edge over an embedded NATS server with cfg (addresses and
// a default ID filled in) and returns its HTTP address.
func start(t *testing.T, cfg edge.Config, opts ...edge.Option) string {
	t.Helper()
	_, _, httpURL := startServer(t, cfg, opts...)
	return strings.TrimPrefix(httpURL, "http://")
}

// startServer runs an edge as start does and returns it with its MQTT
// address and HTTP base URL.
func startServer(t *testing.T, cfg edge.Config, opts ...edge.Option) (s *edge.Server, mqttAddr, httpURL string) {
	t.Helper()
	ns := testserver.NATS(t)
	bb, err := backbone.New(testserver.NATSConn(t, ns), backbone.Config{MemoryStorage: true, MaxBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cfg.MQTTAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	if cfg.ID == "" {
		cfg.ID = "edge-t"
	}
	s, err = edge.New(cfg, bb, nil, nil, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("edge run: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	ma, ha, err := s.Addrs(wctx)
	if err != nil {
		t.Fatal(err)
	}
	return s, ma.String(), "http://" + ha.String()
}

// selfSigned writes a certificate for 127.0.0.1 and its key to files and
// returns their paths and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	return testserver.LocalhostCertFiles(t, time.Hour)
}

// sseOverHTTP2 opens an SSE stream with client, checks it is HTTP/2 and
// carries the edge header, publishes through the same client and reads
// the message back.
func sseOverHTTP2(t *testing.T, client *http.Client, base string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?topic=h2/%23", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || resp.Header.Get(edge.HeaderEdge) != "edge-t" {
		t.Fatalf("got %s %d, edge %q; want HTTP/2 200 from edge-t", resp.Proto, resp.StatusCode, resp.Header.Get(edge.HeaderEdge))
	}
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
	pub, err := client.Post(base+"/publish?topic=h2/x", "text/plain", strings.NewReader("over h2"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, pub.Body)
	pub.Body.Close()
	if pub.StatusCode != http.StatusOK || pub.ProtoMajor != 2 {
		t.Fatalf("publish: %s %d", pub.Proto, pub.StatusCode)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: ") {
			if !strings.Contains(line, `"payload":"over h2"`) {
				t.Fatalf("data %q", line)
			}
			return
		}
	}
}

// TestSSEOverTLSHTTP2 ensures the HTTP listener serves TLS with HTTP/2 by
// ALPN and an SSE stream works over it.
func TestSSEOverTLSHTTP2(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	cfg := edge.Config{AnonymousTenant: "dev"}
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	addr := start(t, cfg)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP2(true)
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	sseOverHTTP2(t, client, "https://"+addr)
}

// TestSSEOverH2C ensures h2c serves HTTP/2 with prior knowledge on the
// plaintext listener, for SSE and publish, next to HTTP/1.1.
func TestSSEOverH2C(t *testing.T) {
	addr := start(t, edge.Config{AnonymousTenant: "dev", H2C: true})
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	sseOverHTTP2(t, client, "http://"+addr)

	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP/1.1 next to h2c: %s %d", resp.Proto, resp.StatusCode)
	}
}

// TestCORSAndEdgeHeader ensures every endpoint answers with the edge's id,
// an allowed origin gets CORS headers and a preflight for POST /publish,
// and another origin gets none.
func TestCORSAndEdgeHeader(t *testing.T) {
	cfg := edge.Config{AnonymousTenant: "dev", ID: "edge-c"}
	cfg.CORS.AllowedOrigins = []string{"https://app.example"}
	cfg.CORS.AllowCredentials = true
	base := "http://" + start(t, cfg)

	req, _ := http.NewRequest(http.MethodOptions, base+"/publish?topic=a", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		h.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "content-type") || h.Get(edge.HeaderEdge) != "edge-c" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, h)
	}

	for _, origin := range []string{"https://app.example", "https://evil.example"} {
		req, _ = http.NewRequest(http.MethodPost, base+"/publish?topic=a", strings.NewReader("x"))
		req.Header.Set("Origin", origin)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		allowed := resp.Header.Get("Access-Control-Allow-Origin")
		if resp.StatusCode != http.StatusOK || resp.Header.Get(edge.HeaderEdge) != "edge-c" ||
			(origin == "https://app.example") != (allowed == origin) {
			t.Fatalf("%s: %d, allow-origin %q", origin, resp.StatusCode, allowed)
		}
		if allowed != "" && resp.Header.Get("Access-Control-Expose-Headers") != edge.HeaderEdge {
			t.Fatalf("%s: expose %q", origin, resp.Header.Get("Access-Control-Expose-Headers"))
		}
	}
}

// TestDemoPage ensures the example page and its script are served in
// development mode (an anonymous tenant) and not otherwise.
func TestDemoPage(t *testing.T) {
	for _, tc := range []struct {
		cfg  edge.Config
		want int
	}{
		{edge.Config{AnonymousTenant: "dev"}, http.StatusOK},
		{edge.Config{AnonymousTenant: "dev", Demo: edge.DemoOff}, http.StatusNotFound},
		{edge.Config{}, http.StatusNotFound},
		{edge.Config{Demo: edge.DemoOn}, http.StatusOK},
	} {
		base := "http://" + start(t, tc.cfg)
		for _, path := range []string{"/", "/demo/app.js"} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%+v %s: %d", tc.cfg, path, resp.StatusCode)
			}
			if tc.want == http.StatusOK && (len(body) == 0 || strings.Contains(string(body), "://cdn")) {
				t.Fatalf("%s: body %q", path, body)
			}
		}
	}
}

// TestConfigValidate ensures inconsistent TLS, h2c, demo, CORS and HTTP
// bound settings are refused, and that the HTTP bounds have their
// documented defaults.
func TestConfigValidate(t *testing.T) {
	bad := []edge.Config{
		{TLS: edge.TLSConfig{CertFile: "c.pem"}},
		{TLS: edge.TLSConfig{CertFile: "c.pem", KeyFile: "k.pem"}, H2C: true},
		{Demo: "maybe"},
	}
	c := edge.Config{}
	c.CORS.AllowedOrigins, c.CORS.AllowCredentials = []string{"*"}, true
	bad = append(bad, c)
	c = edge.Config{}
	c.CORS.AllowedOrigins = []string{"app.example"}
	bad = append(bad, c)
	for _, h := range []edge.HTTPConfig{{ReadHeaderTimeout: -1}, {IdleTimeout: -1}, {BodyTimeout: -1}, {MaxUnauthenticatedPerSource: -2}} {
		bad = append(bad, edge.Config{HTTP: h})
	}
	for _, c := range bad {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (edge.Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (edge.Config{HTTP: edge.HTTPConfig{MaxUnauthenticatedPerSource: -1}}).Validate(); err != nil {
		t.Fatalf("no bound on unauthenticated connections refused: %v", err)
	}
	if h := (edge.HTTPConfig{}).WithDefaults(); h.ReadHeaderTimeout != edge.DefaultHTTPReadHeaderTimeout ||
		h.IdleTimeout != edge.DefaultHTTPIdleTimeout || h.BodyTimeout != edge.DefaultHTTPBodyTimeout ||
		h.MaxUnauthenticatedPerSource != edge.DefaultHTTPMaxUnauthenticatedPerSource {
		t.Fatalf("HTTP defaults %+v", h)
	}
}

// TestMQTTOverTLS ensures the edge serves MQTT over TLS with the configured
// certificate: an Eclipse Paho v5 client that trusts it publishes and
// receives its own message, and a plaintext client is refused.
func TestMQTTOverTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start(t, edge.Config{AnonymousTenant: "dev", MQTTTLSAddr: addr,
		TLS: edge.TLSConfig{CertFile: certFile, KeyFile: keyFile}})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var conn net.Conn
	for {
		conn, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // the listener opens right after start returns
	}
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *paho.Publish, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { got <- pr.Packet; return true, nil }}})
	if ca, err := c.Connect(ctx, &paho.Connect{ClientID: "tls1", CleanStart: true, KeepAlive: 30}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect over TLS: %v", err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "tls/x", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "tls/x", QoS: 1, Payload: []byte("secret")}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if string(p.Payload) != "secret" {
			t.Fatalf("got %q", p.Payload)
		}
	case <-ctx.Done():
		t.Fatal("no message over TLS")
	}
	// A plaintext CONNECT on the TLS port is not MQTT to it: no CONNACK.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = raw.Write([]byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 'x'})
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4)
	if n, _ := raw.Read(b); n >= 2 && b[0] == 0x20 {
		t.Fatal("plaintext client got a CONNACK on the TLS port")
	}
}
