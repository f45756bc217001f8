// Package ws serves Herald's native WebSocket protocol on GET /ws: JSON text
// frames to subscribe (with resume), unsubscribe and publish, and binary
// frames for binary payloads when the client opts in.
//
// # Connecting
//
// Credentials as for every HTTP transport: Authorization: Bearer, the
// herald_token cookie, or ?token= (browsers cannot set headers on a
// WebSocket). A refusal is an HTTP 401/403 JSON error before the upgrade.
// Only same-origin pages may connect unless origin_patterns (or the edge's
// CORS origins) allow others. ?binary=1 opts in to binary frames.
//
// # Client → server
//
//	{"op":"subscribe","id":"1","topic":"a/+","from":"<position>"}   from optional
//	{"op":"subscribe","id":"1","topic":"a/+","retained":true}        or "rewind":10, "rewind":"30s"
//	{"op":"unsubscribe","id":"2","topic":"a/+"}
//	{"op":"publish","id":"3","topic":"a/b","payload":"...","encoding":"utf8","qos":1,"retain":false,"content_type":"text/plain"}
//	{"op":"ping","id":"4"}
//
// id is the client's, echoed in the answer. encoding is "utf8" (default) or
// "base64" (standard, padded); qos is 0 or 1 (both are acknowledged only
// once stored). Publishes are pipelined: the edge sends them to the
// backbone without waiting for each store, up to max_inflight_publishes,
// and stops reading the connection while that many are pending; they are
// stored, and answered (ack or error), in the order sent.
//
// # Server → client
//
//	{"type":"ack","id":"1"}                                     subscribe, unsubscribe
//	{"type":"ack","id":"3","seq":42,"position":"<epoch>-42"}    publish: stored, durable
//	{"type":"message","filter":"a/+","topic":"a/b","payload":"...","encoding":"utf8",
//	 "qos":0,"retain":false,"seq":42,"position":"<epoch>-42","content_type":"...","user_properties":[...]}
//	{"type":"gap","topic":"a/+","from":"<position>","epoch_changed":false}
//	{"type":"error","id":"1","code":"invalid_topic","message":"..."}
//	{"type":"pong","id":"4"}
//
// A message frame is sent per subscription it matches; filter names that
// subscription. payload is text when the payload is valid UTF-8, else base64
// with "encoding":"base64". Error codes are those of package httpapi:
// bad_request, invalid_topic, not_authorized, unavailable, internal.
//
// # Binary frames
//
// With ?binary=1, a binary frame is a 4-byte big-endian length N, N bytes
// of JSON header, then the payload, raw. The server sends a message whose
// payload is not UTF-8 that way, its header the message frame without
// payload and with "encoding":"binary"; UTF-8 payloads still come in text
// frames. A client publishes a raw payload the same way, its header a
// publish request without payload ("encoding" omitted or "binary"). Binary
// frames carry nothing else: another op is answered with error bad_request,
// and a frame that does not follow the layout counts as malformed.
//
// # Resume
//
// A subscribe with from (the position of the last message the client
// has) first answers ack, then sends every stored message after from that
// matches, in order, then live messages, with no duplicate and no hole —
// on any edge. If messages after from may be missing, a gap frame comes
// before the replayed ones. Subscribing again to a filter replaces the
// subscription. After the ack of an unsubscribe no message of it is sent.
//
// # Start
//
// A subscribe without from may ask for a start instead: "retained":true
// sends the retained message of each matching topic first (by topic,
// "retain":true, without a position: a retained message is older than the
// stream's end, and a resume from it would replay history — subscribe
// again with retained instead), "rewind":10 the last 10 matching messages,
// "rewind":"30s" those stored in the last 30 seconds (a Go duration, at
// most 168h); then live messages, with a resume's handover: none missed,
// none twice. A rewind reads history (the history capability). from and
// a start exclude each other (error bad_request).
//
// # Connection rules
//
// Without ?binary=1 a binary frame closes the connection with 1003.
// Malformed JSON is answered with an error frame; max_bad_frames of them in
// a row close with 1008. Frames over max_frame_size close with 1009, on
// their header, before their payload is waited for; an unmasked client
// frame closes with 1002, a text frame that is not UTF-8 with 1007 (RFC
// 6455 §5.1, §8.1; frames.go says why Herald checks these itself). The
// server pings every ping_interval and closes with 1001 when nothing
// (frame or pong) arrived for idle_timeout. Each connection holds at most
// queue_size messages not yet sent: under slow_consumer "close" (default)
// a client that falls behind is closed with 1013 (or the configured 1008)
// and resubscribes with from, losing nothing; under "drop" the excess is
// dropped and each affected subscription receives a gap frame whose from is
// the last position it was sent. An edge shutting down closes with 1012.
package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/wire"
)

