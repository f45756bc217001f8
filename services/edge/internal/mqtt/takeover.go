package mqtt

import (
	"context"
	"errors"
	"time"

	"github.com/heraldmq/herald/pkg/control"
	"github.com/heraldmq/herald/pkg/record"
)

// Session takeover across edges.
//
// A client identifier names one session per tenant, and a session has at
// most one connection: the newest [MQTT-3.1.4-3]. On one edge the server's
// registry finds the older connection directly. Across edges, every
// connection holds interest in its control subject on the control plane
// (Deps.ClientSubject; a subscription of the server's one control.Inbox,
// so no goroutine per connection), and a CONNECT, before it is answered:
//
//  1. closes the older connection on this edge, if any, and waits for it to
//     be gone;
//  2. sends a takeover request on the control subject. An older connection
//     on another edge answers it after it sent DISCONNECT 0x8E (Session
//     taken over) and ended; with none anywhere, the control plane (core
//     NATS) answers at once that there are no responders
//     (control.ErrNoResponders), so a CONNECT costs one round trip;
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
	c.ctlSubject = s.deps.ClientSubject(c.tenant, c.clientID)
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
	ctl := s.deps.Control
	// The other edge waits TakeoverWait from when the request reaches it.
	rctx, cancel := context.WithTimeout(ctx, 2*s.cfg.TakeoverWait)
	resp, err := ctl.Request(rctx, c.ctlSubject, map[string]string{hdrControl: ctlTakeover, hdrConnID: c.connID}, nil)
	cancel()
	switch {
	case errors.Is(err, control.ErrNoResponders):
	case err != nil:
		unconfirmed = errTakeoverUnconfirmed
		s.log.Warn("mqtt takeover not confirmed", "client", c.clientID, "err", err)
	case resp.Header[hdrGone] != "1":
		unconfirmed = errTakeoverUnconfirmed
		s.log.Warn("mqtt takeover not confirmed", "client", c.clientID,
			"err", "the previous connection did not end within the takeover wait")
	}

	s.ctlStart.Do(func() {
		s.inbox = ctl.NewInbox(controlBuffer)
		s.wg.Add(1)
		go s.controlLoop(s.inbox)
	})
	// Subscribed and registered under s.mu, so that handleControl, which
	// looks the subscription up under s.mu, never sees a message of a
	// subscription not registered yet: an unknown subscription is one
	// whose connection has ended (see handleControl).
	s.mu.Lock()
	sub, err := s.inbox.Subscribe(c.ctlSubject)
	if err != nil {
		s.mu.Unlock()
		s.log.Warn("mqtt control subscription failed: a later connection elsewhere cannot take this one over",
			"client", c.clientID, "err", err)
		return unconfirmed
	}
	s.ctlSubs[sub] = c
	s.mu.Unlock()
	c.mu.Lock()
	c.ctl = sub
	c.mu.Unlock()
	// The control plane registers the subscription before it routes the
	// announcement (one NATS connection, in order): it comes back to c.
	if err := ctl.Publish(c.ctlSubject, map[string]string{hdrControl: ctlAnnounce, hdrConnID: c.connID}, nil); err != nil {
		s.log.Warn("mqtt takeover announcement failed", "client", c.clientID, "err", err)
	}
	return unconfirmed
}

// controlLoop handles the control messages of this edge's connections
// until Close, and unsubscribes the control subscriptions of ended
// connections once their grace is over (see release).
func (s *Server) controlLoop(inbox *control.Inbox) {
	defer s.wg.Done()
	defer inbox.Close()
	grace := s.cfg.retireAfter
	tick := time.NewTicker(grace)
	defer tick.Stop()
	for {
		select {
		case m := <-inbox.C:
			s.handleControl(m)
		case now := <-tick.C:
			s.unsubscribeRetired(now.Add(-grace))
		case <-s.ctlStop:
			s.unsubscribeRetired(time.Time{})
			return
		}
	}
}

// retiredSub is the control subscription of an ended connection, kept
// answering for it until its grace is over.
type retiredSub struct {
	c  *conn
	at time.Time
}

