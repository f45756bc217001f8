package hostile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestHTTPHostile ensures hostile HTTP, SSE, poll and WebSocket input from
// an authenticated client is refused with the documented status and JSON
// error code (or WebSocket close code), and that the server keeps serving.
func TestHTTPHostile(t *testing.T) {
	filters := func(n int) string {
		q := url.Values{}
		for i := range n {
			q.Add("topic", fmt.Sprintf("f/%d", i))
		}
		return q.Encode()
	}
	rows := []struct {
		name, method, path, contentType string
		body                            []byte
		status                          int
		code                            string
	}{
		{"SSE with a malformed Last-Event-ID (lastEventId)", "GET", "/sse?topic=a&lastEventId=x-", "", nil, 400, "bad_request"},
		{"SSE with a position past 2^64", "GET", "/sse?topic=a&lastEventId=e-18446744073709551616", "", nil, 400, "bad_request"},
		{"SSE with 33 topic filters", "GET", "/sse?" + filters(33), "", nil, 400, "bad_request"},
		{"SSE with a filter deeper than the level limit", "GET", "/sse?topic=" + url.QueryEscape(strings.Repeat("a/", 32)+"a"), "", nil, 400, "invalid_topic"},
		{"poll with a negative timeout", "GET", "/poll?topic=a&timeout=-1", "", nil, 400, "bad_request"},
		{"poll with a NaN timeout", "GET", "/poll?topic=a&timeout=NaN", "", nil, 400, "bad_request"},
		{"poll with a malformed cursor", "GET", "/poll?topic=a&cursor=--", "", nil, 400, "bad_request"},
		{"publish of a body over 1 MiB", "POST", "/publish?topic=a", "", make([]byte, 1<<20+1), 413, "payload_too_large"},
		{"publish to a wildcard topic", "POST", "/publish?topic=a/%23", "", []byte("x"), 400, "invalid_topic"},
		{"publish to an invalid UTF-8 topic", "POST", "/publish?topic=a%ff", "", []byte("x"), 400, "invalid_topic"},
		{"publish with qos 2", "POST", "/publish?topic=a&qos=2", "", []byte("x"), 400, "bad_request"},
		{"batch of 1001 messages", "POST", "/publish", "application/json", batch(1001), 400, "bad_request"},
		{"batch that is not JSON", "POST", "/publish", "application/json", []byte(`{"messages":[`), 400, "bad_request"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, row.method, srv.HTTP+row.path, bytes.NewReader(row.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+acmeKey)
			if row.contentType != "" {
				req.Header.Set("Content-Type", row.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct{ Code string } `json:"error"`
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			if err := json.Unmarshal(b, &body); err != nil || resp.StatusCode != row.status || body.Error.Code != row.code {
				t.Fatalf("%d %s, want %d with code %q", resp.StatusCode, b, row.status, row.code)
			}
			if err := srv.alive(); err != nil {
				t.Fatalf("server after the attack: %v", err)
			}
		})
	}
	t.Run("WebSocket frame over the maximum: close 1009", func(t *testing.T) {
		c := dialWS(t)
		c.SetReadLimit(1 << 22)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("x"), 1<<20+1))
		if code := wsCloseCode(ctx, c); code != websocket.StatusMessageTooBig {
			t.Fatalf("close %v, want 1009", code)
		}
	})
	t.Run("WebSocket malformed frames in a row: close 1008", func(t *testing.T) {
		c := dialWS(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for range 20 {
			if err := c.Write(ctx, websocket.MessageText, []byte(`{"op":`)); err != nil {
				break
			}
		}
		if code := wsCloseCode(ctx, c); code != websocket.StatusPolicyViolation {
			t.Fatalf("close %v, want 1008", code)
		}
	})
	// Raw frames no client library sends, each after a ping the server
	// answers: the close code comes at once, not after the idle timeout.
	for _, tc := range []struct {
		name  string
		frame []byte
		code  int
	}{
		{"WebSocket text frame of invalid UTF-8: close 1007", clientFrame(0x1, []byte("{\"op\":\"ping\",\"id\":\"\xff\"}"), true, -1), 1007},
		{"WebSocket unmasked client frame: close 1002", clientFrame(0x1, []byte(`{"op":"ping","id":"1"}`), false, -1), 1002},
		{"WebSocket frame header claiming 1 GiB, then nothing: close 1009 at once", clientFrame(0x1, nil, true, 1<<30), 1009},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRawWS(t)
			ping := clientFrame(0x1, []byte(`{"op":"ping","id":"p"}`), true, -1)
			if _, err := c.Write(append(ping, tc.frame...)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			code, texts := c.closeCode(5 * time.Second)
			if code != tc.code || len(texts) != 1 || !strings.Contains(texts[0], `"pong"`) {
				t.Fatalf("close %d after %v (frames %q), want the pong then %d within 5s", code, time.Since(start), texts, tc.code)
			}
			if err := srv.alive(); err != nil {
				t.Fatalf("server after the attack: %v", err)
			}
		})
	}
	t.Run("HTTP headers never finished (slowloris): closed after the header timeout", func(t *testing.T) {
		t.Parallel()
		c, err := net.Dial("tcp", strings.TrimPrefix(srv.HTTP, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("GET /sse?topic=a HTTP/1.1\r\nHost: x\r\nX-Slow: "))
		if !closedWithin(c, 20*time.Second) {
			t.Fatal("still open after 20s")
		}
	})
}

