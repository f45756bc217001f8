package ws

import (
	"context"
	"time"
)

// flushPoll is how often a leaving session looks whether its queue has
// been written.
const flushPoll = 10 * time.Millisecond

// track registers a session, and arranges once per server (srv, the
// request's http.ServerContextKey value) for the server's shutdown to end
// it: a hijacked connection is no longer the server's, and the session
// runs past its handler.
func (h *Handler) track(s *session, srv any) {
	h.smu.Lock()
	if h.sessions == nil {
		h.sessions = make(map[*session]struct{})
	}
	h.sessions[s] = struct{}{}
	h.smu.Unlock()
	if hs, ok := srv.(interface{ RegisterOnShutdown(func()) }); ok {
		if _, loaded := h.servers.LoadOrStore(hs, true); !loaded {
			hs.RegisterOnShutdown(h.EndSessions)
		}
	}
}

// EndSessions closes every session with 1012, service restart, and
// returns once they have ended. The server's shutdown calls it.
func (h *Handler) EndSessions() {
	h.smu.Lock()
	all := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		all = append(all, s)
		s.cancel()
	}
	h.smu.Unlock()
	for _, s := range all {
		<-s.done
	}
}

func (h *Handler) forget(s *session) {
	h.smu.Lock()
	defer h.smu.Unlock()
	delete(h.sessions, s)
}

// Leavers returns, per connection open now, a function that asks its
// client to leave: live messages stop, those already queued are written
// (so that the client's last position is the last one it was sent), then
// the connection is closed with 1012, service restart. The client
// reconnects, to another edge, and resubscribes with from: nothing is
// lost. A drain calls them spread over time.
func (h *Handler) Leavers() []func(context.Context) {
	h.smu.Lock()
	defer h.smu.Unlock()
	leave := make([]func(context.Context), 0, len(h.sessions))
	for s := range h.sessions {
		leave = append(leave, s.leave)
	}
	return leave
}

// leave ends the session for a drain; see Leavers. The flush is bounded by
// the write timeout and ctx.
func (s *session) leave(ctx context.Context) {
	s.feed.Leave()
	ctx, cancel := context.WithTimeout(ctx, s.h.cfg.WriteTimeout)
	defer cancel()
	t := time.NewTicker(flushPoll)
	defer t.Stop()
	for !s.flushed() {
		select {
		case <-t.C:
		case <-ctx.Done():
			s.close(closeServiceRestart, "server shutting down")
			return
		}
	}
	s.close(closeServiceRestart, "server shutting down")
}

// flushed reports whether nothing queued is left to write.
func (s *session) flushed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended || (!s.draining && s.feed.Pending() == 0)
}

// Open returns the number of connections open.
func (h *Handler) Open() int {
	h.smu.Lock()
	defer h.smu.Unlock()
	return len(h.sessions)
}