// Handler serves GET /ws, or the same protocol over another carrier
// (Transport).
type Handler struct {
	cfg      Config
	n        *node.Node
	upgrade  Upgrader
	protocol string // the telemetry and admission label
	overflow node.Overflow

	// sessions are the open connections, for a drain (Leavers) and the
	// server's shutdown; live counts their goroutines (see ServeHTTP).
	smu      sync.Mutex
	sessions map[*session]struct{}
	servers  sync.Map // *http.Server whose shutdown ends the sessions
}

// NewHandler returns the WebSocket handler over n. cfg must be valid.
func NewHandler(cfg Config, n *node.Node) *Handler {
	return NewTransportHandler(cfg, n, Transport{Protocol: telemetry.ProtocolWS, Upgrade: upgradeCoder})
}

// Transport is a carrier of the protocol other than a WebSocket: a name
// and an upgrade that turns a request into a Conn (package webtransport:
// a WebTransport session's stream). The protocol — its frames, resume,
// publish acknowledgements, limits, slow-consumer policy, revocation and
// drain — is this package's, whatever carries it.
type Transport struct {
	// Protocol names the carrier in telemetry and the connection registry
	// (telemetry.Protocol*).
	Protocol string
	// Upgrade takes over an authenticated, admitted request.
	Upgrade Upgrader
}

// NewTransportHandler returns the protocol's handler over carrier t. cfg
// must be valid.
func NewTransportHandler(cfg Config, n *node.Node, t Transport) *Handler {
	cfg = cfg.WithDefaults()
	h := &Handler{cfg: cfg, n: n, upgrade: t.Upgrade, protocol: t.Protocol, overflow: node.OverflowClose}
	if cfg.SlowConsumer == SlowConsumerDrop {
		h.overflow = node.OverflowDrop
	}
	return h
}

// ServeHTTP implements http.Handler. Once the connection is upgraded it is
// served on a goroutine of its own and ServeHTTP returns: the handler's
// goroutine carries the HTTP server's deep call chain and a stack grown by
// the upgrade (16 KiB), which an idle WebSocket would otherwise hold for
// its whole life. The session ends when the client leaves, a rule above
// closes it, the request's context is cancelled before the upgrade
// completes, or the server shuts down (http.Server.RegisterOnShutdown:
// close 1012).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.Authenticate(r, h.n)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	binaryFrames, err := parseFlag(r.URL.Query().Get("binary"))
	if err != nil {
		httpapi.WriteError(w, fmt.Errorf("%w: binary: %w", httpapi.ErrBadRequest, err))
		return
	}
	s := &session{h: h, id: id, subs: map[string]*subscription{}, binary: binaryFrames,
		pubSlots: make(chan struct{}, h.cfg.MaxInflightPublishes)}
	// Counted against the tenant's connections (429 before the upgrade)
	// and registered: a revoked credential closes the connection (1008).
	s.adm, err = h.n.Admit(r.Context(), node.ClientInfo{ID: httpapi.NewConnID(), Protocol: h.protocol, Remote: r.RemoteAddr,
		Identity: id}, s.revoke)
	if fault.Is(err, fault.Busy) {
		// A shedding edge answers in the protocol: close 1013 (try again
		// later), which WebSocket clients surface, unlike a refused upgrade.
		code := CloseCode(fault.Of(err).WS)
		if conn, uerr := h.upgrade(w, r, &h.cfg, func() {}); uerr == nil {
			_ = conn.Close(code, "server busy")
		}
		return
	}
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	handedOff := false
	defer func() {
		if !handedOff {
			s.adm.Release()
		}
	}()
	// The connection's feed: a backbone that cannot serve fails the
	// upgrade (503), before the client is told it is connected.
	s.feed, err = h.n.NewFeed(r.Context(), s.adm, node.Policy{Queue: h.cfg.QueueSize, Overflow: h.overflow, Wake: s.kick})
	if err != nil {
		h.n.Logger().Warn("ws: backbone unavailable", "tenant", id.Tenant, "err", err)
		httpapi.WriteError(w, err)
		return
	}
	defer func() {
		if !handedOff {
			s.feed.Close()
		}
	}()
	s.touch()
	conn, err := h.upgrade(w, r, &h.cfg, s.touch)
	if err != nil {
		return // the upgrader answered the request
	}
	s.mu.Lock()
	s.conn = conn
	revoked := s.revoked != nil
	s.mu.Unlock()
	if revoked {
		s.close(CloseCode(fault.Table[fault.Revoked].WS), "credential revoked")
	}
	// The session outlives the handler: its context keeps the request's
	// values, not its end (net/http ends a hijacked request's context when
	// the handler returns). An earlier end of the request, the server's
	// shutdown or an internal close ends the reads through the connection.
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(r.Context()))
	unwatch := context.AfterFunc(r.Context(), s.cancel)
	stop := context.AfterFunc(s.ctx, func() { s.close(closeServiceRestart, "server shutting down") })
	s.mu.Lock()
	s.pinger = time.AfterFunc(h.cfg.PingInterval, s.ping)
	s.mu.Unlock()
	s.done = make(chan struct{})
	h.track(s, r.Context().Value(http.ServerContextKey))
	handedOff = true
	go func() {
		defer close(s.done)
		defer s.adm.Release()
		s.serve()
		stop()
		h.forget(s)
		s.end()
	}()
	// From here on the request's end is not the session's: the handler
	// returns now, and net/http then ends the request's context.
	unwatch()
}

