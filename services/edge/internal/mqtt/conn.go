package mqtt

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/record"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// closeGrace bounds the writes of a connection being closed: its last
// packets (a DISCONNECT with the reason) are sent if the client reads them
// promptly, and dropped otherwise.
const closeGrace = time.Second

// A connection the server ends with a reason (a DISCONNECT, or a CONNACK
// refusing the client) closes lingering, so that the client reads the
// reason: a socket closed while the client's packets are still arriving,
// unread, is reset rather than closed, and a reset discards what the
// client had not read yet — the DISCONNECT among it — and fails the
// client's writes, which most clients take as the end before they read.
// After its last packet the server ends its output (TCP FIN, TLS
// close_notify, the WebSocket close frame: halfClose) and reads on,
// discarding, until the client closes, for at most lingerTimeout and
// lingerBytes, then closes. The bounds keep a client that never stops
// sending from holding the goroutine (or anything else: the reads go
// through io.Discard's pooled buffer) for long. The connection's session
// is settled before the linger (teardown), so nothing waits for it but
// the close of the socket.
const (
	lingerTimeout = 2 * time.Second
	lingerBytes   = 1 << 20
)

// errClientDisconnect ends the read loop on a client's DISCONNECT.
var errClientDisconnect = errors.New("mqtt: client disconnected")

// conn is one MQTT connection. Its reader goroutine runs serve and owns
// the protocol state; a writer goroutine exists only while there is
// something to write. The feed's wake, publish completions and the
// session's saves run on other goroutines and meet the reader and the
// writer in the connection's lock domains (recorder, inflight, outbox).
type conn struct {
	s   *Server
	n   *node.Node
	cfg *Config
	nc  net.Conn
	// base is the context the connection was served with (it ends with
	// the server's Close): see Server.serveConn.
	base context.Context

	// Set by CONNECT before any subscription exists, read-only afterwards.
	version       byte
	clientID      string
	tenant        string
	id            auth.Identity   // who authenticated
	adm           *node.Admission // registration and limits; released by teardown or a refused CONNECT
	origin        string
	connID        string // unique per connection, for takeovers
	ctlSubject    string // the session's control subject
	keepAlive     time.Duration
	window        int  // QoS 1 and 2 messages the client accepts unacknowledged
	maxOut        int  // the client's Maximum Packet Size, 0 for none
	problemInfo   bool // the client accepts reason strings and user properties on acks
	seqProperty   bool // MQTT 5: the client asked for the stream sequence on each PUBLISH (SeqProperty)
	traceProperty bool // MQTT 5: the client asked for the trace context of each sampled PUBLISH (TraceProperty)
	aliasMax      int  // topic aliases the client may use (advertised)
	will          *message.Message
	willAccepted  *node.Accepted // the will, judged at CONNECT by the publish checks
	willTTL       time.Duration
	willDelay     time.Duration
	storeWill     *record.Will // the will as the session record keeps it
	// persistent: the session outlives the connection (expiry > 0 at
	// CONNECT); set before any other goroutine sees the connection.
	persistent bool
	// gone is closed once the connection has ended and released everything
	// (its socket may still linger).
	gone chan struct{}
	// stopped is set with closing: the reader handles no more packets.
	stopped atomic.Bool

	// aliasesIn are the client's topic aliases: the reader's alone.
	aliasesIn map[uint16]string
	// aliasesOut are the aliases the server assigned: the writer's alone
	// (one writer at a time, handed over under mu); nil when the client
	// accepts none.
	aliasesOut *aliasLRU

	// The connection's three lock domains, each a type that owns its
	// state and its lock. When one is taken under another it is in this
	// order, never the reverse: recorder (saveMu, persist.go) writes the
	// session's record; inflight (pubMu, publish.go) is the pipeline of
	// the client's publishes and their acknowledgements; outbox (mu,
	// deliver.go) is what the connection sends and the state sending
	// moves.
	recorder
	inflight
	outbox

	// changes counts what moves the cursor or the in-flight state, in
	// whatever domain (see persist.go).
	changes atomic.Uint64
	// exchangeWarned is when saveExchanges last logged a failure: the
	// writer's alone.
	exchangeWarned time.Time
}

func newConn(s *Server, nc net.Conn, base context.Context) *conn {
	return &conn{s: s, n: s.node, cfg: &s.cfg, nc: nc, base: base, problemInfo: true,
		outbox: outbox{sess: &session{}}, gone: make(chan struct{})}
}

// serve runs the connection: CONNECT, then packets until the connection
// ends, then teardown.
func (c *conn) serve(ctx context.Context) {
	r := newConnReader(c.nc)
	defer r.release()
	if c.openShallow(ctx, r) {
		c.run(ctx, r)
	}
	close(c.gone)
	c.closeLingering(r)
}

