package sse

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/services/edge/internal/hub"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/stream"
)

// chunkHeadroom is the room left at the start of a write buffer for the
// chunk-size line of HTTP/1.1 chunked encoding ("<hex>\r\n"), so that a
// batch goes out in one write.
const chunkHeadroom = 18

// detached is a live HTTP/1 stream after its connection was hijacked. No
// goroutine runs for it while it idles but the one parked reading the
// connection (the only way Go offers to learn that the peer closed it):
// the subscription's wakeups and the heartbeat timer start a short-lived
// writer, and the write buffer is taken from a pool only for the write.
type detached struct {
	h       *Handler
	conn    net.Conn
	chunked bool
	tenant  string
	queue   *stream.Queue
	sub     *stream.Subscriber
	subs    []*hub.Subscription
	adm     *node.Admission
	ctx     context.Context
	cancel  context.CancelCauseFunc

	// wmu serialises writes to conn: the writer's and the last ones by end,
	// after which (ended) nothing more is written.
	wmu   sync.Mutex
	ended bool

	mu      sync.Mutex
	epoch   string      // the stream's epoch, refreshed per batch
	hb      *time.Timer // heartbeat, re-armed after every write
	running bool        // a writer goroutine owns the queue
	again   bool        // woken while running: run once more
	ping    bool        // the heartbeat is due
	closed  bool
	rbuf    [1]byte // the parked reader's buffer
}

// wake starts a writer unless one runs; it never blocks, so the hub may
// call it from its delivering goroutine.
func (d *detached) wake(ping bool) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.ping = d.ping || ping
	// Before start (hb not yet set) a delivery only marks the queue: the
	// writer start launches drains it.
	if d.running || d.hb == nil {
		d.again = true
		d.mu.Unlock()
		return
	}
	d.running = true
	d.mu.Unlock()
	go d.run()
}

// start begins serving the detached stream: the reader, the heartbeat and a
// first writer for whatever was queued while the stream was being set up.
func (d *detached) start() {
	d.mu.Lock()
	d.hb = time.AfterFunc(d.h.cfg.Heartbeat, func() { d.wake(true) })
	d.running = true
	d.mu.Unlock()
	go d.read()
	go d.run()
}

// read waits for the client to close the connection. A client sends
// nothing after its request, so any byte or error ends the stream.
func (d *detached) read() {
	_, _ = d.conn.Read(d.rbuf[:])
	d.close()
}

