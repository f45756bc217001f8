package edge_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	wt "github.com/quic-go/webtransport-go"

	"github.com/heraldmq/herald/services/edge"
)

// wtClient is a WebTransport session's control stream, speaking the
// WebSocket protocol's frames in the carrier's framing.
type wtClient struct {
	t    *testing.T
	sess *wt.Session
	str  *wt.Stream
	r    *bufio.Reader
}

// dialWT opens a session on url trusting pool, and its control stream.
func dialWT(t *testing.T, ctx context.Context, url string, pool *tls.Config) *wtClient {
	t.Helper()
	tr := &wt.Transport{TLSClientConfig: pool, QUICConfig: &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true}}
	t.Cleanup(func() { tr.Close() })
	resp, sess, err := tr.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dial %s: %d", url, resp.StatusCode)
	}
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.CloseWithError(0, "") })
	return &wtClient{t: t, sess: sess, str: str, r: bufio.NewReader(str)}
}

// writeRaw writes one frame of kind with data.
func (c *wtClient) writeRaw(kind byte, data []byte) {
	c.t.Helper()
	b := make([]byte, 5+len(data))
	b[0] = kind
	binary.BigEndian.PutUint32(b[1:], uint32(len(data)))
	copy(b[5:], data)
	if _, err := c.str.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wtClient) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	c.writeRaw(1, b)
}

// read returns the next frame, or the error that ended the stream.
func (c *wtClient) read() (wsFrame, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return wsFrame{}, err
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := io.ReadFull(c.r, b); err != nil {
		return wsFrame{}, err
	}
	var f wsFrame
	if err := json.Unmarshal(b, &f); err != nil {
		c.t.Fatalf("frame %q: %v", b, err)
	}
	return f, nil
}

func (c *wtClient) next() wsFrame {
	c.t.Helper()
	f, err := c.read()
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

// closedWith reads until the session ends and returns its error code
// (the control stream's reads fail with the session's error).
func (c *wtClient) closedWith() wt.SessionErrorCode {
	c.t.Helper()
	_ = c.str.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, err := c.read()
		if err == nil {
			continue
		}
		var se *wt.SessionError
		if errors.As(err, &se) {
			return se.ErrorCode
		}
		c.t.Fatalf("the control stream ended by %v, not a session close", err)
		return 0
	}
}

// startWT runs an edge with TLS and a WebTransport listener, admitting
// clients without credentials into tenant anonymous (none: ""), and
// returns its MQTT address, HTTPS base URL, the WebTransport URL and a TLS
// config for a client, checking GET /webtransport's certificate hash on
// the way.
func startWT(t *testing.T, anonymous string) (mqttAddr, base, url string, client *tls.Config) {
	t.Helper()
	certFile, keyFile, pool := selfSigned(t)
	cfg := edge.Config{AnonymousTenant: anonymous}
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	cfg.WebTransport.Addr = "127.0.0.1:0"
	_, mqttAddr, httpURL := startServer(t, cfg)
	base = "https://" + strings.TrimPrefix(httpURL, "http://")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(base + "/webtransport")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info edge.WebTransportInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /webtransport: %d %v", resp.StatusCode, err)
	}
	leaf := resp.TLS.PeerCertificates[0].Raw
	if h := sha256.Sum256(leaf); info.CertHash != base64.StdEncoding.EncodeToString(h[:]) {
		t.Fatalf("cert_hash %s is not the certificate's", info.CertHash)
	}
	return mqttAddr, base, info.URL, http3.ConfigureTLSConfig(&tls.Config{RootCAs: pool})
}