// run reads and handles packets until the connection ends, then tears it
// down.
func (c *conn) run(ctx context.Context, r *connReader) {
	normal := false
	for {
		if c.version != 5 {
			c.waitAckRoom(ctx)
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(c.keepAlive * 3 / 2))
		// Checked after the deadline is set: a close that wakes the reader
		// through the deadline (endOutput) has set stopped before.
		if c.stopped.Load() {
			break
		}
		var pk *packets.Packet
		err := r.await()
		if err == nil {
			pk, err = readPacket(r, c.version, c.cfg.MaxPacketSize)
		}
		if err == nil && c.stopped.Load() {
			// Sent after the server's last packet: not handled.
			releasePacket(pk)
			break
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				c.disconnect(ErrKeepAliveTimeout)
			case errors.Is(err, ErrMalformed), errors.Is(err, ErrProtocol), errors.Is(err, ErrPacketTooLarge),
				errors.Is(err, ErrTopicAlias):
				c.s.log.Debug("mqtt bad packet", "client", c.clientID, "err", err)
				c.disconnect(err)
			}
			break
		}
		if err := c.handle(ctx, pk); err != nil {
			if errors.Is(err, errClientDisconnect) {
				normal = pk.ReasonCode != codeDisconnectWithWill
				if err := c.disconnectExpiry(pk); err != nil {
					normal = false
					c.disconnect(err)
				}
			} else {
				c.s.log.Debug("mqtt connection closed by the server", "client", c.clientID, "err", err)
				c.disconnect(err)
			}
			break
		}
		releasePacket(pk)
	}
	c.teardown(ctx, normal)
}

// openShallow runs open on a goroutine of its own and waits for it.
// Reading and answering CONNECT runs deep (the decoder, authentication,
// the session store, the takeover request), and a goroutine's stack, once
// grown, stays grown until a garbage collection shrinks it: run on the
// reader, it would leave every idle connection holding a stack several
// times the size it needs to wait for its next packet. The helper's stack
// goes back to the runtime when it ends.
func (c *conn) openShallow(ctx context.Context, r *connReader) bool {
	return shallow(func() bool { return c.open(ctx, r) })
}

// shallow runs f on a goroutine of its own and returns what it returns,
// for the deep calls a reader makes once or rarely (CONNECT, SUBSCRIBE,
// UNSUBSCRIBE: the core's subscription pipeline, the hub, live interest,
// the backbone): see openShallow. Measured with tools/loadgen idle
// --subscribe (5,000 MQTT 3.1.1 connections, each with one QoS 1
// subscription to a topic of its own, against bin/herald on the shared
// 2-core machine): goroutine stacks 61 MB with SUBSCRIBE on the reader,
// 23 MB on a helper; RSS growth 23.6 KB per connection, then 17.8 KB.
func shallow[T any](f func() T) T {
	done := make(chan T, 1)
	go func() { done <- f() }()
	return <-done
}

// open reads the CONNECT and answers it; false means the connection is
// closed.
func (c *conn) open(ctx context.Context, r *connReader) bool {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.ConnectTimeout))
	pk, err := readPacket(r, 0, c.cfg.MaxPacketSize)
	// A refused connection is closed by serve (closeLingering).
	switch {
	case errors.Is(err, ErrUnsupportedVersion):
		c.refuse(4, err)
		return false
	case errors.As(err, new(*badConnect)):
		var bc *badConnect
		if errors.As(err, &bc) && bc.version == 5 {
			c.refuse(5, err) // 0x81 malformed or 0x82 protocol error, with the reason
		}
		return false
	case err != nil || pk.FixedHeader.Type != packets.Connect:
		// Not MQTT, or not starting with CONNECT [MQTT-3.1.0-1].
		return false
	}
	if err := c.connect(ctx, pk); err != nil {
		c.s.log.Debug("mqtt connect refused", "remote", c.nc.RemoteAddr().String(), "err", err)
		c.adm.Release()
		return false
	}
	return true
}

// handle acts on one packet. A non-nil error ends the connection.
func (c *conn) handle(ctx context.Context, pk *packets.Packet) error {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		return c.handlePublish(ctx, pk)
	case packets.Puback:
		c.handlePuback(pk.PacketID)
	case packets.Pubrec:
		c.handlePubrec(pk)
	case packets.Pubrel:
		return c.handlePubrel(pk.PacketID)
	case packets.Pubcomp:
		c.handlePubcomp(pk.PacketID)
	case packets.Subscribe:
		return shallow(func() error { return c.handleSubscribe(ctx, pk) })
	case packets.Unsubscribe:
		shallow(func() struct{} { c.handleUnsubscribe(pk); return struct{}{} })
	case packets.Pingreq:
		c.sendControl(pingresp)
	case packets.Disconnect:
		return errClientDisconnect
	case packets.Connect:
		return errors.Join(ErrProtocol, errors.New("second CONNECT")) // [MQTT-3.1.0-2]
	default:
		// AUTH without an authentication method.
		return errors.Join(ErrProtocol, errors.New("unexpected "+packets.PacketNames[pk.FixedHeader.Type]))
	}
	return nil
}

