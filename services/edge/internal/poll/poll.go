// Package poll serves HTTP long-polling on GET /poll, for clients that can
// hold no stream: each request returns the messages after a cursor, waiting
// a while for the first one if there is none yet. The edge keeps nothing
// between two polls, so consecutive polls may go to different edges.
//
// # Request
//
//	GET /poll?topic=<filter>[&topic=<filter>...][&cursor=<position> | &retained=true | &rewind=<n>|<duration>][&timeout=<seconds>][&max=<n>]
//
// Credentials as for every HTTP transport (Authorization: Bearer, the
// herald_token cookie or ?token=). timeout defaults to 25 s and is capped at
// max_timeout (60 s by default); 0 answers at once. max (default 100) caps
// the messages of one answer, at most max_messages (1000).
//
// # Answer
//
//	200 {"messages":[{"topic":"a/b","payload":"hi","encoding":"utf8","qos":1,"retain":false,
//	                  "seq":42,"position":"<epoch>-42","content_type":"...","user_properties":[...]}, ...],
//	     "cursor":"<epoch>-42","gap":false}
//
// Messages are those stored after cursor that match a filter, in order, as
// on SSE: the poll goes through the edge's one subscription pipeline
// (package node), the SSE and WebSocket resume's. cursor is where the next poll starts: the position of the last
// message returned, or further when the stream holds nothing else
// matching. Without a cursor the answer is immediate and empty, and its
// cursor is the stream's current end: polling from it yields every message
// stored afterwards. gap is true when messages after the given cursor may be
// missing (they left the replay window, or the cursor names another epoch:
// then epoch_changed is true too), exactly as SSE's gap event.
//
// A first poll may ask for a start instead of a cursor, as on SSE:
// retained=true answers the retained message of each matching topic (by
// topic, without a position: each is older than the cursor), rewind=10 the
// last 10 matching messages, rewind=30s those stored in the last 30
// seconds — at once, at most max of them, with the cursor where the next
// poll continues (the rest of a rewind comes next; retained messages
// beyond max are left out): polling on from it misses nothing stored
// after the start and repeats nothing it gave. A rewind
// reads history (the history capability). cursor and a start exclude
// each other (400).
//
// An answer comes as soon as there is something to return: at once if the
// store holds matching messages after cursor (up to max), else with the
// first live ones, else after timeout with no message and the cursor moved
// past what was looked at. Errors are the JSON errors of package httpapi;
// a poll whose credential is revoked (key deleted, changed or expired,
// tenant deleted) while it waits is answered at once with 401
// not_authenticated, nothing of what it gathered included.
package poll

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/wire"
)

// Config configures GET /poll. The zero value is valid.
type Config struct {
	// DefaultTimeout is the wait of a poll that does not say; default 25s,
	// under the 30 s many proxies allow an idle request.
	DefaultTimeout time.Duration `name:"default-timeout" env:"HERALD_POLL_DEFAULT_TIMEOUT" help:"The wait of a poll that does not say; default 25s, under the 30 s many proxies allow an idle request."`
	// MaxTimeout caps the wait a poll may ask for; default 60s.
	MaxTimeout time.Duration `name:"max-timeout" env:"HERALD_POLL_MAX_TIMEOUT" help:"Caps the wait a poll may ask for; default 60s."`
	// DefaultMessages is the max of a poll that does not say; default 100.
	DefaultMessages int `name:"default-messages" env:"HERALD_POLL_DEFAULT_MESSAGES" placeholder:"N" help:"The max of a poll that does not say; default 100."`
	// MaxMessages caps the max a poll may ask for; default 1000.
	MaxMessages int `name:"max-messages" env:"HERALD_POLL_MAX_MESSAGES" placeholder:"N" help:"Caps the max a poll may ask for; default 1000."`
	// MaxFilters bounds the topic filters of one poll; default 32.
	MaxFilters int `name:"max-filters" env:"HERALD_POLL_MAX_FILTERS" placeholder:"N" help:"Bounds the topic filters of one poll; default 32."`
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.DefaultTimeout == 0 {
		c.DefaultTimeout = 25 * time.Second
	}
	if c.MaxTimeout == 0 {
		c.MaxTimeout = 60 * time.Second
	}
	if c.DefaultMessages == 0 {
		c.DefaultMessages = 100
	}
	if c.MaxMessages == 0 {
		c.MaxMessages = 1000
	}
	if c.MaxFilters == 0 {
		c.MaxFilters = 32
	}
	return c
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.DefaultTimeout < 0 || c.MaxTimeout < 0 || c.DefaultMessages < 0 || c.MaxMessages < 0 || c.MaxFilters < 0 {
		return errors.New("poll: negative limit")
	}
	if c.DefaultTimeout > c.MaxTimeout || c.DefaultMessages > c.MaxMessages {
		return errors.New("poll: a default exceeds its maximum")
	}
	return nil
}

// Response is the answer to a poll.
type Response struct {
	Messages     []wire.Message `json:"messages"`
	Cursor       string         `json:"cursor"`
	Gap          bool           `json:"gap"`
	EpochChanged bool           `json:"epoch_changed,omitempty"`
}

// Handler serves GET /poll.
type Handler struct {
	cfg Config
	n   *node.Node
}

// NewHandler returns the long-polling handler over n. cfg must be valid.
func NewHandler(cfg Config, n *node.Node) http.Handler {
	return &Handler{cfg: cfg.WithDefaults(), n: n}
}

// errFull stops a replay once a poll has its max messages.
var errFull = errors.New("poll: answer full")

