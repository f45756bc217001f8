package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
)

// Client frames are checked here, on the bytes of the hijacked connection,
// for two rules of RFC 6455 that coder/websocket does not apply at once
// (v1.8.15, read.go; shown at the wire by TestClientFrameRules):
//
//   - an unmasked client frame (§5.1) makes the library's read fail
//     without a close frame; the connection then ended with 1000 (normal
//     closure), not 1002 (protocol error);
//   - a frame header claiming more than the read limit: the library counts
//     payload bytes as they arrive and answers 1009 only once the limit
//     has been read, so a header claiming 1 GiB followed by nothing held
//     the connection until the idle timeout.
//
// The third rule, UTF-8 in text frames (§5.6, 1007), needs the whole
// message and is checked on it (coderConn.Read). The library offers no
// option for any of the three.

// frameGuard reads a client's frames ahead of the library and stops at
// the first frame header that breaks a rule: the bytes before that header
// are read through, then every read fails with the violation (a
// *closeError), which the session turns into its close frame. It keeps
// only the parser's state: a few dozen bytes per connection.
type frameGuard struct {
	net.Conn
	r     io.Reader // what the server had read ahead, then the connection
	limit int64     // largest data frame payload; < 0: none

	hdr   [14]byte // the header being read
	hlen  int      // bytes of it read
	skip  int64    // payload bytes of the current frame still to pass
	fault *closeError
}

// Read implements io.Reader for the library.
func (g *frameGuard) Read(p []byte) (int, error) {
	if g.fault != nil {
		return 0, g.fault
	}
	n, err := g.r.Read(p)
	if at := g.scan(p[:n]); at >= 0 {
		// Pass what precedes the offending frame; fail from there on.
		if at > 0 {
			return at, nil
		}
		return 0, g.fault
	}
	return n, err
}

// scan follows the frames in b. At the first header that breaks a rule it
// sets fault and returns the offset in b where that header starts (0 if it
// started in an earlier read); otherwise -1.
func (g *frameGuard) scan(b []byte) int {
	start := 0
	for i := 0; i < len(b); {
		if g.skip > 0 {
			k := min(g.skip, int64(len(b)-i))
			g.skip -= k
			i += int(k)
			continue
		}
		if g.hlen == 0 {
			start = i
		}
		g.hdr[g.hlen] = b[i]
		g.hlen++
		i++
		if g.hlen < 2 {
			continue
		}
		if g.hdr[1]&0x80 == 0 {
			g.fault = &closeError{closeProtocolError, "unmasked client frame"}
			return start
		}
		lenEnd := 2
		switch g.hdr[1] & 0x7f {
		case 126:
			lenEnd = 4
		case 127:
			lenEnd = 10
		}
		if g.hlen < lenEnd {
			continue
		}
		var n uint64
		switch lenEnd {
		case 2:
			n = uint64(g.hdr[1] & 0x7f)
		case 4:
			n = uint64(binary.BigEndian.Uint16(g.hdr[2:4]))
		default:
			n = binary.BigEndian.Uint64(g.hdr[2:10])
		}
		if g.hlen == lenEnd && g.hdr[0]&0x08 == 0 && g.limit >= 0 && n > uint64(g.limit) {
			// A data frame (continuation, text, binary) over the limit: no
			// need to wait for its payload to refuse it. Control frames
			// (opcode bit 3) are the library's to refuse (1002 over 125
			// bytes, on their header).
			g.fault = &closeError{closeTooBig, fmt.Sprintf("frame of %d bytes, at most %d", n, g.limit)}
			return start
		}
		if g.hlen < lenEnd+4 { // the masking key
			continue
		}
		g.skip, g.hlen = int64(min(n, 1<<62)), 0
	}
	return -1
}

// violation returns the rule a client broke, or nil.
func (g *frameGuard) violation() *closeError {
	if g == nil {
		return nil
	}
	return g.fault
}

// guardedWriter hands the library a connection read through a frameGuard
// when it hijacks the request's.
type guardedWriter struct {
	http.ResponseWriter
	guard *frameGuard
}

// Hijack implements http.Hijacker. What the HTTP server read ahead of the
// handshake (frames sent in the same packet) goes through the guard too.
func (w *guardedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	ahead, _ := brw.Reader.Peek(brw.Reader.Buffered())
	w.guard.Conn = conn
	w.guard.r = io.MultiReader(bytes.NewReader(bytes.Clone(ahead)), conn)
	brw.Reader.Reset(w.guard)
	return w.guard, brw, nil
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *guardedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// closeError is a client fault that ends the connection with a close code.
type closeError struct {
	code   CloseCode
	reason string
}

func (e *closeError) Error() string { return fmt.Sprintf("ws: close %d: %s", e.code, e.reason) }
