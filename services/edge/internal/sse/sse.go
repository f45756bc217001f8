// Package sse serves Server-Sent Events on GET /sse: live messages of one or
// more topic filters, resumable from any edge.
//
// # Request
//
//	GET /sse?topic=<filter>[&topic=<filter>...][&lastEventId=<position> | &retained=true | &rewind=<n>|<duration>][&token=<token>]
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
// Without a position the stream is live only, unless it asks for a start:
//
//	retained=true   first the retained message of each matching topic
//	                (the last one published with the retain flag; the
//	                state a dashboard paints), by topic
//	rewind=10       first the last 10 matching messages, in order
//	rewind=30s      first the matching messages stored in the last 30
//	                seconds (a Go duration, at most 168h), in order
//
// then live messages, with the same handover as a resume: none missed,
// none twice. A retained message's event has no id (its position is older
// than the stream's end: a resume from it would replay history); after
// the last of them an event with only an id, "id: <position>", names the
// stream's end they are as of, which EventSource keeps as its last event
// id without dispatching anything. Every other event has its id, so a
// reconnect resumes after what was received (the Last-Event-ID header
// wins over the start). A rewind
// reads history: it needs the history capability, as a resume does.
// lastEventId and a start exclude each other (400).
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
// # The pipeline and the writer
//
// The stream is a Feed of the edge's core (package node), which takes live
// interest, replays after the position and hands over to live messages
// without duplicates; this package encodes its items as events. One writer
// (stream.go) writes them, over HTTP/1 and HTTP/2 alike: the feed's
// wakeups and a heartbeat timer each start a writer goroutine only while
// there is something to write, with a pooled buffer, into a sink — the
// response (HTTP/2), or the hijacked connection with its chunked framing
// (HTTP/1).
//
// # Idle streams
//
// Once its head and replay are written, an HTTP/1 stream's connection is
// hijacked and the handler returns: net/http's two goroutines per stream
// (the handler's and its background reader) and its buffered reader and
// writer go away; the body keeps its chunked encoding. One goroutine stays
// parked reading the connection:
// Go offers no readiness callback, and a read is the only prompt way to
// learn that a client left (else its slot, subscription and socket would
// be held until a heartbeat write failed, up to two heartbeats later).
// Measured with `loadgen idle --proto sse --conns 5000` against the
// embedded edge (RSS growth, one sitting, five runs): 29.3 KB per idle
// stream before, 10.5–12.2 KB with the parked reader, 7.4 KB without it
// (one run); the reader's ≈ 3.5 KB buys prompt release within the 12 KiB
// budget. Streams over
// HTTP/2 cannot be hijacked and keep a handler goroutine, which waits for
// the stream's end. EndStreams ends the streams (the server's shutdown
// calls it).
package sse

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/wire"
)

const gapEvent = "gap"

// replayFlushEvery bounds the events buffered before a flush during replay.
const replayFlushEvery = 64

// Handler serves GET /sse.
type Handler struct {
	cfg Config
	n   *node.Node

	mu      sync.Mutex
	streams map[*stream]struct{} // open streams, for EndStreams and Leavers
	servers sync.Map             // *http.Server → true once its shutdown ends streams
}

// NewHandler returns the SSE handler over n. cfg must be valid.
func NewHandler(cfg Config, n *node.Node) *Handler {
	return &Handler{cfg: cfg.WithDefaults(), n: n}
}

// bufs holds event buffers between batches, so that an idle stream holds none.
var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ServeHTTP implements http.Handler. An HTTP/1 stream returns once its
// connection is hijacked; an HTTP/2 one when the stream ends (the client
// goes away, the request context is cancelled, the queue overflows, the
// credential is revoked, or EndStreams).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.Authenticate(r, h.n)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	q := r.URL.Query()
	if len(q["topic"]) == 0 {
		httpapi.WriteError(w, fmt.Errorf("%w: at least one topic filter is required (?topic=)", httpapi.ErrBadRequest))
		return
	}
	start, err := position(r.Header.Get("Last-Event-ID"), q)
	if err != nil {
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
	s := &stream{h: h, tenant: id.Tenant, adm: adm, ctx: ctx, cancel: scancel, uncount: cancel,
		finished: make(chan struct{})}
	s.feed, err = h.n.Subscribe(ctx, adm, q["topic"], start, node.Policy{Queue: h.cfg.QueueSize,
		Overflow: node.OverflowClose, MaxFilters: h.cfg.MaxFilters, Wake: func() { s.wake(false) }})
	if err != nil {
		unlink()
		cancel()
		scancel(err)
		adm.Release()
		h.n.Logger().Debug("sse: subscription refused", "tenant", id.Tenant, "err", err)
		httpapi.WriteError(w, err)
		return
	}

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s.out = &responseSink{w: w, rc: http.NewResponseController(w), timeout: h.cfg.WriteTimeout}
	if err := s.head(ctx, start); err != nil {
		if ctx.Err() == nil {
			h.n.Logger().Info("sse: resume failed, closing stream", "tenant", id.Tenant, "err", err)
		}
		unlink()
		s.close()
		return
	}
	if detach && s.detach(w, r, unlink) {
		return
	}
	// On this call until the stream ends (HTTP/2, or a connection that
	// cannot be hijacked): the request's end ends the stream.
	stop := context.AfterFunc(r.Context(), s.close)
	defer stop()
	s.start()
	<-s.finished
}