// request is a parsed poll.
type request struct {
	filters []string
	cursor  *message.Position
	// start is where a poll without cursor starts: retained or rewind.
	start   node.Start
	timeout time.Duration
	max     int
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.Authenticate(r, h.n)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	req, err := h.parse(r)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	ctx, adm, cancel, err := httpapi.Admit(r, h.n, "poll", id)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	defer cancel()
	defer adm.Release()
	resp, err := h.poll(ctx, adm, req)
	if cause := context.Cause(ctx); errors.Is(cause, auth.ErrRevoked) {
		// Revoked while the poll ran (its wait ends at once): whatever it
		// gathered is not the client's any more. 401, with the challenge.
		err = cause
	}
	if err != nil {
		if ctx.Err() == nil {
			h.n.Logger().Info("poll failed", "tenant", id.Tenant, "err", err)
		}
		httpapi.WriteError(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
}

// poll answers a poll through the core's subscription pipeline: live
// interest first, then the replay after the cursor, then, if that found
// nothing, a wait for live messages — so nothing stored after the cursor
// escapes both. Without a cursor it answers at once with the stream's end.
func (h *Handler) poll(ctx context.Context, adm *node.Admission, req request) (Response, error) {
	resp := Response{Messages: []wire.Message{}}
	wake := make(chan struct{}, 1)
	start := req.start
	if req.cursor != nil {
		// A cursor reads the stored messages after it: history.
		start = node.After(*req.cursor)
	}
	// OverflowDrop: live messages beyond max are dropped (with a gap,
	// which ends the answer); the cursor stays at the last one returned,
	// so the next poll replays them.
	feed, err := h.n.Subscribe(ctx, adm, req.filters, start, node.Policy{Queue: req.max, Overflow: node.OverflowDrop,
		MaxFilters: h.cfg.MaxFilters, Wake: func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		return resp, err
	}
	defer feed.Close()
	if !start.Replays() {
		head, err := h.n.Head(ctx, adm.Identity().Tenant)
		resp.Cursor = head.String()
		return resp, err
	}
	tel := h.n.Metrics()
	res, err := feed.Replay(ctx, func(it node.Item) error {
		if it.Gap() {
			resp.Gap, resp.EpochChanged = true, it.EpochChanged
			return nil
		}
		w := wireAt(it)
		if it.Retained {
			w.Position = "" // older than the cursor: see the package doc
		}
		resp.Messages = append(resp.Messages, w)
		tel.Delivered(telemetry.ProtocolPoll, it.Msg, false)
		if len(resp.Messages) >= req.max {
			return errFull
		}
		return nil
	})
	switch {
	case errors.Is(err, errFull) && !start.RetainedFirst():
		resp.Cursor = resp.Messages[len(resp.Messages)-1].Position
		return resp, nil
	case errors.Is(err, errFull):
		// More retained messages than max: the cursor is the stream's end
		// (a retained message's position is older), the rest left out.
		head, err := h.n.Head(ctx, adm.Identity().Tenant)
		resp.Cursor = head.String()
		return resp, err
	case err != nil:
		return Response{}, err
	}
	// The replay covered the stream up to res.Last (from another epoch's
	// cursor, it starts there).
	last := res.Last
	if req.cursor != nil && !res.EpochChanged {
		last = max(last, req.cursor.Seq)
	}
	resp.Cursor = message.Position{Epoch: res.Epoch, Seq: last}.String()
	if len(resp.Messages) > 0 || resp.Gap || req.timeout <= 0 || req.cursor == nil {
		return resp, nil
	}

	timer := time.NewTimer(req.timeout)
	defer timer.Stop()
	select {
	case <-wake:
	case <-timer.C:
		return resp, nil
	case <-ctx.Done():
		return resp, nil
	}
	items, _ := feed.Drain(ctx, nil)
	for _, it := range items {
		if it.Gap() {
			// Dropped for lack of room (or a recreated stream): the next
			// poll, from the cursor, replays what follows.
			break
		}
		resp.Messages = append(resp.Messages, wireAt(it))
		tel.Delivered(telemetry.ProtocolPoll, it.Msg, true)
	}
	if n := len(resp.Messages); n > 0 {
		resp.Cursor = resp.Messages[n-1].Position
	}
	return resp, nil
}

// wireAt is the JSON form of an item's message, with its position.
func wireAt(it node.Item) wire.Message {
	w := wire.Of(it.Msg)
	w.Position = it.Pos.String()
	return w
}

// parse reads and bounds the query of a poll.
func (h *Handler) parse(r *http.Request) (request, error) {
	q := r.URL.Query()
	req := request{timeout: h.cfg.DefaultTimeout, max: h.cfg.DefaultMessages}
	if len(q["topic"]) == 0 {
		return req, fmt.Errorf("%w: at least one topic filter is required (?topic=)", httpapi.ErrBadRequest)
	}
	req.filters = q["topic"]
	start, err := httpapi.Start(q, "cursor")
	if err != nil {
		return req, err
	}
	req.start = start
	if v := q.Get("cursor"); v != "" {
		p, err := message.ParsePosition(v)
		if err != nil {
			return req, fmt.Errorf("cursor %q: %w", v, err)
		}
		req.cursor = &p
	}
	if v := q.Get("timeout"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || !(s >= 0) {
			return req, fmt.Errorf("%w: timeout must be a number of seconds", httpapi.ErrBadRequest)
		}
		// Capped before the conversion: a huge or infinite number of
		// seconds would overflow time.Duration to a negative timeout.
		req.timeout = h.cfg.MaxTimeout
		if s < h.cfg.MaxTimeout.Seconds() {
			req.timeout = time.Duration(s * float64(time.Second))
		}
	}
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return req, fmt.Errorf("%w: max must be a positive integer", httpapi.ErrBadRequest)
		}
		req.max = min(n, h.cfg.MaxMessages)
	}
	return req, nil
}

var _ http.Handler = (*Handler)(nil)