// TestWebTransport ensures a WebTransport session speaks the WebSocket
// protocol over its control stream: it receives what an MQTT client
// publishes, with its position; its publish is acknowledged with the
// position once stored and reaches an SSE client; and a new session that
// subscribes from the last position it had gets exactly what was
// published meanwhile, nothing twice.
func TestWebTransport(t *testing.T) {
	mqttAddr, base, url, tlsConf := startWT(t, "dev")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialWT(t, ctx, url, tlsConf)
	c.send(map[string]any{"op": "subscribe", "id": "s", "topic": "wt/#"})
	if f := c.next(); f.Type != "ack" {
		t.Fatalf("subscribe: %+v", f)
	}

	conn, err := net.Dial("tcp", mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	mc := paho.NewClient(paho.ClientConfig{Conn: conn})
	if _, err := mc.Connect(ctx, &paho.Connect{ClientID: "dev", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(&paho.Disconnect{})
	if _, err := mc.Publish(ctx, &paho.Publish{Topic: "wt/mqtt", QoS: 1, Payload: []byte("from mqtt")}); err != nil {
		t.Fatal(err)
	}
	got := c.next()
	if got.Type != "message" || got.Topic != "wt/mqtt" || got.Payload != "from mqtt" || got.Position == "" {
		t.Fatalf("message %+v, want from mqtt with its position", got)
	}

	tcp := tlsConf.Clone()
	tcp.NextProtos = nil // HTTP/1.1 over TLS, not h3
	next := sseEvents(t, ctx, &http.Client{Transport: &http.Transport{TLSClientConfig: tcp}}, base, "topic=wt/%23")
	c.send(map[string]any{"op": "publish", "id": "p", "topic": "wt/browser", "payload": "from wt", "qos": 1})
	var ack, echo wsFrame
	for ack.Type == "" || echo.Type == "" {
		switch f := c.next(); f.Type {
		case "ack":
			ack = f
		case "message":
			echo = f
		default:
			t.Fatalf("frame %+v", f)
		}
	}
	if ack.Position == "" || echo.Position != ack.Position || echo.Payload != "from wt" {
		t.Fatalf("publish ack %+v, own message %+v: want the stored position on both", ack, echo)
	}
	if ev := next(); ev.id != ack.Position || ev.data.Payload != "from wt" {
		t.Fatalf("sse: %+v, want from wt at %s", ev, ack.Position)
	}

	// Gone, then back from the last position it had: what came meanwhile
	// arrives, once, in order.
	_ = c.sess.CloseWithError(0, "bye")
	for _, p := range []string{"m1", "m2"} {
		if _, err := mc.Publish(ctx, &paho.Publish{Topic: "wt/mqtt", QoS: 1, Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
	c2 := dialWT(t, ctx, url, tlsConf)
	c2.send(map[string]any{"op": "subscribe", "id": "s", "topic": "wt/#", "from": echo.Position})
	if f := c2.next(); f.Type != "ack" {
		t.Fatalf("resubscribe: %+v", f)
	}
	for _, want := range []string{"m1", "m2"} {
		if f := c2.next(); f.Payload != want {
			t.Fatalf("resumed %+v, want %s", f, want)
		}
	}
	c2.send(map[string]any{"op": "ping", "id": "q"})
	if f := c2.next(); f.Type != "pong" {
		t.Fatalf("after the resume %+v, want the pong (nothing twice)", f)
	}
}

// TestWebTransportClientFaults ensures a client that breaks the carrier's
// rules gets the WebSocket protocol's close code as the session's error
// code: a frame claiming more than max_frame_size closes with 1009 on its
// header, an unknown frame kind with 1002, a text frame that is not UTF-8
// with 1007.
func TestWebTransportClientFaults(t *testing.T) {
	_, _, url, tlsConf := startWT(t, "dev")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		kind byte
		data []byte
		size uint32 // claimed, when set: nothing follows the header
		code wt.SessionErrorCode
	}{
		{"too big", 1, nil, 1 << 30, 1009},
		{"unknown kind", 9, []byte("{}"), 0, 1002},
		{"not utf-8", 1, []byte{0xff, 0xfe}, 0, 1007},
	} {
		c := dialWT(t, ctx, url, tlsConf)
		if tc.size > 0 {
			var hdr [5]byte
			hdr[0] = tc.kind
			binary.BigEndian.PutUint32(hdr[1:], tc.size)
			if _, err := c.str.Write(hdr[:]); err != nil {
				t.Fatal(err)
			}
		} else {
			c.writeRaw(tc.kind, tc.data)
		}
		if code := c.closedWith(); code != tc.code {
			t.Errorf("%s: closed with %d, want %d", tc.name, code, tc.code)
		}
	}
}

// TestWebTransportOrigin ensures a page of a foreign origin cannot open a
// session (403, before any session exists), while the edge's own pages —
// the same host name, on its HTTP port — can.
func TestWebTransportOrigin(t *testing.T) {
	_, base, url, tlsConf := startWT(t, "dev")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for origin, want := range map[string]int{"https://evil.example": http.StatusForbidden, base: http.StatusOK} {
		tr := &wt.Transport{TLSClientConfig: tlsConf, QUICConfig: &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true}}
		resp, sess, err := tr.Dial(ctx, url, http.Header{"Origin": {origin}})
		if resp == nil || resp.StatusCode != want {
			t.Errorf("Origin %s: %v, %v; want %d", origin, resp, err, want)
		}
		if sess != nil {
			_ = sess.CloseWithError(0, "")
		}
		tr.Close()
	}
}

// TestWebTransportNeedsCredentials ensures a session is authenticated as
// a WebSocket is: without a credential, where no anonymous tenant admits
// it, the session is refused (403) before it opens.
func TestWebTransportNeedsCredentials(t *testing.T) {
	_, _, url, tlsConf := startWT(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := &wt.Transport{TLSClientConfig: tlsConf, QUICConfig: &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true}}
	defer tr.Close()
	resp, sess, err := tr.Dial(ctx, url, nil)
	if resp == nil || resp.StatusCode != http.StatusForbidden || sess != nil {
		t.Fatalf("without a credential: %v, session %v, %v; want 403 and no session", resp, sess, err)
	}
}

// TestWebTransportConnectionWithoutSession ensures a QUIC connection that
// opens no session is closed (after 10 s) although its peer keeps it
// alive: only sessions, authenticated and counted, hold the edge for long.
func TestWebTransportConnectionWithoutSession(t *testing.T) {
	_, _, url, tlsConf := startWT(t, "dev")
	host := strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/wt")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, host, tlsConf, &quic.Config{KeepAlivePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-conn.Context().Done():
		var app *quic.ApplicationError
		if err := context.Cause(conn.Context()); !errors.As(err, &app) || !app.Remote {
			t.Fatalf("the connection ended by %v, want the server's close", err)
		}
	case <-ctx.Done():
		t.Fatal("a connection without a session stayed open")
	}
}