// detach hijacks the connection of a stream whose head and replay are
// written and starts the stream on it; false (the stream stays on this
// call) when the connection cannot be hijacked.
func (s *stream) detach(w http.ResponseWriter, r *http.Request, unlink func() bool) bool {
	if !unlink() {
		// The request ended already.
		s.close()
		return true
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable after all (a wrapped writer): stay on this call,
		// ending with the request again.
		return false
	}
	// The client sends nothing after its request, and the response's
	// buffered writer was flushed: neither buffer is kept.
	_ = brw
	s.out = &connSink{conn: conn, chunked: r.ProtoAtLeast(1, 1), timeout: s.h.cfg.WriteTimeout}
	s.srv = r.Context().Value(http.ServerContextKey)
	go s.read(conn)
	s.start()
	return true
}

// head writes the stream's retry field and replays what the start is
// owed, flushing every replayFlushEvery events. After the retained
// messages of a retained start, whose events carry no id (their positions
// are older than the stream's end, and a resume from one would replay
// history), an event with only an id — which EventSource takes as its
// last event id without dispatching anything (WHATWG, "dispatch the
// event", steps 1-2) — names the stream's end the retained messages are
// as of: a reconnect then resumes from there.
func (s *stream) head(ctx context.Context, start node.Start) error {
	buf := s.buffer()
	buf.WriteString("retry: ")
	buf.WriteString(strconv.FormatInt(s.h.cfg.Retry.Milliseconds(), 10))
	buf.WriteString("\n\n")
	if err := s.flush(buf); err != nil {
		return err
	}
	pending := 0
	res, err := s.feed.Replay(ctx, func(it node.Item) error {
		if err := s.h.cfg.event(buf, it); err != nil {
			return err
		}
		if pending++; pending >= replayFlushEvery {
			pending = 0
			return s.flush(buf)
		}
		return nil
	})
	if err == nil && start.RetainedFirst() && res.Last > 0 {
		buf.WriteString("id: ")
		buf.WriteString(message.Position{Epoch: res.Epoch, Seq: res.Last}.String())
		buf.WriteString("\n\n")
	}
	if err == nil {
		err = s.flush(buf)
	}
	s.release(buf)
	return err
}

// position reads where the stream starts: after the resume position of
// the Last-Event-ID header, else after the lastEventId query parameter,
// else where retained= or rewind= say (httpapi.Start), else live. The
// header wins over the query: EventSource reconnects to the URL it was
// given, start included, and resumes from what it received.
func position(header string, q url.Values) (node.Start, error) {
	v := header
	if v == "" {
		start, err := httpapi.Start(q, "lastEventId")
		if err != nil || start.Replays() {
			return start, err
		}
		v = q.Get("lastEventId")
	}
	if v == "" {
		return node.Live(), nil
	}
	p, err := message.ParsePosition(v)
	if err != nil {
		return node.Start{}, fmt.Errorf("last event id %q: %w", v, err)
	}
	return node.After(p), nil
}

// event appends an item's event to buf: a message, or a gap.
func (c *Config) event(buf *bytes.Buffer, it node.Item) error {
	if it.Gap() {
		buf.WriteString("event: " + gapEvent + "\ndata: ")
		if err := wire.AppendJSON(buf, gapData{From: it.Pos.String(), EpochChanged: it.EpochChanged}); err != nil {
			return err
		}
		buf.WriteString("\n\n")
		return nil
	}
	if !it.Retained {
		buf.WriteString("id: ")
		buf.WriteString(it.Pos.String())
		buf.WriteString("\n")
	}
	buf.WriteString("event: ")
	buf.WriteString(c.eventName(it.Msg.Topic))
	buf.WriteString("\ndata: ")
	if err := wire.AppendJSON(buf, wire.Of(it.Msg)); err != nil {
		return err
	}
	buf.WriteString("\n\n")
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

var _ http.Handler = (*Handler)(nil)