// unsubscribeRetired unsubscribes the retired subscriptions released
// before cutoff; all of them when cutoff is zero.
func (s *Server) unsubscribeRetired(cutoff time.Time) {
	var due []*control.Sub
	s.mu.Lock()
	for sub, r := range s.retired {
		if cutoff.IsZero() || r.at.Before(cutoff) {
			due = append(due, sub)
			delete(s.retired, sub)
		}
	}
	s.mu.Unlock()
	for _, sub := range due {
		_ = sub.Unsubscribe()
	}
}

func (s *Server) handleControl(m *control.Msg) {
	s.mu.Lock()
	c := s.ctlSubs[m.Sub]
	ended := s.retired[m.Sub].c
	s.mu.Unlock()
	if c == nil {
		// The connection ended (release), its session saved. A takeover
		// request still gets its answer, if no newer connection holds the
		// session — the CONNECT would otherwise wait out its bound for
		// nothing and be refused.
		if m.Expects() && m.Header[hdrControl] == ctlTakeover {
			// controlLoop, which runs this, is counted in s.wg.
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.answerEnded(m, ended)
			}()
		}
		return
	}
	from := m.Header[hdrConnID]
	switch m.Header[hdrControl] {
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
		if !m.Expects() {
			return
		}
		// c is counted in s.wg until it is gone, so this Add cannot race
		// with Close's Wait reaching zero.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ans := map[string]string{}
			if c.waitGone(time.Now().Add(s.cfg.TakeoverWait)) {
				ans[hdrGone] = "1"
			}
			_ = m.Respond(ans, nil)
		}()
	}
}

// answerEnded answers a takeover request that reached the control
// subscription of an ended connection c (nil: one unsubscribed since) with
// "gone" — unless the session record names another connection: a newer
// connection of the client, on another edge, holds the session and
// answers for itself once it has ended and saved it. The ended
// connection's "gone" would come first and let the CONNECT load the
// session before that save. If the record cannot be read, nothing is
// answered: the CONNECT is refused after its bound and the client retries.
func (s *Server) answerEnded(m *control.Msg, c *conn) {
	if c != nil && s.sessions != nil {
		ctx, cancel := context.WithTimeout(s.stopCtx, s.cfg.TakeoverWait)
		rec, err := s.sessions.LoadSession(ctx, c.tenant, c.clientID)
		cancel()
		switch {
		case errors.Is(err, record.ErrNoSession):
		case err != nil:
			if s.stopCtx.Err() == nil {
				s.log.Warn("mqtt takeover request for an ended connection not answered: session record not read",
					"client", c.clientID, "err", err)
			}
			return
		case rec.ConnectedTo != "" && rec.ConnectedTo != c.holder():
			return
		}
	}
	_ = m.Respond(map[string]string{hdrGone: "1"}, nil)
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
//
// Its control subscription is not dropped at once: until the NATS server
// has the UNSUB it still routes takeover requests here, and a request to a
// dropped subscription goes unanswered, leaving a CONNECT elsewhere to wait
// out its bound and be refused. Kept a little longer (Config.retireAfter), it
// delivers them to handleControl, which answers for the ended connection;
// then controlLoop unsubscribes it. Not the client library's Drain, which
// does the same in one call: a Drain that starts while the NATS connection
// is reconnecting sends no UNSUB, the reconnect subscribes the draining
// subscription again, and the drain then removes it on the client only —
// the server keeps routing the subject here for as long as the NATS
// connection lasts, and that client's resuming CONNECTs are refused
// (TestSessionTakeoverAfterNATSReconnect). A plain Unsubscribe cannot leave
// that behind: it removes the subscription under the connection's lock, so
// a reconnect either resubscribes nothing or is followed by the UNSUB.
func (s *Server) release(c *conn) {
	c.mu.Lock()
	sub := c.ctl
	c.ctl = nil
	c.mu.Unlock()
	s.mu.Lock()
	if c.ctlSubject != "" && s.clients[c.ctlSubject] == c {
		delete(s.clients, c.ctlSubject)
	}
	closed := s.closed
	if sub != nil {
		delete(s.ctlSubs, sub)
		if !closed {
			s.retired[sub] = retiredSub{c: c, at: time.Now()}
		}
	}
	s.mu.Unlock()
	if sub != nil && closed {
		_ = sub.Unsubscribe()
	}
}
