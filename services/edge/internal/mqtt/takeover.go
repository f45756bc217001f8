package mqtt

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// Session takeover across edges.
//
// A client identifier names one session per tenant, and a session has at
// most one connection: the newest [MQTT-3.1.4-3]. On one edge the server's
// registry finds the older connection directly. Across edges, every
// connection holds core NATS interest in its control subject
// (backbone.Config.ClientControlSubject; a ChanSubscribe on the server's one
// control channel, so no goroutine per connection), and a CONNECT, before it
// is answered:
//
//  1. closes the older connection on this edge, if any, and waits for it to
//     be gone;
//  2. sends a takeover request on the control subject. An older connection
//     on another edge answers it after it sent DISCONNECT 0x8E (Session
//     taken over) and ended; with none anywhere, NATS answers at once that
//     there are no responders, so a CONNECT costs one round trip;
//  3. subscribes to the control subject and announces itself on it.
//
// The older connection gets TakeoverWait to end (its session saved); the
// CONNECT waits for the answer at most twice that, since the older edge
// starts its wait later. An older connection that did not end in time, or
// an edge that did not answer at all (busy, or cut off from its clients
// but not yet from NATS), leaves the session in two hands: its final save
// may still come. A CONNECT that resumes a session (clean start 0) is then
// refused with 0x88 Server unavailable, and the client retries: resuming
// from a record the older connection is about to replace would send QoS 2
// messages a second time. A clean start takes no state from the record,
// so it proceeds. An edge that died leaves no subscription behind: NATS
// answers "no responders" at once and nothing waits.
//
// Two CONNECTs racing on two edges may both see no responder in step 2.
// Step 3 settles it: NATS delivers the announcements of one subject to
// every subscriber in one order, and a connection that has seen its own
// announcement closes itself (0x8E) when another connection's announcement
// follows. Of racing connections the last to announce survives, so the
// newest connection is always the one kept — never the older, as happens
// with nats-server's MQTT.
//
// An edge configured as the sole edge (Config.SoleEdge, the all-in-one
// process) stops after step 1: no other edge can hold the session.

// Control message headers.
const (
	hdrControl  = "Herald-Ctl"
	hdrConnID   = "Herald-Conn"
	hdrGone     = "Herald-Gone" // in a takeover answer: "1" when the older connection ended
	ctlTakeover = "takeover"
	ctlAnnounce = "announce"
)

// errTakeoverUnconfirmed says the session's older connection was not seen
// to end within the takeover wait.
var errTakeoverUnconfirmed = errors.New("the session's previous connection did not hand it over in time")

// controlBuffer bounds the control messages received and not yet handled.
// They are rare (one per CONNECT of a client identifier this edge holds).
const controlBuffer = 256

// takeOver makes c the only connection of its session, as described above.
// It returns errTakeoverUnconfirmed when an older connection may still
// hold the session; c is registered either way (release undoes it).
func (s *Server) takeOver(ctx context.Context, c *conn) error {
	var unconfirmed error
	deadline := time.Now().Add(s.cfg.TakeoverWait)
	bb := s.node.Backbone
	c.ctlSubject = bb.Config().ClientControlSubject(c.tenant, c.clientID)
	s.mu.Lock()
	old := s.clients[c.ctlSubject]
	s.clients[c.ctlSubject] = c
	s.mu.Unlock()
	if old != nil {
		old.disconnect(ErrSessionTakenOver)
		if !old.waitGone(deadline) {
			unconfirmed = errTakeoverUnconfirmed
		}
	}

	if s.cfg.SoleEdge {
		return unconfirmed
	}
	nc := bb.Conn()
	// The other edge waits TakeoverWait from when the request reaches it.
	rctx, cancel := context.WithTimeout(ctx, 2*s.cfg.TakeoverWait)
	req := nats.NewMsg(c.ctlSubject)
	req.Header.Set(hdrControl, ctlTakeover)
	req.Header.Set(hdrConnID, c.connID)
	resp, err := nc.RequestMsgWithContext(rctx, req)
	cancel()
	switch {
	case errors.Is(err, nats.ErrNoResponders):
	case err != nil:
		unconfirmed = errTakeoverUnconfirmed
		s.node.Log.Warn("mqtt takeover not confirmed", "client", c.clientID, "err", err)
	case resp.Header.Get(hdrGone) != "1":
		unconfirmed = errTakeoverUnconfirmed
		s.node.Log.Warn("mqtt takeover not confirmed", "client", c.clientID,
			"err", "the previous connection did not end within the takeover wait")
	}

	s.ctlStart.Do(func() {
		s.wg.Add(1)
		go s.controlLoop()
	})
	// Subscribed and registered under s.mu, so that handleControl, which
	// looks the subscription up under s.mu, never sees a message of a
	// subscription not registered yet: an unknown subscription is one
	// whose connection has ended (see handleControl).
	s.mu.Lock()
	sub, err := nc.ChanSubscribe(c.ctlSubject, s.ctlCh)
	if err != nil {
		s.mu.Unlock()
		s.node.Log.Warn("mqtt control subscription failed: a later connection elsewhere cannot take this one over",
			"client", c.clientID, "err", err)
		return unconfirmed
	}
	_ = sub.SetPendingLimits(-1, -1)
	s.ctlSubs[sub] = c
	s.mu.Unlock()
	c.mu.Lock()
	c.ctl = sub
	c.mu.Unlock()
	// The server registers the subscription before it routes the
	// announcement (same NATS connection, in order): it comes back to c.
	ann := nats.NewMsg(c.ctlSubject)
	ann.Header.Set(hdrControl, ctlAnnounce)
	ann.Header.Set(hdrConnID, c.connID)
	if err := nc.PublishMsg(ann); err != nil {
		s.node.Log.Warn("mqtt takeover announcement failed", "client", c.clientID, "err", err)
	}
	return unconfirmed
}