// dialWS opens a native WebSocket of acme.
func dialWS(t *testing.T) *websocket.Conn { return dialWSToken(t, acmeKey) }

// wsCloseCode reads until the connection ends and returns its close code.
func wsCloseCode(ctx context.Context, c *websocket.Conn) websocket.StatusCode {
	for {
		if _, _, err := c.Read(ctx); err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return -1
		}
	}
}

func batch(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"messages":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"topic":"a","payload":"x"}`)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// rawWS is a native WebSocket of acme written frame by frame: the attacks
// need frames no client library sends.
type rawWS struct {
	net.Conn
	r *bufio.Reader
}

// dialRawWS upgrades a TCP connection to /ws with acme's key.
func dialRawWS(t *testing.T) *rawWS {
	t.Helper()
	host := strings.TrimPrefix(srv.HTTP, "http://")
	c, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + acmeKey +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return &rawWS{Conn: c, r: r}
}

// clientFrame encodes a final frame of opcode, masked or not, its length
// claimed (claim >= 0) instead of the payload's own.
func clientFrame(opcode byte, payload []byte, masked bool, claim int64) []byte {
	n := int64(len(payload))
	if claim >= 0 {
		n = claim
	}
	var bit byte
	if masked {
		bit = 0x80
	}
	b := []byte{0x80 | opcode}
	switch {
	case n < 126:
		b = append(b, bit|byte(n))
	case n < 1<<16:
		b = binary.BigEndian.AppendUint16(append(b, bit|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, bit|127), uint64(n))
	}
	if !masked {
		return append(b, payload...)
	}
	key := []byte{1, 2, 3, 4}
	b = append(b, key...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// closeCode reads the server's frames until its close frame and returns
// the close code (-1: the connection ended, or d passed, without one) and
// the text frames before it.
func (c *rawWS) closeCode(d time.Duration) (int, []string) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	var texts []string
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			return -1, texts
		}
		n := int(h[1] & 0x7f)
		if n == 126 {
			var l [2]byte
			if _, err := io.ReadFull(c.r, l[:]); err != nil {
				return -1, texts
			}
			n = int(binary.BigEndian.Uint16(l[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c.r, p); err != nil {
			return -1, texts
		}
		switch h[0] & 0x0f {
		case 0x8:
			if len(p) < 2 {
				return 1005, texts
			}
			return int(binary.BigEndian.Uint16(p)), texts
		case 0x1:
			texts = append(texts, string(p))
		}
	}
}