// session is one WebSocket connection.
//
// Goroutines: the handler's reads frames and handles them in order; it
// sends publishes to the backbone without waiting for the store, at most
// max_inflight_publishes ahead. A confirm goroutine exists only while
// publishes await their store, and answers them in order; a drain
// goroutine exists only while the queue has messages; a replay goroutine
// only while a subscribe with from replays; the ping timer's goroutine only
// while it pings. Writes are serialized by wmu.
type session struct {
	h   *Handler
	id  auth.Identity
	adm *node.Admission
	// revoked is why the credential no longer holds; guarded by mu.
	revoked error
	conn    Conn
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{} // closed once the session has ended
	feed    *node.Feed
	pinger  *time.Timer

	// binary is the client's opt-in (?binary=1) to binary frames.
	binary bool

	activity atomic.Int64 // unix nanoseconds of the last frame received

	closeOnce sync.Once
	wmu       sync.Mutex

	mu       sync.Mutex
	subs     map[string]*subscription
	draining bool
	ended    bool
	wg       sync.WaitGroup // drain, replay and ping goroutines

	badFrames int // read loop only

	// pubSlots bounds the publishes in flight; a slot is taken by the read
	// loop before sending and given back once the publish is answered.
	pubSlots chan struct{}
	// pubs are the publishes in flight, in the order they were sent,
	// answered by the confirm goroutine, which runs while confirming is set.
	pmu        sync.Mutex
	pubs       []inflight
	confirming bool
}

// inflight is a publish sent to the backbone and not yet answered; err is
// set instead of pending when it failed before being sent.
type inflight struct {
	id      string
	pending *node.Receipt
	err     error
}

// subscription is one filter of the session.
type subscription struct {
	sub *node.Sub
	// stopReplay cancels a running replay; replayed is closed when it ended.
	stopReplay context.CancelFunc
	replayed   chan struct{}
}

func (s *session) touch() { s.activity.Store(time.Now().UnixNano()) }

// enter registers a goroutine that end waits for, unless the session
// ended; the goroutine calls s.wg.Done when it returns.
func (s *session) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.wg.Add(1)
	return true
}

// close closes the connection once, with the first reason given.
func (s *session) close(code CloseCode, reason string) {
	s.closeOnce.Do(func() { _ = s.conn.Close(code, reason) })
}

func (s *session) serve() {
	for {
		binary, data, err := s.conn.Read(context.Background())
		if err != nil {
			if code, reason, ok := closeOf(err); ok {
				s.close(code, reason)
			}
			return
		}
		s.touch()
		if binary && !s.binary {
			s.close(closeUnsupportedData, "binary frames need ?binary=1")
			return
		}
		ok := false
		if binary {
			ok = s.handleBinary(data)
		} else if bytes.Contains(data, []byte(opPublish)) {
			ok = s.handle(data)
		} else {
			ok = shallow(func() bool { return s.handle(data) })
		}
		if !ok {
			return
		}
	}
}

