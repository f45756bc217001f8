package sse

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// chunkHeadroom is the room left at the start of a write buffer for the
// chunk-size line of HTTP/1.1 chunked encoding ("<hex>\r\n"), so that a
// batch goes out in one write.
const chunkHeadroom = 18

// stream is one SSE stream, and its one writer. No goroutine runs for it
// while it idles (but, over HTTP/1, the one parked reading the connection:
// the only way Go offers to learn that the peer closed it): the feed's
// wakeups and the heartbeat timer start a short-lived writer, which drains
// the feed into a pooled buffer and writes it to the sink.
type stream struct {
	h      *Handler
	tenant string
	feed   *node.Feed
	adm    *node.Admission
	ctx    context.Context
	cancel context.CancelCauseFunc
	// uncount ends the admission's context (httpapi.Admit).
	uncount context.CancelFunc
	out     sink
	// srv is the *http.Server of a hijacked stream, whose shutdown must
	// end it: its connection is no longer the server's.
	srv any
	// finished is closed once the stream is closed and no writer runs:
	// the handler of an HTTP/2 stream returns then, and not before, since
	// the writer writes to its response.
	finished   chan struct{}
	finishOnce sync.Once
	rbuf       [1]byte // the parked reader's buffer

	// wmu serialises writes to out: the writer's and the last ones by end,
	// after which (ended) nothing more is written.
	wmu   sync.Mutex
	ended bool

	mu      sync.Mutex
	hb      *time.Timer // heartbeat, re-armed after every write; nil before start
	running bool        // a writer goroutine owns the feed
	again   bool        // woken while running: run once more
	ping    bool        // the heartbeat is due
	closed  bool
}

// sink is where a stream's bytes go.
type sink interface {
	// write writes buf's bytes after the headroom as one batch, under the
	// write timeout, and flushes them to the client.
	write(buf *bytes.Buffer) error
	// finish ends the body (HTTP/1.1: its terminating chunk).
	finish()
	// close closes what the sink owns.
	close()
}

// responseSink writes to the response: HTTP/2, and HTTP/1 until the
// connection is hijacked.
type responseSink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (o *responseSink) write(buf *bytes.Buffer) error {
	_ = o.rc.SetWriteDeadline(time.Now().Add(o.timeout))
	if _, err := o.w.Write(buf.Bytes()[chunkHeadroom:]); err != nil {
		return err
	}
	return o.rc.Flush()
}

// finish does nothing: the response ends when its handler returns.
func (o *responseSink) finish() {}
func (o *responseSink) close()  {}

// connSink writes to a hijacked HTTP/1 connection, framing each batch as a
// chunk when the response is chunked (HTTP/1.1).
type connSink struct {
	conn    net.Conn
	chunked bool
	timeout time.Duration
}

func (o *connSink) write(buf *bytes.Buffer) error {
	b := buf.Bytes()
	start := chunkHeadroom
	if o.chunked {
		size := strconv.AppendInt(make([]byte, 0, 16), int64(len(b)-chunkHeadroom), 16)
		start -= len(size) + 2
		copy(b[start:], size)
		copy(b[start+len(size):], "\r\n")
		buf.WriteString("\r\n")
		b = buf.Bytes()
	}
	_ = o.conn.SetWriteDeadline(time.Now().Add(o.timeout))
	_, err := o.conn.Write(b[start:])
	return err
}

func (o *connSink) finish() {
	if o.chunked {
		_ = o.conn.SetWriteDeadline(time.Now().Add(o.timeout))
		_, _ = o.conn.Write([]byte("0\r\n\r\n"))
	}
}

func (o *connSink) close() { _ = o.conn.Close() }

var headroom [chunkHeadroom]byte

// buffer returns a pooled buffer holding the headroom.
func (s *stream) buffer() *bytes.Buffer {
	buf := bufs.Get().(*bytes.Buffer)
	buf.Write(headroom[:])
	return buf
}

// release gives a buffer back to the pool.
func (s *stream) release(buf *bytes.Buffer) {
	buf.Reset()
	bufs.Put(buf)
}

// flush writes what buf holds beyond the headroom and empties it down to
// the headroom.
func (s *stream) flush(buf *bytes.Buffer) error {
	if buf.Len() == chunkHeadroom {
		return nil
	}
	s.wmu.Lock()
	err := net.ErrClosed
	if !s.ended {
		err = s.out.write(buf)
	}
	s.wmu.Unlock()
	buf.Truncate(chunkHeadroom)
	return err
}

// start serves the stream live: its heartbeat, and a first writer for
// whatever was queued while its head was written.
func (s *stream) start() {
	s.h.track(s)
	s.mu.Lock()
	s.hb = time.AfterFunc(s.h.cfg.Heartbeat, func() { s.wake(true) })
	s.running = true
	s.mu.Unlock()
	context.AfterFunc(s.ctx, s.close)
	go s.run()
}

