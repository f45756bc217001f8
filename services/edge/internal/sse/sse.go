// Package sse serves Server-Sent Events on GET /sse: live messages of one or
// more topic filters, resumable from any edge.
//
// # Request
//
//	GET /sse?topic=<filter>[&topic=<filter>...][&lastEventId=<position>][&token=<token>]
//	Last-Event-ID: <position>                   (sent by EventSource on reconnect)
//	Authorization: Bearer <token>               (or cookie herald_token, or ?token=)
//
// Filters are MQTT topic filters (+ and # wildcards). An invalid one is
// refused with 400 {"error":{"code":"invalid_topic",...}}; refused
// credentials with 401 or 403, all JSON (package httpapi).
//
// # Stream
//
// The stream starts with "retry: <ms>" and then carries, per message:
//
//	id: <epoch>-<seq>
//	event: message
//	data: {"topic":"a/b","payload":"hi","encoding":"utf8","qos":0,"retain":false,"seq":42,
//	       "content_type":"text/plain","user_properties":[{"key":"k","value":"v"}]}
//
// (data is always one line: newlines in a payload are escaped in the JSON).
// payload is the payload as text when it is valid UTF-8
// ("encoding":"utf8"), else standard base64 ("encoding":"base64");
// content_type and user_properties are omitted when empty; retain is the
// publisher's flag. Comments ": ping" keep quiet streams open.
//
// The event name is event_name ("message" by default, what EventSource
// hands to onmessage); with event_topic each event is named after its topic
// instead, and EventSource then hands it only to addEventListener(topic)
// listeners. A topic that cannot be an event name keeps event_name.
//
// # Resume
//
// The id of each event is its position in the tenant's stream. On reconnect
// EventSource sends it as Last-Event-ID (a first connect may pass it as
// ?lastEventId=; the header wins), and the edge, whichever it is, sends
// exactly the matching messages stored after it, in order, then live ones,
// with no duplicate and no hole: live interest is taken first, the stored
// messages are replayed, and live messages already replayed are dropped.
// Without a position the stream is live only.
//
// When messages after the position may be missing (they left the stream,
// or the position belongs to a recreated stream: another epoch), an event
//
//	event: gap
//	data: {"from":"<position>","epoch_changed":false}
//
// comes before the replayed messages. It has no id, so the client's
// position is unchanged until the next message.
//
// # Slow clients
//
// Each stream holds at most queue_size messages not yet written. When a
// client reads too slowly for that, its stream is closed; EventSource
// reconnects after the retry delay with its Last-Event-ID and the resume
// replays what it missed: nothing is lost, the client only lags.
//
// # Idle streams
//
// Once its head and replay are written, an HTTP/1 stream's connection is
// hijacked and the handler returns: net/http's two goroutines per stream
// (the handler's and its background reader) and its buffered reader and
// writer go away. The stream then runs on its subscription's wakeups and a
// heartbeat timer, each of which starts a writer goroutine only while
// there is something to write, with a pooled buffer; the body keeps its
// chunked encoding. One goroutine stays parked reading the connection:
// Go offers no readiness callback, and a read is the only prompt way to
// learn that a client left (else its slot, subscription and socket would
// be held until a heartbeat write failed, up to two heartbeats later).
// Measured with `loadgen idle --proto sse --conns 5000` against the
// embedded edge (RSS growth, one sitting, five runs): 29.3 KB per idle
// stream before, 10.5–12.2 KB with the parked reader, 7.4 KB without it
// (one run); the reader's ≈ 3.5 KB buys prompt release within the 12 KiB
// budget. Streams over
// HTTP/2 cannot be hijacked and keep a handler goroutine. EndStreams ends
// the hijacked streams (the server's shutdown calls it).
package sse

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/hub"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/stream"
)

const gapEvent = "gap"

// replayFlushEvery bounds the events buffered before a flush during replay.
const replayFlushEvery = 64

// Handler serves GET /sse.
type Handler struct {
	cfg Config
	n   *node.Node

	mu      sync.Mutex
	streams map[*detached]struct{} // live HTTP/1 streams, for EndStreams
	servers sync.Map               // *http.Server → true once its shutdown ends streams
}

// NewHandler returns the SSE handler over n. cfg must be valid.
func NewHandler(cfg Config, n *node.Node) *Handler {
	return &Handler{cfg: cfg.WithDefaults(), n: n}
}