// shallow runs f on a goroutine of its own and returns its result. A
// goroutine's stack, once grown, stays grown until a garbage collection
// shrinks it, and decoding a frame and subscribing run deep (the JSON
// decoder, the core's subscription pipeline, the hub, live interest, the
// backbone): on the reader, they would leave every idle subscribed
// connection holding a stack several times what waiting for its next
// frame needs. So frames are handled on a helper, except those that may
// be publishes (any frame holding the op's name: a cheap look, which a
// topic of that name only sends the other way), whose goroutine would
// cost every published message. Measured with tools/loadgen idle --proto
// ws (5,000 connections, each subscribed to one topic, bin/herald on the
// shared 2-core machine): goroutine stacks 42 MB handled on the reader,
// 22 MB on a helper; RSS growth 30.0 KB per connection, then 23.7-24.4
// KB.
func shallow(f func() bool) bool {
	done := make(chan bool, 1)
	go func() { done <- f() }()
	return <-done
}

// end releases everything the session holds and waits for its goroutines.
func (s *session) end() {
	s.cancel()
	s.mu.Lock()
	s.ended = true
	subs := s.subs
	s.subs = nil
	s.pinger.Stop()
	s.mu.Unlock()
	for _, sub := range subs {
		s.drop(sub)
	}
	s.feed.Close()
	s.wg.Wait()
	s.close(closeNormal, "")
}

// handle serves one client text frame; false ends the session.
func (s *session) handle(data []byte) bool {
	var req request
	if err := json.Unmarshal(data, &req); err != nil {
		return s.badFrame(fmt.Errorf("%w: malformed JSON frame: %w", httpapi.ErrBadRequest, err))
	}
	s.badFrames = 0
	switch req.Op {
	case opSubscribe:
		s.subscribe(req)
	case opUnsubscribe:
		s.unsubscribe(req)
	case opPublish:
		payload, err := wire.DecodePayload(req.Payload, req.Encoding)
		if err != nil {
			s.publishFailed(req.ID, err)
			return true
		}
		s.publish(req, payload, req.Encoding != wire.EncodingBase64)
	case opPing:
		s.send(pong{Type: typePong, ID: req.ID})
	default:
		s.fail(req.ID, fmt.Errorf("%w: unknown op %q", httpapi.ErrBadRequest, req.Op))
	}
	return true
}

// handleBinary serves one client binary frame (opted in): a publish whose
// payload follows its header raw. False ends the session.
func (s *session) handleBinary(data []byte) bool {
	req, payload, err := decodeBinary(data)
	if err != nil {
		return s.badFrame(fmt.Errorf("%w: %w", httpapi.ErrBadRequest, err))
	}
	s.badFrames = 0
	switch {
	case req.Op != opPublish:
		s.fail(req.ID, fmt.Errorf("%w: binary frames carry publish only, not %q", httpapi.ErrBadRequest, req.Op))
	case req.Encoding != "" && req.Encoding != encodingBinary:
		s.publishFailed(req.ID, fmt.Errorf("%w: the encoding of a binary frame is %q", httpapi.ErrBadRequest, encodingBinary))
	default:
		s.publish(req, payload, false)
	}
	return true
}

// badFrame answers a frame that could not be read, or closes the
// connection with 1008 when max_bad_frames came in a row; false ends the
// session.
func (s *session) badFrame(err error) bool {
	if s.badFrames++; s.badFrames >= s.h.cfg.MaxBadFrames {
		s.close(closePolicy, "too many malformed frames")
		return false
	}
	s.fail("", err)
	return true
}

// revoke closes the connection because its credential was revoked or its
// tenant deleted (node.Clients): close 1008 (the fault table's code for a
// revocation). The feed stopped delivering already. It runs on the
// Directory's goroutine, so the close handshake runs on its own.
func (s *session) revoke(reason error) {
	s.mu.Lock()
	s.revoked = reason
	conn := s.conn
	s.mu.Unlock()
	s.h.n.Logger().Info("ws connection closed: credential revoked", "tenant", s.id.Tenant, "reason", reason)
	if conn != nil {
		go s.close(CloseCode(fault.Of(reason).WS), "credential revoked")
	}
}