// run writes what the queue holds, and a heartbeat when due, until nothing
// is left; it is the only writer of events while running is set.
func (d *detached) run() {
	var items []stream.Item
	for {
		d.mu.Lock()
		ping, closed := d.ping, d.closed
		d.ping, d.again = false, false
		d.mu.Unlock()
		if closed {
			return
		}
		var overflow bool
		items, overflow = d.queue.Drain(items)
		if overflow {
			// The client resumes from its Last-Event-ID: nothing is lost.
			d.h.n.Log.Info("sse: slow client, closing stream", "tenant", d.tenant)
			d.close()
			return
		}
		if len(items) > 0 || ping {
			if err := d.write(items, ping); err != nil {
				d.close()
				return
			}
			clear(items)
		}
		d.mu.Lock()
		if !d.again || d.closed {
			d.running = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
	}
}

// write encodes items (and a heartbeat comment) into one chunk and writes
// it under the write timeout.
func (d *detached) write(items []stream.Item, ping bool) error {
	buf := bufs.Get().(*bytes.Buffer)
	defer func() {
		buf.Reset()
		bufs.Put(buf)
	}()
	buf.Write(make([]byte, chunkHeadroom))
	if len(items) > 0 {
		if e, err := d.h.n.Backbone.Epoch(d.ctx, d.tenant); err == nil {
			d.epoch = e
		}
	}
	c := conn{cfg: &d.h.cfg, buf: buf}
	for _, it := range items {
		var err error
		if it.Gap {
			err = c.gap(message.Position{Epoch: d.epoch, Seq: it.After}.String(), it.Reset)
		} else if err = c.message(it.Msg, d.epoch); err == nil {
			d.h.n.Telemetry.Delivered(telemetry.ProtocolSSE, it.Msg, true)
		}
		if err != nil {
			return err
		}
	}
	if ping {
		buf.WriteString(": ping\n\n")
	}
	err := d.send(buf)
	d.hb.Reset(d.h.cfg.Heartbeat)
	return err
}

// send frames buf's payload (after the headroom) as one chunk and writes it.
func (d *detached) send(buf *bytes.Buffer) error {
	b := buf.Bytes()
	start := chunkHeadroom
	if d.chunked {
		size := strconv.AppendInt(make([]byte, 0, 16), int64(len(b)-chunkHeadroom), 16)
		start -= len(size) + 2
		copy(b[start:], size)
		copy(b[start+len(size):], "\r\n")
		buf.WriteString("\r\n")
		b = buf.Bytes()
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.ended {
		return net.ErrClosed
	}
	_ = d.conn.SetWriteDeadline(time.Now().Add(d.h.cfg.WriteTimeout))
	_, err := d.conn.Write(b[start:])
	return err
}

// end closes the stream in order: tail (complete SSE lines, such as a
// retry: field, or nil) is written as the last data, then the body's
// terminating chunk, and the connection is closed. A drain ends streams
// through it; the client reconnects after its retry delay.
func (d *detached) end(tail []byte) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return
	}
	buf := bufs.Get().(*bytes.Buffer)
	buf.Write(make([]byte, chunkHeadroom))
	buf.Write(tail)
	if buf.Len() > chunkHeadroom {
		_ = d.send(buf)
	}
	buf.Reset()
	bufs.Put(buf)
	d.wmu.Lock()
	if d.chunked && !d.ended {
		_ = d.conn.SetWriteDeadline(time.Now().Add(d.h.cfg.WriteTimeout))
		_, _ = d.conn.Write([]byte("0\r\n\r\n"))
	}
	d.ended = true
	d.wmu.Unlock()
	d.close()
}

// close ends the stream: it leaves the hub, frees its admission and closes
// the connection. Idempotent.
func (d *detached) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	if d.hb != nil {
		d.hb.Stop()
	}
	d.mu.Unlock()
	d.h.forget(d)
	for _, s := range d.subs {
		d.h.n.Hub.Unsubscribe(s)
	}
	d.sub.Stop()
	d.queue.Close()
	d.adm.Release()
	d.cancel(context.Canceled)
	_ = d.conn.Close()
}

// track registers a detached stream, so that a shutdown can end it, and
// arranges once per server for shutdown to do so: hijacked connections are
// no longer the server's.
func (h *Handler) track(d *detached, srv any) {
	h.mu.Lock()
	if h.streams == nil {
		h.streams = make(map[*detached]struct{})
	}
	h.streams[d] = struct{}{}
	h.mu.Unlock()
	if s, ok := srv.(interface{ RegisterOnShutdown(func()) }); ok {
		if _, loaded := h.servers.LoadOrStore(s, true); !loaded {
			s.RegisterOnShutdown(func() { h.EndStreams(nil) })
		}
	}
}

func (h *Handler) forget(d *detached) {
	h.mu.Lock()
	delete(h.streams, d)
	h.mu.Unlock()
}

// EndStreams ends every detached (HTTP/1) stream of the handler, each with
// tail(), when tail is not nil, as its last data (complete SSE lines, such
// as a "retry: <ms>\n\n" field with jitter, so that a drained edge's
// clients do not all come back at once). The server's shutdown calls it
// with nil; HTTP/2 streams end with their request context instead.
func (h *Handler) EndStreams(tail func() []byte) {
	h.mu.Lock()
	all := make([]*detached, 0, len(h.streams))
	for d := range h.streams {
		all = append(all, d)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, d := range all {
		var t []byte
		if tail != nil {
			t = tail()
		}
		wg.Go(func() { d.end(t) })
	}
	wg.Wait()
}