// bufs holds event buffers between batches, so that an idle stream holds none.
var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ServeHTTP implements http.Handler. It returns when the client goes away,
// the request context is cancelled (edge shutdown) or the queue overflows.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.Authenticate(r, h.n.Auth)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	q := r.URL.Query()
	filters, err := h.filters(q["topic"])
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	from, err := position(r.Header.Get("Last-Event-ID"), q)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if err := httpapi.AuthorizeStream(id, filters, from != nil); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	// An HTTP/1 stream outlives this call once its connection is hijacked,
	// so its context must not end with the request's; until then the
	// request's end (client gone, edge shutdown) still ends it.
	detach := r.ProtoMajor == 1
	base := r.Context()
	if detach {
		base = context.WithoutCancel(base)
	}
	sctx, scancel := context.WithCancelCause(base)
	unlink := context.AfterFunc(r.Context(), func() { scancel(context.Cause(r.Context())) })
	// Counted and registered: a revoked credential ends the stream.
	ctx, adm, cancel, err := httpapi.Admit(r.WithContext(sctx), h.n, "sse", id)
	if err != nil {
		unlink()
		scancel(err)
		httpapi.WriteError(w, err)
		return
	}
	// Until the stream is detached, its resources are this call's to free.
	var d *detached
	defer func() {
		if d == nil {
			unlink()
			cancel()
			scancel(context.Canceled)
			adm.Release()
		}
	}()
	// Create the stream now, so that a backbone failure is still an HTTP
	// error and every event id carries an epoch.
	if _, err := h.n.Backbone.EnsureTenant(ctx, id.Tenant); err != nil {
		h.n.Log.Warn("sse: backbone unavailable", "tenant", id.Tenant, "err", err)
		httpapi.WriteError(w, err)
		return
	}

	ready := make(chan struct{}, 1)
	var live atomic.Pointer[detached]
	queue := stream.NewQueue(h.cfg.QueueSize, stream.PolicyClose, func() {
		if d := live.Load(); d != nil {
			d.wake(false)
			return
		}
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	sub := queue.NewSubscriber("", "")
	subs := make([]*hub.Subscription, 0, len(filters))
	defer func() {
		if d != nil {
			return
		}
		for _, s := range subs {
			h.n.Hub.Unsubscribe(s)
		}
		sub.Stop()
		queue.Close()
	}()
	for _, f := range filters {
		s := &hub.Subscription{Tenant: id.Tenant, Filter: f, Subscriber: sub}
		if err := h.n.Hub.Subscribe(ctx, s); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		subs = append(subs, s)
	}

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	c := &conn{cfg: &h.cfg, w: w, rc: http.NewResponseController(w)}
	defer c.release()
	c.begin()
	c.buf.WriteString("retry: ")
	c.buf.WriteString(strconv.FormatInt(h.cfg.Retry.Milliseconds(), 10))
	c.buf.WriteString("\n\n")
	if c.flush() != nil {
		return
	}

	epoch, err := stream.Resume(ctx, h.n, id.Tenant, filters, from, sub,
		func(g stream.Gap) error {
			c.begin()
			return c.gap(g.From.String(), g.EpochChanged)
		},
		func(m *message.Message, epoch string) error {
			c.begin()
			if err := c.message(m, epoch); err != nil {
				return err
			}
			if c.pending++; c.pending >= replayFlushEvery {
				return c.flush()
			}
			return nil
		})
	if err == nil {
		c.begin()
		err = c.flush()
	}
	if err != nil {
		if ctx.Err() == nil {
			h.n.Log.Info("sse: resume failed, closing stream", "tenant", id.Tenant, "err", err)
		}
		return
	}

	if detach {
		if d = h.detach(w, r, unlink, &detached{h: h, chunked: r.ProtoAtLeast(1, 1), tenant: id.Tenant,
			queue: queue, sub: sub, subs: subs, adm: adm, ctx: ctx, cancel: scancel, epoch: epoch}); d != nil {
			live.Store(d)
			d.start()
			return
		}
	}

	heartbeat := time.NewTicker(h.cfg.Heartbeat)
	defer heartbeat.Stop()
	var items []stream.Item
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			c.begin()
			c.buf.WriteString(": ping\n\n")
		case <-ready:
			var overflow bool
			items, overflow = queue.Drain(items)
			if overflow {
				// The client resumes from its Last-Event-ID: nothing is lost.
				h.n.Log.Info("sse: slow client, closing stream", "tenant", id.Tenant)
				return
			}
			if len(items) == 0 {
				continue
			}
			if e, err := h.n.Backbone.Epoch(ctx, id.Tenant); err == nil {
				epoch = e
			}
			c.begin()
			for _, it := range items {
				if it.Gap {
					err = c.gap(message.Position{Epoch: epoch, Seq: it.After}.String(), it.Reset)
				} else if err = c.message(it.Msg, epoch); err == nil {
					h.n.Telemetry.Delivered(telemetry.ProtocolSSE, it.Msg, true)
				}
				if err != nil {
					break
				}
			}
			clear(items)
			heartbeat.Reset(h.cfg.Heartbeat)
		}
		if err != nil || c.flush() != nil {
			return
		}
	}
}