var pingresp = []byte{packets.Pingresp << 4, 0}

// sendControl queues an encoded control packet.
func (c *conn) sendControl(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.control = append(c.control, b)
	c.kickLocked()
}

// shutdown closes the connection because the server is shutting down
// (the connection's context has ended or is about to: Close ends it
// first). It may be called from any goroutine.
func (c *conn) shutdown() {
	c.disconnect(ErrShuttingDown)
}

// disconnect ends the connection because of err: MQTT 5 clients get a
// DISCONNECT with err's reason code and, as a reason string, its text.
func (c *conn) disconnect(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.disconnectLocked(err, "")
}

// disconnectLocked ends the connection; serverReference, if set, goes with
// the DISCONNECT (Use another server, Server moved).
func (c *conn) disconnectLocked(err error, serverReference string) {
	if c.closing {
		return
	}
	c.closing = true
	c.stopped.Store(true)
	c.dropDeliveriesLocked()
	if c.version == 5 && !c.done {
		c.reasoned = true
		pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			ProtocolVersion: 5, ReasonCode: reasonIn(err, packets.Disconnect), Mods: packets.Mods{MaxSize: uint32(c.maxOut)}}
		// Reason strings are allowed on DISCONNECT whatever the client's
		// Request Problem Information [MQTT-3.1.2-29].
		pk.Properties.ReasonString = reasonString(err)
		pk.Properties.ServerReference = serverReference
		c.control = append(c.control, encodeBytes(pk))
	}
	c.kickLocked()
}

// dropDeliveriesLocked forgets the deliveries queued ahead of the feed's
// (the feed keeps its own until teardown closes it: the writer takes none
// once closing); the session's cursor stays below them, so a resumed
// session gets them.
func (c *conn) dropDeliveriesLocked() {
	if len(c.queue) > c.head {
		cur := c.cursorLocked()
		if !c.floored || cur < c.floor {
			c.floor, c.floored = cur, true
		}
	}
	c.queue, c.head = nil, 0
}

// disconnectExpiry applies the Session Expiry Interval of a client's
// DISCONNECT: a session that was to end with the connection may not be
// made to outlive it [MQTT-3.14.2-2].
func (c *conn) disconnectExpiry(pk *packets.Packet) error {
	if c.version != 5 || !pk.Properties.SessionExpiryIntervalFlag {
		return nil
	}
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	if c.expiry == 0 && pk.Properties.SessionExpiryInterval > 0 {
		return errors.Join(ErrProtocol, errors.New("session expiry set on DISCONNECT after 0 on CONNECT"))
	}
	c.expiry = min(pk.Properties.SessionExpiryInterval, uint32(c.cfg.MaxSessionExpiry/time.Second))
	return nil
}

// teardown releases everything the connection holds once its reader has
// stopped: subscriptions, in-flight publishes, the writer. normal is true
// after a DISCONNECT that discards the will.
func (c *conn) teardown(ctx context.Context, normal bool) {
	c.mu.Lock()
	c.closing = true
	c.dropDeliveriesLocked()
	c.mu.Unlock()
	// Nothing new arrives; what the feed holds keeps the session's cursor
	// below it until the session is settled.
	if c.feed != nil {
		c.feed.Leave()
	}
	// Publishes already read complete (a client's last QoS 0 messages
	// before DISCONNECT must not be lost), bounded by the backbone's
	// publish timeout, or abort on shutdown.
	c.pubs.Wait()
	c.mu.Lock()
	c.kickLocked()
	for c.writing {
		ch := c.writerDone
		c.mu.Unlock()
		<-ch
		c.mu.Lock()
	}
	c.done = true
	closeNow := !c.reasoned && !c.outputEnded
	c.outputEnded = true
	c.mu.Unlock()
	if closeNow {
		// A close without a reason does not linger. One with a reason had
		// its output ended by the writer after the reason.
		c.nc.Close()
	}
	// Saved (or its will published) before the connection is released, so
	// before a takeover request is answered.
	c.endSession(ctx, normal)
	if c.feed != nil {
		c.feed.Close()
	}
	c.adm.Release()
	c.s.release(c)
}

