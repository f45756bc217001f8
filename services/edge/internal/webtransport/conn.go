package webtransport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	wt "github.com/quic-go/webtransport-go"

	"github.com/heraldmq/herald/services/edge/internal/ws"
)

// Frame kinds on the control stream: the opcodes of RFC 6455 for a text
// and a binary message, so that a frame is the WebSocket protocol's
// message it carries.
const (
	kindText   = 0x1
	kindBinary = 0x2
)

// headerLen is a frame's header: its kind, then its length (big-endian
// u32).
const headerLen = 5

// streamConn is ws.Conn over a WebTransport session's control stream: one
// bidirectional stream the client opens first, carrying the WebSocket
// protocol's messages, each framed as kind (1 byte) · length (4 bytes,
// big-endian) · message. QUIC gives the stream its order and reliability;
// the framing gives it message boundaries.
type streamConn struct {
	sess  *wt.Session
	str   *wt.Stream
	limit int64 // largest message a client may send

	hdr [headerLen]byte // Read's: one reader

	closeOnce sync.Once
}

// Read implements ws.Conn: the next message. A message over the limit, of
// an unknown kind, or a text one that is not UTF-8 is a client fault (the
// session closes with 1009, 1002 or 1007, as on a WebSocket), told from
// the header alone where it can be.
func (c *streamConn) Read(context.Context) (bool, []byte, error) {
	if _, err := io.ReadFull(c.str, c.hdr[:]); err != nil {
		return false, nil, err
	}
	kind, n := c.hdr[0], binary.BigEndian.Uint32(c.hdr[1:])
	if kind != kindText && kind != kindBinary {
		return false, nil, ws.ClientFault(ws.CloseProtocolError, fmt.Sprintf("unknown frame kind %#x", kind))
	}
	if int64(n) > c.limit {
		return false, nil, ws.ClientFault(ws.CloseTooBig, fmt.Sprintf("frame of %d bytes, at most %d", n, c.limit))
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.str, b); err != nil {
		return false, nil, err
	}
	if kind == kindText && !utf8.Valid(b) {
		return false, nil, ws.ClientFault(ws.CloseInvalidData, "invalid UTF-8 in a text frame")
	}
	return kind == kindBinary, b, nil
}

// Write implements ws.Conn: one frame, header and message in one write,
// under ctx's deadline.
func (c *streamConn) Write(ctx context.Context, binaryFrame bool, data []byte) error {
	if d, ok := ctx.Deadline(); ok {
		_ = c.str.SetWriteDeadline(d)
	} else {
		_ = c.str.SetWriteDeadline(time.Time{})
	}
	b := make([]byte, headerLen+len(data))
	b[0] = kindText
	if binaryFrame {
		b[0] = kindBinary
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(data)))
	copy(b[headerLen:], data)
	_, err := c.str.Write(b)
	return err
}

// Ping implements ws.Conn. QUIC keeps the connection alive itself (PING
// frames every keep-alive period, the connection closed after the idle
// timeout without an answer), so there is nothing to send: Ping reports
// whether the session is still up.
func (c *streamConn) Ping(context.Context) error {
	select {
	case <-c.sess.Context().Done():
		return context.Cause(c.sess.Context())
	default:
		return nil
	}
}

// Close implements ws.Conn: the session closes with the close code as its
// application error code and the reason as its message, which a browser
// reads from WebTransport.closed ({closeCode, reason}).
func (c *streamConn) Close(code ws.CloseCode, reason string) error {
	var err error
	c.closeOnce.Do(func() {
		// The stream's pending writes first: a CloseWithError discards
		// what was not sent yet.
		_ = c.str.Close()
		err = c.sess.CloseWithError(wt.SessionErrorCode(code), reason)
	})
	return err
}

// errNoControlStream is a session whose client opened no stream in time.
var errNoControlStream = errors.New("webtransport: no control stream opened")

var _ ws.Conn = (*streamConn)(nil)