// wake starts a writer unless one runs; it never blocks, so the hub may
// call it from its delivering goroutine.
func (s *stream) wake(ping bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.ping = s.ping || ping
	// Before start (no heartbeat yet) a wakeup only marks the feed: the
	// writer start launches drains it.
	if s.running || s.hb == nil {
		s.again = true
		s.mu.Unlock()
		return
	}
	s.running = true
	s.mu.Unlock()
	go s.run()
}

// read waits for the client to close a hijacked connection. A client
// sends nothing after its request, so any byte or error ends the stream.
func (s *stream) read(conn net.Conn) {
	_, _ = conn.Read(s.rbuf[:])
	s.close()
}

// run writes what the feed holds, and a heartbeat when due, until nothing
// is left; it is the only writer of events while running is set.
func (s *stream) run() {
	var items []node.Item
	for {
		s.mu.Lock()
		ping, closed := s.ping, s.closed
		s.ping, s.again = false, false
		s.mu.Unlock()
		if closed {
			s.stopped()
			return
		}
		var err error
		items, err = s.feed.Drain(s.ctx, items)
		if err == nil && (len(items) > 0 || ping) {
			err = s.write(items, ping)
			clear(items)
		}
		if err != nil {
			if errors.Is(err, node.ErrSlowConsumer) {
				// The client resumes from its Last-Event-ID: nothing is lost.
				s.h.n.Logger().Info("sse: slow client, closing stream", "tenant", s.tenant)
			}
			s.close()
			s.stopped()
			return
		}
		s.mu.Lock()
		if !s.again || s.closed {
			s.mu.Unlock()
			s.stopped()
			return
		}
		s.mu.Unlock()
	}
}

// stopped ends a writer's run; the stream is finished if it is closed.
func (s *stream) stopped() {
	s.mu.Lock()
	s.running = false
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.finish()
	}
}

func (s *stream) finish() { s.finishOnce.Do(func() { close(s.finished) }) }

// write encodes items (and a heartbeat comment) into one batch and writes
// it under the write timeout.
func (s *stream) write(items []node.Item, ping bool) error {
	buf := s.buffer()
	defer s.release(buf)
	tel := s.h.n.Metrics()
	for _, it := range items {
		if err := s.h.cfg.event(buf, it); err != nil {
			return err
		}
		if !it.Gap() {
			tel.Delivered(telemetry.ProtocolSSE, it.Msg, true)
		}
	}
	if ping {
		buf.WriteString(": ping\n\n")
	}
	err := s.flush(buf)
	s.mu.Lock()
	if !s.closed {
		s.hb.Reset(s.h.cfg.Heartbeat)
	}
	s.mu.Unlock()
	return err
}

// end closes the stream in order: tail (complete SSE lines, such as a
// retry: field, or nil) is written as the last data, then the end of the
// body, and the stream is closed. A drain ends streams through it; the
// client reconnects after its retry delay.
func (s *stream) end(tail []byte) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	buf := s.buffer()
	buf.Write(tail)
	_ = s.flush(buf)
	s.release(buf)
	s.wmu.Lock()
	if !s.ended {
		s.out.finish()
	}
	s.ended = true
	s.wmu.Unlock()
	s.close()
}

// close ends the stream: its feed leaves the hub, its admission is freed
// and its connection closed. Idempotent.
func (s *stream) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.hb != nil {
		s.hb.Stop()
	}
	running := s.running
	s.mu.Unlock()
	s.h.forget(s)
	s.feed.Close()
	s.adm.Release()
	s.uncount()
	s.cancel(context.Canceled)
	if s.out != nil {
		s.out.close()
	}
	if !running {
		s.finish()
	}
}

// track registers a stream, so that a shutdown or a drain can end it, and
// arranges once per server for its shutdown to do so: hijacked
// connections are no longer the server's.
func (h *Handler) track(s *stream) {
	h.mu.Lock()
	if h.streams == nil {
		h.streams = make(map[*stream]struct{})
	}
	h.streams[s] = struct{}{}
	h.mu.Unlock()
	if srv, ok := s.srv.(interface{ RegisterOnShutdown(func()) }); ok {
		if _, loaded := h.servers.LoadOrStore(srv, true); !loaded {
			srv.RegisterOnShutdown(func() { h.EndStreams(nil) })
		}
	}
}

func (h *Handler) forget(s *stream) {
	h.mu.Lock()
	delete(h.streams, s)
	h.mu.Unlock()
}

// EndStreams ends every stream of the handler, each with tail(), when tail
// is not nil, as its last data (complete SSE lines, such as a "retry:
// <ms>\n\n" field with jitter, so that a drained edge's clients do not all
// come back at once). The server's shutdown calls it with nil for the
// hijacked streams.
func (h *Handler) EndStreams(tail func() []byte) {
	h.mu.Lock()
	all := make([]*stream, 0, len(h.streams))
	for s := range h.streams {
		all = append(all, s)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		var t []byte
		if tail != nil {
			t = tail()
		}
		wg.Go(func() { s.end(t) })
	}
	wg.Wait()
}