// endOutput ends what the server sends once its last packet is written:
// after a reason (lingers) its output only, so that closeLingering can
// read on, otherwise the whole connection. Over TCP and TLS it also wakes
// the reader, which may be waiting for the client's next packet: nothing
// would arrive to wake it, while a WebSocket client answers the close
// frame with its own.
func (c *conn) endOutput(lingers bool) {
	if !lingers || !c.halfClose() {
		c.nc.Close()
		return
	}
	if _, ws := c.nc.(*wsConn); !ws {
		_ = c.nc.SetReadDeadline(time.Now())
	}
}

// halfClose ends the connection's output after what was written and keeps
// its input open: TCP FIN, TLS close_notify, or the WebSocket close frame
// (wsConn). It reports whether the transport could.
func (c *conn) halfClose() bool {
	hc, ok := c.nc.(interface{ CloseWrite() error })
	return ok && hc.CloseWrite() == nil
}

// closeLingering closes the connection once it has ended (see lingerTimeout):
// after a reason, its output is ended if it is not yet, and what the
// client still sends is read and discarded until it closes, for at most
// lingerTimeout and lingerBytes.
func (c *conn) closeLingering(r *connReader) {
	c.mu.Lock()
	lingers, ended := c.reasoned, c.outputEnded
	c.outputEnded = true
	c.mu.Unlock()
	if lingers && (ended || c.halfClose()) {
		_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
		r.release() // what the reader had buffered is discarded with the rest
		_, _ = io.CopyN(io.Discard, c.nc, lingerBytes)
	}
	c.nc.Close()
}

// connReader reads a connection through a pooled buffer that it holds only
// while packets are arriving, so that an idle connection costs no buffer.
// On a plain socket it waits for data through the runtime's poller
// (syscall.RawConn) and reads with one system call whatever has arrived,
// often several packets, holding the buffer only during that call; on
// anything else (TLS, WebSocket) an idle connection waits with a one-byte
// read, then takes a buffer for the rest.
type connReader struct {
	nc   net.Conn
	buf  *[readBufferSize]byte // nil while idle
	r, w int                   // unread bytes: buf[r:w]
	one  [1]byte
	// raw, when set, reads the socket; fill is r.rawFill, bound once, and
	// n and err are the outcome of its read.
	raw  syscall.RawConn
	fill func(uintptr) bool
	n    int
	err  error
}

const readBufferSize = 4096

var readBuffers = sync.Pool{New: func() any { return new([readBufferSize]byte) }}

func newConnReader(nc net.Conn) *connReader {
	r := &connReader{nc: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			r.raw, r.fill = raw, r.rawFill
		}
	}
	return r
}

// rawFill is the RawConn.Read callback: it reads into the buffer, taking
// one for the call and giving it back if nothing was there; false makes
// the poller wait until the socket is readable and call it again.
func (r *connReader) rawFill(fd uintptr) bool {
	if r.buf == nil {
		r.buf = readBuffers.Get().(*[readBufferSize]byte)
	}
	for {
		n, err := syscall.Read(int(fd), r.buf[:])
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			readBuffers.Put(r.buf)
			r.buf = nil
			return false
		}
		r.n, r.err = n, err
		return true
	}
}

// more reads into the empty buffer.
func (r *connReader) more() error {
	r.r, r.w = 0, 0
	if r.raw != nil {
		if err := r.raw.Read(r.fill); err != nil {
			return err
		}
		switch {
		case r.err != nil:
			return &net.OpError{Op: "read", Net: "tcp", Err: r.err}
		case r.n <= 0:
			return io.EOF
		}
		r.w = r.n
		return nil
	}
	if r.buf == nil {
		if _, err := io.ReadFull(r.nc, r.one[:]); err != nil {
			return err
		}
		r.buf = readBuffers.Get().(*[readBufferSize]byte)
		r.buf[0], r.w = r.one[0], 1
		return nil
	}
	n, err := r.nc.Read(r.buf[:])
	r.w = n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// ReadByte implements io.ByteReader.
func (r *connReader) ReadByte() (byte, error) {
	if r.r == r.w {
		if err := r.more(); err != nil {
			return 0, err
		}
	}
	b := r.buf[r.r]
	r.r++
	return b, nil
}

// Read implements io.Reader.
func (r *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.r == r.w {
		if err := r.more(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.r:r.w])
	r.r += n
	return n, nil
}

// await returns once the buffer holds unread bytes, giving it back to the
// pool meanwhile if it held none. The reader waits for a client's next
// packet here, called from serve, rather than inside the packet decoder:
// a goroutine's stack shrinks back to its 2 KiB start only if it parks
// using less than a quarter of it, and this shorter call chain is what
// lets the reader of an idle connection stay at 2 KiB instead of 4.
func (r *connReader) await() error {
	if r.r < r.w {
		return nil
	}
	r.release()
	return r.more()
}

func (r *connReader) release() {
	if r.buf != nil {
		readBuffers.Put(r.buf)
		r.buf = nil
	}
	r.r, r.w = 0, 0
}