// controlLoop handles the control messages of this edge's connections
// until Close.
func (s *Server) controlLoop() {
	defer s.wg.Done()
	for {
		select {
		case m := <-s.ctlCh:
			s.handleControl(m)
		case <-s.ctlStop:
			return
		}
	}
}

func (s *Server) handleControl(m *nats.Msg) {
	s.mu.Lock()
	c := s.ctlSubs[m.Sub]
	s.mu.Unlock()
	if c == nil {
		// The connection ended meanwhile: release forgets the subscription
		// before it unsubscribes, after the session was saved. A takeover
		// request still gets its answer — it would otherwise wait out its
		// bound for nothing and refuse the CONNECT.
		if m.Reply != "" && m.Header.Get(hdrControl) == ctlTakeover {
			ans := nats.NewMsg(m.Reply)
			ans.Header.Set(hdrGone, "1")
			_ = m.RespondMsg(ans)
		}
		return
	}
	from := m.Header.Get(hdrConnID)
	switch m.Header.Get(hdrControl) {
	case ctlAnnounce:
		c.mu.Lock()
		own := from == c.connID
		older := c.echoed && !own
		if own {
			c.echoed = true
		}
		c.mu.Unlock()
		if older {
			c.disconnect(ErrSessionTakenOver)
		}
	case ctlTakeover:
		if from == c.connID {
			return
		}
		c.disconnect(ErrSessionTakenOver)
		if m.Reply == "" {
			return
		}
		// c is counted in s.wg until it is gone, so this Add cannot race
		// with Close's Wait reaching zero.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ans := nats.NewMsg(m.Reply)
			if c.waitGone(time.Now().Add(s.cfg.TakeoverWait)) {
				ans.Header.Set(hdrGone, "1")
			}
			_ = m.RespondMsg(ans)
		}()
	}
}

// waitGone returns once c has ended (true) or at deadline (false).
func (c *conn) waitGone(deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.gone:
		return true
	case <-t.C:
		return false
	}
}

// release forgets a connection that ended: it can no longer be taken over.
func (s *Server) release(c *conn) {
	c.mu.Lock()
	sub := c.ctl
	c.ctl = nil
	c.mu.Unlock()
	s.mu.Lock()
	if c.ctlSubject != "" && s.clients[c.ctlSubject] == c {
		delete(s.clients, c.ctlSubject)
	}
	if sub != nil {
		delete(s.ctlSubs, sub)
	}
	s.mu.Unlock()
	if sub != nil {
		// Drained, not unsubscribed: until the NATS server has the UNSUB,
		// it still routes requests here, and an unsubscribed subscription
		// would drop them unanswered, leaving a CONNECT elsewhere to wait
		// out its bound and be refused. Drained, they reach handleControl,
		// which answers for the ended connection (one PING round trip in
		// the client library's own goroutine).
		if err := sub.Drain(); err != nil {
			_ = sub.Unsubscribe()
		}
	}
}