func (s *session) subscribe(req request) {
	from, err := node.ParseStart(req.Retained, string(req.Rewind))
	if err == nil && req.From != "" {
		if from.Replays() {
			err = fmt.Errorf("%w: from resumes a subscription; retained and rewind start one", node.ErrBadStart)
		} else {
			p, perr := message.ParsePosition(req.From)
			if perr != nil {
				err = fmt.Errorf("from %q: %w", req.From, perr)
			}
			from = node.After(p)
		}
	}
	if err != nil {
		s.fail(req.ID, err)
		return
	}
	s.mu.Lock()
	old := s.subs[req.Topic]
	delete(s.subs, req.Topic)
	full := len(s.subs) >= s.h.cfg.MaxSubscriptions
	s.mu.Unlock()
	if old != nil {
		s.drop(old)
	}
	if full {
		s.fail(req.ID, fmt.Errorf("%w: at most %d subscriptions", httpapi.ErrBadRequest, s.h.cfg.MaxSubscriptions))
		return
	}
	// The core validates the filter (invalid_topic), authorizes it
	// (not_authorized), applies the connection's subscription limit
	// (rate_limited) and takes live interest.
	fs, err := s.feed.Subscribe(s.ctx, []string{req.Topic}, from, node.SubOptions{Key: req.Topic})
	if err != nil {
		s.fail(req.ID, err)
		return
	}
	sub := &subscription{sub: fs}
	s.mu.Lock()
	s.subs[req.Topic] = sub
	s.mu.Unlock()
	s.send(ack{Type: typeAck, ID: req.ID})
	if !from.Replays() {
		// Live only: nothing to replay, nothing touches the network.
		if _, err := fs.Replay(s.ctx, nil); err != nil {
			s.replayFailed(req, sub, err)
		}
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	sub.stopReplay, sub.replayed = cancel, make(chan struct{})
	if !s.enter() {
		cancel()
		close(sub.replayed)
		return
	}
	go func() {
		defer s.wg.Done()
		defer close(sub.replayed)
		defer cancel()
		s.replay(ctx, req, sub)
	}()
}

// replay sends the stored messages of sub after its start, then makes it
// live. ctx stops it (unsubscribe); writes use the session's context, since
// abandoning a write half-way would break the connection.
func (s *session) replay(ctx context.Context, req request, sub *subscription) {
	var buf bytes.Buffer
	_, err := sub.sub.Replay(ctx, func(it node.Item) error {
		return s.write(ctx, &buf, s.frame(it))
	})
	if err != nil && ctx.Err() == nil {
		s.replayFailed(req, sub, err)
	}
}

// replayFailed removes a subscription whose resume failed and tells the
// client, who may subscribe again.
func (s *session) replayFailed(req request, sub *subscription, err error) {
	s.mu.Lock()
	if s.subs[req.Topic] == sub {
		delete(s.subs, req.Topic)
	}
	s.mu.Unlock()
	sub.sub.Close()
	s.h.n.Logger().Info("ws: resume failed", "tenant", s.id.Tenant, "filter", req.Topic, "err", err)
	s.fail(req.ID, err)
}

func (s *session) unsubscribe(req request) {
	s.mu.Lock()
	sub := s.subs[req.Topic]
	delete(s.subs, req.Topic)
	s.mu.Unlock()
	if sub != nil {
		s.drop(sub)
	}
	s.send(ack{Type: typeAck, ID: req.ID})
}

// drop ends a subscription: its replay stops, nothing of it is sent after
// drop returns.
func (s *session) drop(sub *subscription) {
	if sub.stopReplay != nil {
		sub.stopReplay()
		<-sub.replayed
	}
	sub.sub.Close()
	// A drain writes a message of sub holding wmu and checking Closed
	// under it: once wmu was free after the close, none is written.
	s.wmu.Lock()
	//lint:ignore SA2001 an empty critical section is the barrier
	s.wmu.Unlock()
}

// publish sends a publish to the backbone without waiting for its store:
// the confirm goroutine answers it. Publishes are stored, and answered, in
// the order the client sent them. When max_inflight_publishes are in
// flight, publish waits for room, and the connection is not read meanwhile.
func (s *session) publish(req request, payload []byte, utf8 bool) {
	if req.QoS != 0 && req.QoS != 1 {
		s.publishFailed(req.ID, fmt.Errorf("%w: qos must be 0 or 1", httpapi.ErrBadRequest))
		return
	}
	m := &message.Message{Topic: req.Topic, Payload: payload, QoS: byte(req.QoS), Retain: req.Retain,
		ContentType: req.ContentType, PayloadUTF8: utf8}
	select {
	case s.pubSlots <- struct{}{}:
	case <-s.ctx.Done():
		return
	}
	// The core checks it (invalid_topic, not_authorized, rate_limited,
	// payload_too_large); a refusal is answered in its turn, as a store.
	pending, err := s.h.n.Publish(s.ctx, s.adm.Caller(), m, node.PublishOptions{Protocol: s.h.protocol})
	s.enqueue(inflight{id: req.ID, pending: pending, err: err})
}

// publishFailed answers a publish that failed before being sent, after
// the publishes still in flight, so that answers keep the request order.
func (s *session) publishFailed(id string, err error) {
	// A slot is held from sending until answering: none held, none in flight.
	if len(s.pubSlots) == 0 {
		s.fail(id, err)
		return
	}
	select {
	case s.pubSlots <- struct{}{}:
	case <-s.ctx.Done():
		return
	}
	s.enqueue(inflight{id: id, err: err})
}

// enqueue adds a publish holding a slot to the in-flight list and starts
// the confirm goroutine unless it runs.
func (s *session) enqueue(p inflight) {
	s.pmu.Lock()
	s.pubs = append(s.pubs, p)
	start := !s.confirming
	s.confirming = true
	s.pmu.Unlock()
	if !start {
		return
	}
	if !s.enter() {
		s.pmu.Lock()
		s.pubs, s.confirming = nil, false
		s.pmu.Unlock()
		return
	}
	go func() {
		defer s.wg.Done()
		s.confirm()
	}()
}

// confirm answers the publishes in flight, in order, as their stores are
// confirmed, and exits when none is left.
func (s *session) confirm() {
	for {
		s.pmu.Lock()
		if len(s.pubs) == 0 {
			s.pubs, s.confirming = nil, false
			s.pmu.Unlock()
			return
		}
		p := s.pubs[0]
		s.pubs[0] = inflight{}
		s.pubs = s.pubs[1:]
		s.pmu.Unlock()

		err := p.err
		var pos message.Position
		if err == nil {
			// The backbone bounds the wait with its publish timeout.
			pos, err = p.pending.Wait(s.ctx)
		}
		if err != nil {
			if _, status := httpapi.Classify(err); status >= 500 && s.ctx.Err() == nil {
				s.h.n.Logger().Warn("ws: publish failed", "tenant", s.id.Tenant, "err", err)
			}
			s.fail(p.id, err)
		} else {
			s.send(ack{Type: typeAck, ID: p.id, Seq: pos.Seq, Position: pos.String()})
		}
		<-s.pubSlots
	}
}

// fail sends an error frame for request id.
func (s *session) fail(id string, err error) {
	code, msg, _ := httpapi.Describe(err)
	s.send(errorFrame{Type: typeError, ID: id, Code: code, Message: msg})
}

// send writes a control frame (ack, error, pong).
func (s *session) send(v any) {
	var buf bytes.Buffer
	_ = s.write(s.ctx, &buf, v)
}

// write encodes v into buf and sends it under the write timeout, unless
// ctx ended. A failed write breaks the connection, which ends the read loop.
func (s *session) write(ctx context.Context, buf *bytes.Buffer, v any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	binary, err := encodeFrame(buf, v)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(binary, buf.Bytes())
}

// writeLocked writes b under the write timeout only: with coder/websocket,
// a write context ending even just after the write completed may break the
// connection, so the session's context (whose end sends close 1012) is
// not used here.
func (s *session) writeLocked(binary bool, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.h.cfg.WriteTimeout)
	defer cancel()
	return s.conn.Write(ctx, binary, b)
}