// detach hijacks the connection of a stream whose head and replay are
// written and hands the stream to d, which from then on owns its
// subscription, admission and connection; it returns nil (the stream stays
// on this call) when the connection cannot be hijacked, or when the
// request already ended.
func (h *Handler) detach(w http.ResponseWriter, r *http.Request, unlink func() bool, d *detached) *detached {
	if !unlink() {
		return nil
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable after all (a wrapped writer): stay on this call,
		// ending with the request again.
		context.AfterFunc(r.Context(), func() { d.cancel(context.Cause(r.Context())) })
		return nil
	}
	// The client sends nothing after its request, and the response's
	// buffered writer was flushed: neither buffer is kept.
	_ = brw
	d.conn = conn
	context.AfterFunc(d.ctx, d.close)
	h.track(d, r.Context().Value(http.ServerContextKey))
	return d
}

// filters validates and deduplicates the requested filters.
func (h *Handler) filters(raw []string) ([]string, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: at least one topic filter is required (?topic=)", httpapi.ErrBadRequest)
	}
	out := make([]string, 0, len(raw))
	for _, f := range raw {
		if err := stream.ValidateFilter(f, h.n.Limits); err != nil {
			return nil, err
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) > h.cfg.MaxFilters {
		return nil, fmt.Errorf("%w: at most %d topic filters", httpapi.ErrBadRequest, h.cfg.MaxFilters)
	}
	return out, nil
}

// position reads the resume position: the Last-Event-ID header, else the
// lastEventId query parameter; nil when there is none.
func position(header string, q url.Values) (*message.Position, error) {
	v := header
	if v == "" {
		v = q.Get("lastEventId")
	}
	if v == "" {
		return nil, nil
	}
	p, err := message.ParsePosition(v)
	if err != nil {
		return nil, fmt.Errorf("last event id %q: %w", v, err)
	}
	return &p, nil
}

// conn writes events to one stream. Events accumulate in a pooled buffer
// taken by begin and written out and returned by flush.
type conn struct {
	cfg     *Config
	w       http.ResponseWriter
	rc      *http.ResponseController
	buf     *bytes.Buffer
	pending int
}

func (c *conn) begin() {
	if c.buf == nil {
		c.buf = bufs.Get().(*bytes.Buffer)
	}
}

func (c *conn) release() {
	if c.buf != nil {
		c.buf.Reset()
		bufs.Put(c.buf)
		c.buf = nil
	}
}

// flush writes the buffered events under the write timeout and flushes them
// to the client.
func (c *conn) flush() error {
	defer c.release()
	c.pending = 0
	if c.buf == nil || c.buf.Len() == 0 {
		return nil
	}
	_ = c.rc.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	if _, err := c.w.Write(c.buf.Bytes()); err != nil {
		return err
	}
	return c.rc.Flush()
}

func (c *conn) message(m *message.Message, epoch string) error {
	c.buf.WriteString("id: ")
	c.buf.WriteString(message.Position{Epoch: epoch, Seq: m.Seq}.String())
	c.buf.WriteString("\nevent: ")
	c.buf.WriteString(c.cfg.eventName(m.Topic))
	c.buf.WriteString("\ndata: ")
	if err := stream.AppendJSON(c.buf, stream.Wire(m)); err != nil {
		return err
	}
	c.buf.WriteString("\n\n")
	return nil
}

// eventName returns the event: field of a message on topic name.
func (c *Config) eventName(name string) string {
	if c.EventTopic && name != gapEvent && !strings.ContainsAny(name, "\r\n") {
		return name
	}
	return c.EventName
}

// gapData is the data of a gap event.
type gapData struct {
	From         string `json:"from"`
	EpochChanged bool   `json:"epoch_changed"`
}

func (c *conn) gap(from string, epochChanged bool) error {
	c.buf.WriteString("event: " + gapEvent + "\ndata: ")
	if err := stream.AppendJSON(c.buf, gapData{From: from, EpochChanged: epochChanged}); err != nil {
		return err
	}
	c.buf.WriteString("\n\n")
	return nil
}

var _ http.Handler = (*Handler)(nil)
