package ws_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/ws"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opText  = 0x1
	opClose = 0x8
)

// wsFrame encodes a client frame by hand: masked unless unmasked, with the
// payload length claimed (claim >= 0) instead of the payload's own.
func wsFrame(opcode byte, payload []byte, unmasked bool, claim int64) []byte {
	n := int64(len(payload))
	if claim >= 0 {
		n = claim
	}
	b := []byte{0x80 | opcode}
	maskBit := byte(0x80)
	if unmasked {
		maskBit = 0
	}
	switch {
	case n < 126:
		b = append(b, maskBit|byte(n))
	case n < 1<<16:
		b = append(b, maskBit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if unmasked {
		return append(b, payload...)
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// rawWS is a WebSocket client that writes frames byte by byte: the
// attacks need frames no client library sends.
type rawWS struct {
	net.Conn
	r *bufio.Reader
}

// handshake is an upgrade request for /ws on host.
func handshake(host string) []byte {
	return []byte("GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
}

// dialRaw upgrades a TCP connection to srv's WebSocket; extra is written
// in the same write as the handshake (frames the server reads ahead).
func dialRaw(t *testing.T, srv *httptest.Server, extra []byte) *rawWS {
	t.Helper()
	host := strings.TrimPrefix(srv.URL, "http://")
	c, err := net.DialTimeout("tcp", host, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(append(handshake(host), extra...)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return &rawWS{Conn: c, r: r}
}

// next reads one server frame (servers do not mask).
func (c *rawWS) next(d time.Duration) (opcode byte, payload []byte, err error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	var h [2]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.r, l[:]); err != nil {
			return 0, nil, err
		}
		n = int64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.r, l[:]); err != nil {
			return 0, nil, err
		}
		n = int64(binary.BigEndian.Uint64(l[:]))
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.r, payload)
	return h[0] & 0x0f, payload, err
}

// closeCode reads server frames until a close frame and returns its
// code, the text frames before it, and how long it took; code -1 if the
// connection ended (or d passed) without one.
func (c *rawWS) closeCode(d time.Duration) (code int, texts []string, took time.Duration) {
	start := time.Now()
	for {
		op, p, err := c.next(d - time.Since(start))
		if err != nil {
			return -1, texts, time.Since(start)
		}
		switch {
		case op == opClose && len(p) >= 2:
			return int(binary.BigEndian.Uint16(p)), texts, time.Since(start)
		case op == opClose:
			return 1005, texts, time.Since(start)
		case op == opText:
			texts = append(texts, string(p))
		}
	}
}

// TestClientFrameRules ensures the WebSocket rules of RFC 6455 hold at the
// wire, whatever the library underneath does: invalid UTF-8 in a text
// frame closes with 1007, an unmasked client frame with 1002, and a frame
// header claiming more than max_frame_size with 1009 at once, before any
// of the claimed payload arrives (not after the idle timeout); frames
// before the offending one are served, also when they arrive in the same
// packet as the handshake.
func TestClientFrameRules(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	const limit = 1024
	srv := httptest.NewServer(ws.NewHandler(ws.Config{MaxFrameSize: limit, IdleTimeout: time.Minute}, n))
	t.Cleanup(srv.Close)
	ping := wsFrame(opText, []byte(`{"op":"ping","id":"p"}`), false, -1)
	const pong = `{"type":"pong","id":"p"}`
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	for _, tc := range []struct {
		name      string
		ahead     []byte // sent with the handshake
		frames    []byte // sent after it
		code      int
		pongs     int
		closedBy  time.Duration
		keepsOpen bool
	}{
		{name: "valid frames (control)", frames: cat(ping, wsFrame(opText, []byte(`{"op":"ping","id":"p","x":"é€😀"}`), false, -1)),
			pongs: 2, keepsOpen: true},
		{name: "invalid UTF-8 in a text frame", frames: cat(ping, wsFrame(opText, []byte("{\"op\":\"ping\",\"id\":\"\xff\"}"), false, -1)),
			code: 1007, pongs: 1},
		{name: "truncated UTF-8 sequence in a text frame", frames: wsFrame(opText, []byte("{\"op\":\"ping\",\"id\":\"\xe2\x82\"}"), false, -1),
			code: 1007},
		{name: "unmasked client frame", frames: cat(ping, wsFrame(opText, []byte(`{"op":"ping","id":"p"}`), true, -1)),
			code: 1002, pongs: 1},
		{name: "unmasked frame read ahead with the handshake", ahead: cat(ping, wsFrame(opText, []byte(`{}`), true, -1)),
			code: 1002, pongs: 1},
		{name: "header claiming 1 GiB, no payload", frames: cat(ping, wsFrame(opText, nil, false, 1<<30)),
			code: 1009, pongs: 1, closedBy: 5 * time.Second},
		{name: "header claiming one byte over the limit (16-bit length)", frames: wsFrame(opText, nil, false, limit+1),
			code: 1009, closedBy: 5 * time.Second},
		{name: "header claiming 2^63-1 bytes (64-bit length)", frames: wsFrame(opText, nil, false, 1<<63-1),
			code: 1009, closedBy: 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, srv, tc.ahead)
			if len(tc.frames) > 0 {
				if _, err := c.Write(tc.frames); err != nil {
					t.Fatal(err)
				}
			}
			if tc.keepsOpen {
				for i := range tc.pongs {
					if op, p, err := c.next(wait); err != nil || op != opText || string(p) != pong {
						t.Fatalf("frame %d: %#x %s %v, want %s", i, op, p, err, pong)
					}
				}
				if code, _, _ := c.closeCode(300 * time.Millisecond); code != -1 {
					t.Fatalf("closed with %d", code)
				}
				return
			}
			d := wait
			if tc.closedBy > 0 {
				d = tc.closedBy
			}
			code, texts, took := c.closeCode(d)
			if code != tc.code {
				t.Fatalf("close %d after %v (frames %q), want %d within %v", code, took, texts, tc.code, d)
			}
			if len(texts) != tc.pongs {
				t.Fatalf("frames before the close: %q, want %d pongs", texts, tc.pongs)
			}
		})
	}
}