// frame returns the frame of an item: a gap, or a message of the
// subscription's filter — a text frame, or a binary one when the client
// opted in and the payload is not UTF-8.
func (s *session) frame(it node.Item) any {
	filter := it.Sub.Key()
	if it.Gap() {
		return gap{Type: typeGap, Topic: filter, From: it.Pos.String(), EpochChanged: it.EpochChanged}
	}
	m, pos := it.Msg, it.Pos.String()
	if it.Retained {
		// Older than the stream's end: a resume from it would replay
		// history. A retained start is resumed by subscribing again.
		pos = ""
	}
	if s.binary && !utf8.Valid(m.Payload) {
		w := wire.Of(&message.Message{Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Seq: m.Seq,
			ContentType: m.ContentType, UserProperties: m.UserProperties})
		return binaryFrame{header: binaryHeader{Type: typeMessage, Filter: filter, Topic: w.Topic, Encoding: encodingBinary,
			QoS: w.QoS, Retain: w.Retain, Seq: w.Seq, Position: pos, ContentType: w.ContentType,
			UserProperties: w.UserProperties}, payload: m.Payload}
	}
	w := wire.Of(m)
	w.Type, w.Filter, w.Position = typeMessage, filter, pos
	return w
}

// kick is the feed's wake-up, called from the hub's dispatch goroutine: it
// starts the drain goroutine unless one runs. On overflow it closes the
// connection at once, from a goroutine of its own (closing blocks), rather
// than after the drain's current write, which a slow client may hold up. A
// revocation closes the connection through revoke.
func (s *session) kick() {
	if err := s.feed.Err(); err != nil {
		if errors.Is(err, node.ErrSlowConsumer) && s.enter() {
			go func() {
				defer s.wg.Done()
				s.closeSlow()
			}()
		}
		return
	}
	s.mu.Lock()
	if s.draining || s.ended {
		s.mu.Unlock()
		return
	}
	s.draining = true
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.drain()
	}()
}

// drain sends what the feed holds until it is empty, then exits.
func (s *session) drain() {
	var items []node.Item
	var buf bytes.Buffer
	tel := s.h.n.Metrics()
	for {
		var err error
		items, err = s.feed.Drain(s.ctx, items)
		if err != nil {
			if errors.Is(err, node.ErrSlowConsumer) {
				s.closeSlow()
			}
			s.stopDraining()
			return
		}
		if len(items) == 0 {
			s.mu.Lock()
			// Deliveries queued after Drain kick, which sees draining
			// set until here and the feed non-empty after.
			if s.feed.Pending() == 0 || s.ended {
				s.draining = false
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			continue
		}
		for _, it := range items {
			if err := s.writeItem(&buf, it.Sub, s.frame(it)); err != nil {
				clear(items)
				s.close(closeInternal, "write failed")
				s.stopDraining()
				return
			}
			if !it.Gap() {
				tel.Delivered(s.h.protocol, it.Msg, true)
			}
		}
		clear(items)
	}
}

func (s *session) closeSlow() {
	// Like nats-server's "Slow Consumer Detected", worth an operator's eye.
	s.h.n.Logger().Info("ws: slow consumer, closing", "tenant", s.id.Tenant, "code", s.h.cfg.CloseCode)
	s.close(CloseCode(s.h.cfg.CloseCode), "slow consumer: resubscribe with from")
}

func (s *session) stopDraining() {
	s.mu.Lock()
	s.draining = false
	s.mu.Unlock()
}

// writeItem writes v for sub unless sub was dropped meanwhile.
func (s *session) writeItem(buf *bytes.Buffer, sub *node.Sub, v any) error {
	binary, err := encodeFrame(buf, v)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if sub.Closed() {
		return nil
	}
	return s.writeLocked(binary, buf.Bytes())
}

// ping runs on the ping timer: it closes an idle connection, or pings it
// and schedules the next ping.
func (s *session) ping() {
	if !s.enter() {
		return
	}
	defer s.wg.Done()
	if time.Since(time.Unix(0, s.activity.Load())) >= s.h.cfg.IdleTimeout {
		s.close(closeGoingAway, "idle timeout")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.h.cfg.PingInterval)
	err := s.conn.Ping(ctx) // not s.ctx: see writeLocked
	cancel()
	if err == nil {
		s.touch()
	}
	s.mu.Lock()
	if !s.ended {
		s.pinger.Reset(s.h.cfg.PingInterval)
	}
	s.mu.Unlock()
}

func parseFlag(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	return strconv.ParseBool(v)
}

var _ http.Handler = (*Handler)(nil)
