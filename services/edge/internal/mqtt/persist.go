package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/record"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Persistent sessions.
//
// A session that outlives its connection (MQTT 5 Session Expiry Interval
// above 0; MQTT 3.1.1 CleanSession 0), or whose connection has a will, has
// a record in the session store (record.Session), written by the edge that
// holds the connection and, once it is disconnected, by the session service
// (will delay, expiry). Every write is conditional on the revision last
// read, so two writers never silently overwrite each other: an edge whose
// save conflicts has lost the session (taken over, or its lease declared
// lapsed) and closes the connection with 0x8E.
//
// Offline messages are not queued anywhere: the record holds the stream
// position the client has been given everything up to (Delivered, the
// cursor) and its subscriptions. A CONNECT that resumes the session, on any
// edge, authorizes the subscriptions again for the credential it presents
// (those it no longer may hold are left out, and so are their messages),
// subscribes them in the connection's feed first (live messages held),
// replays the tenant stream after the cursor filtered by them
// (node.Feed.Resume, the core's one replay: replay buffer, then the
// stream), QoS downgraded to each subscription's and QoS 0 messages left
// out as MQTT allows, then releases the live messages with a sequence
// beyond the replay's end: the resume of every transport. The
// outbound QoS 1 and 2 messages in flight at the save are recorded by
// sequence and packet identifier and sent again, with DUP and the same
// identifier, when the replay reaches them; those the client had received
// (PUBREC) get their PUBREL again.
//
// The cursor is the stream sequence below which nothing is owed: the
// highest sequence routed to the connection, lowered to just before the
// oldest message still queued or sent and not acknowledged. It is saved
// when the connection ends, and every SessionSaveInterval while it lives
// if it moved, never more often: a position, not a queue, so the write
// rate does not depend on the message rate, and an idle connection writes
// nothing. A crash
// loses at most one interval of progress, and the messages of that
// interval are sent again: at least once for QoS 1, as MQTT allows.
//
// QoS 2 is exactly once across a normal disconnect, a takeover, an edge
// shutdown and an edge crash. A disconnect, a takeover and a shutdown save
// the in-flight state before the session moves. For a crash, what a
// resumed session does must never repeat what the client already took:
//
//   - Inbound, the JetStream message id of a QoS 2 publish is saved before
//     the message is published, so a retransmission to another edge after a
//     crash is published under the same id and dropped by JetStream.
//   - Outbound, the record holds every QoS 2 message sent and not
//     completed (AwaitPubrec), before its PUBLISH leaves: a resumed session
//     sends it again with DUP and the same packet identifier, which a
//     client that already has it answers with PUBREC without delivering it
//     again [MQTT-4.3.3-10]. Never as a new message: sent under a new
//     identifier, it would be delivered twice.
//   - Once the client's PUBREC came, the record holds the exchange as
//     released (AwaitPubcomp) before the PUBREL leaves: a resumed session
//     sends PUBREL, never the PUBLISH, which a client that already had the
//     PUBREL (and forgot the identifier) would take for a new message. A
//     PUBREL sent again is harmless (PUBCOMP 0x92 at worst).
//   - A completed exchange (PUBCOMP) of a message the cursor has not passed
//     yet (an older one is still unacknowledged or queued) stays in the
//     record as Completed until the cursor passes it (maxCompleted at
//     most), so that the replay skips it; so does a released one.
//
// The writer takes these saves (saveExchanges): one store write before it
// writes a batch holding a new QoS 2 PUBLISH or a PUBREL, whatever the
// batch holds — so at most two writes per QoS 2 message when messages come
// one at a time, fewer in bursts (BenchmarkQoS2SessionWrites); QoS 0 and 1
// deliveries write nothing. A store that cannot be written does not stop
// delivery: the failure is logged, and only an edge crash before the next
// successful save can then repeat a QoS 2 message.
//
// Overflow: a resume sends at most MaxOfflineMessages messages; if more
// matched while the client was away, the oldest are skipped, counted
// (Stats.OfflineDropped) and logged — MQTT has no way to tell the client.
// Messages older than the stream's retention are gone likewise (logged).
//
// The edge lease: while connected, the record names the connection
// (ConnectedTo) and the edge incarnation (Edge), whose one lease, renewed
// by the edge (edgelease.go), vouches for all its sessions. If the edge
// dies the lease lapses and the session service treats the session as
// disconnected at its end: it fires the will after its delay, and expires
// the session.

// recorder writes a connection's session record, the lock domain of the
// record, under saveMu, which serialises its writes: the record last
// written (nil if the session keeps none), whether another writer took it,
// when it was written, the changes it reflects, whether the connection
// ended, and the session's expiry. A write takes a snapshot of the other
// domains (inflight, then outbox), each under its own lock.
type recorder struct {
	saveMu       sync.Mutex
	rec          *record.Session
	recLost      bool
	ended        bool
	lastSave     time.Time
	savedChanges uint64
	// expiry is the session expiry interval in seconds: 0, the session
	// ends with the connection. Set by CONNECT, changed by a DISCONNECT
	// under saveMu.
	expiry uint32
}

// keeps reports whether the connection writes a record: it has one, and
// no other writer took it. The caller holds saveMu.
func (r *recorder) keeps() bool { return r.rec != nil && !r.recLost }

// holder names the connection in its session record (ConnectedTo).
func (c *conn) holder() string { return c.n.EdgeID() + "/" + c.connID }

// errSessionLost ends a connection whose session record was changed by
// another writer.
var errSessionLost = fmt.Errorf("%w: session record changed elsewhere", ErrSessionTakenOver)

// errClosing aborts a resume whose connection is being closed (taken
// over already, or the server is shutting down).
var errClosing = errors.New("mqtt: connection closing")

// storeTimeout bounds each session store call.
const storeTimeout = 5 * time.Second

// openSession loads or creates the connection's session after the takeover
// (the previous connection, anywhere, saved it before it answered), and
// writes the record this connection holds. It reports whether a session
// was resumed; its record, if any, is in c.rec.
func (c *conn) openSession(ctx context.Context, clean bool) (loaded *record.Session, present bool, err error) {
	recs := c.s.sessions
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		c.sess = newSession(c.clientID)
		c.mu.Unlock()
		c.inflight.reset()
		if recs == nil {
			return nil, false, nil
		}
		loaded, err = c.tryOpen(ctx, recs, clean)
		if !errors.Is(err, record.ErrConflict) || attempt == 2 {
			return loaded, loaded != nil, err
		}
	}
}

// tryOpen is one attempt of openSession; it returns the loaded session, if
// one is resumed.
func (c *conn) tryOpen(ctx context.Context, recs Sessions, clean bool) (*record.Session, error) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	rec, err := recs.LoadSession(sctx, c.tenant, c.clientID)
	switch {
	case errors.Is(err, record.ErrNoSession):
		rec = nil
	case err != nil:
		return nil, err
	}
	now := time.Now()
	if rec != nil {
		exp, expires := rec.ExpiresAt()
		if clean || (expires && !exp.After(now)) {
			// The old session ends here: a will it still holds is due now
			// (MQTT 5 §3.1.3.2.2), under the id the session service would
			// use, so that it is stored once whoever publishes it.
			if rec.Will != nil && !rec.DisconnectedAt.IsZero() {
				w, err := c.n.Kept(c.tenant, rec.Will.Message(c.tenant, now))
				if err == nil {
					_, err = w.Publish(sctx, node.PublishOptions{MsgID: record.WillMsgID(c.tenant, rec), Wait: node.WaitStored})
				}
				if err != nil {
					return nil, fmt.Errorf("publishing the ended session's will: %w", err)
				}
			}
			if err := recs.DeleteSession(sctx, c.tenant, c.clientID, rec.Revision); err != nil {
				return nil, err
			}
			rec = nil
		}
	}
	if rec != nil {
		c.mu.Lock()
		c.loadLocked(rec)
		c.mu.Unlock()
		c.inflight.restore(rec)
	}
	if rec == nil && c.expiry == 0 && c.will == nil {
		return nil, nil // nothing to keep: the session ends with the connection
	}
	if rec == nil && c.expiry > 0 {
		// A new session owes nothing published before it existed.
		head, err := c.n.Head(sctx, c.tenant)
		if err != nil {
			return nil, err
		}
		c.hi, c.epoch = head.Seq, head.Epoch
	} else if _, err := c.n.Epoch(sctx, c.tenant); err != nil {
		// The session service only looks after tenants whose stream exists.
		return nil, err
	}
	// The record names the edge lease: it must live first.
	if err := c.s.ensureLease(sctx); err != nil {
		return nil, err
	}
	next := c.record()
	if rec != nil {
		next.Revision = rec.Revision
	}
	if err := recs.SaveSession(sctx, c.tenant, next); err != nil {
		return nil, err
	}
	c.saveMu.Lock()
	c.rec, c.lastSave = next, now
	c.saveMu.Unlock()
	return rec, nil
}

// loadLocked makes a stored session this connection's, on its sending
// side (inflight.restore takes the receiving side).
func (c *conn) loadLocked(rec *record.Session) {
	c.hi, c.epoch = rec.Delivered.Seq, rec.Delivered.Epoch
	s := c.sess
	s.restoring = rec.Subscriptions
	for _, f := range rec.Inflight {
		switch f.Phase {
		case record.AwaitPuback, record.AwaitPubrec, record.AwaitPubcomp:
			if s.outbound == nil {
				s.outbound = map[uint16]*outbound{}
			}
			s.sent++
			qos := byte(2)
			if f.Phase == record.AwaitPuback {
				qos = 1
			}
			// The message itself comes back from the replay (placeholder
			// until then); a released one only needs its PUBREL.
			s.outbound[f.PacketID] = &outbound{d: delivery{id: f.PacketID, qos: qos, track: true}, seq: f.Seq,
				order: s.sent, released: f.Phase == record.AwaitPubcomp}
		case record.Completed:
			s.complete(f.Seq)
		}
	}
}

// record returns the record of the connection's session as it stands,
// connected under the edge lease: a snapshot of its receiving side, then
// of its sending side, each under its domain's lock.
func (c *conn) record() *record.Session {
	in := c.inflight.record()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recordLocked(in)
}

// recordLocked returns the record of the session with the open inbound
// exchanges in (inflight.record); the caller holds c.mu.
func (c *conn) recordLocked(in []record.Inflight) *record.Session {
	s := c.sess
	rec := &record.Session{ClientID: c.clientID, ExpiryInterval: c.expiry,
		ConnectedTo: c.holder(), Edge: c.s.leaseName(), Will: c.storeWill,
		Delivered: message.Position{Epoch: c.epoch, Seq: c.cursorLocked()}}
	if len(s.subs) > 0 {
		rec.Subscriptions = make(map[string]record.Subscription, len(s.subs))
		for f, sub := range s.subs {
			o := sub.sub.Options()
			rec.Subscriptions[f] = record.Subscription{QoS: o.QoS, NoLocal: o.NoLocal,
				RetainAsPublished: o.RetainAsPublished, RetainHandling: sub.retainHandling, ID: o.ID}
		}
	}
	for f, o := range s.restoring {
		if _, restored := s.subs[f]; !restored {
			if rec.Subscriptions == nil {
				rec.Subscriptions = make(map[string]record.Subscription, len(s.restoring))
			}
			rec.Subscriptions[f] = o
		}
	}
	for id, o := range s.outbound {
		switch {
		case o.released:
			rec.Inflight = append(rec.Inflight, record.Inflight{PacketID: id, Phase: record.AwaitPubcomp, Seq: o.seq})
		case o.d.track && o.seq > 0:
			ph := record.AwaitPuback
			if o.d.qos == 2 {
				ph = record.AwaitPubrec
			}
			rec.Inflight = append(rec.Inflight, record.Inflight{PacketID: id, Phase: ph, Seq: o.seq})
		}
	}
	rec.Inflight = append(rec.Inflight, in...)
	s.pruneCompleted(rec.Delivered.Seq)
	for _, seq := range s.completed {
		rec.Inflight = append(rec.Inflight, record.Inflight{Phase: record.Completed, Seq: seq})
	}
	return rec
}

// cursorLocked is the stream sequence below which the session owes its
// client nothing (see the top of this file).
func (c *conn) cursorLocked() uint64 {
	cur := c.hi
	if c.floored {
		cur = min(cur, c.floor)
	}
	if c.replaying {
		cur = min(cur, c.replayFrom)
	}
	lower := func(seq uint64) {
		if seq > 0 && seq-1 < cur {
			cur = seq - 1
		}
	}
	for i := c.head; i < len(c.queue); i++ {
		if d := &c.queue[i]; d.track && d.m != nil {
			lower(d.m.Seq)
		}
	}
	if c.feed != nil {
		// The live messages the feed holds (queued, or held while a
		// subscription starts) have not been sent.
		if seq, ok := c.feed.Oldest(); ok {
			lower(seq)
		}
	}
	for _, o := range c.sess.outbound {
		if o.d.track && !o.released {
			lower(o.seq)
		}
	}
	return cur
}

// saveSession writes the connection's session record, connected. A record changed by someone else (ErrConflict) means the
// session is no longer this connection's: it is closed.
func (c *conn) saveSession(ctx context.Context) error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	if !c.keeps() {
		return nil
	}
	now := time.Now()
	changes := c.changes.Load()
	rec := c.record()
	if err := c.writeLocked(ctx, rec, now); err != nil {
		return err
	}
	c.savedChanges = changes
	return nil
}

// saveExchanges saves the session before the writer sends a new QoS 2
// PUBLISH or a PUBREL (see the top of this file). A failure is logged at
// most once every exchangeWarnEvery per connection: with the store down
// it would otherwise be logged for every batch.
func (c *conn) saveExchanges() {
	err := c.saveSession(c.base)
	if err == nil || errors.Is(err, record.ErrConflict) {
		return
	}
	if now := time.Now(); now.Sub(c.exchangeWarned) >= exchangeWarnEvery {
		c.exchangeWarned = now
		c.s.log.Warn("mqtt session not saved before a QoS 2 exchange: an edge crash now could repeat it",
			"client", c.clientID, "err", err)
	}
}

// exchangeWarnEvery spaces the warnings of saveExchanges.
const exchangeWarnEvery = 10 * time.Second

// writeLocked saves rec over c.rec; the caller holds saveMu.
func (c *conn) writeLocked(ctx context.Context, rec *record.Session, now time.Time) error {
	rec.Revision = c.rec.Revision
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := c.s.sessions.SaveSession(sctx, c.tenant, rec); err != nil {
		if errors.Is(err, record.ErrConflict) {
			c.recLost = true
			c.disconnect(errSessionLost)
		}
		return err
	}
	c.rec, c.lastSave = rec, now
	return nil
}

// saveDue saves the session if its cursor or in-flight state moved since
// the last save: liveness is the edge lease's business.
func (c *conn) saveDue(ctx context.Context, now time.Time) {
	c.saveMu.Lock()
	changes := c.changes.Load()
	if !c.keeps() || c.ended || changes == c.savedChanges {
		c.saveMu.Unlock()
		return
	}
	rec := c.record()
	err := c.writeLocked(ctx, rec, now)
	if err == nil {
		c.savedChanges = changes
	}
	c.saveMu.Unlock()
	if err != nil && !errors.Is(err, record.ErrConflict) {
		c.s.log.Warn("mqtt session not saved", "client", c.clientID, "err", err)
	}
}

// endSession settles the session when the connection ends: it publishes
// the will if it is due at once, and saves the session disconnected (with
// the will, if its delay is still running: the session service fires it) or
// deletes a record that need not outlive the connection. normal is true
// after a DISCONNECT that discards the will.
func (c *conn) endSession(ctx context.Context, normal bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.ended = true
	now := time.Now()
	fire := c.will != nil && !normal && (c.expiry == 0 || c.willDelay == 0)
	if c.recLost {
		// The session moved on without this connection: its will is
		// the newer connection's business... unless it has to go now.
		fire = fire && c.expiry == 0
	}
	if fire {
		c.publishWill(ctx, now)
	}
	if !c.keeps() {
		return
	}
	if c.expiry == 0 {
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		defer cancel()
		if err := c.s.sessions.DeleteSession(sctx, c.tenant, c.clientID, c.rec.Revision); err != nil && !errors.Is(err, record.ErrConflict) {
			c.s.log.Warn("mqtt session record not deleted", "client", c.clientID, "err", err)
		}
		return
	}
	rec := c.record()
	rec.ConnectedTo, rec.Edge, rec.DisconnectedAt = "", "", now
	if normal || fire {
		rec.Will = nil
	}
	if err := c.writeLocked(ctx, rec, now); err != nil && !errors.Is(err, record.ErrConflict) {
		c.s.log.Warn("mqtt session not saved", "client", c.clientID, "err", err)
	}
}

// publishWill publishes the connection's will now, under the id the
// session service would use for this disconnect (record.WillMsgID).
func (c *conn) publishWill(ctx context.Context, now time.Time) {
	w := c.willAccepted.Message()
	if c.willTTL > 0 {
		w.ExpiresAt = now.Add(c.willTTL)
	}
	id := record.WillMsgID(c.tenant, &record.Session{ClientID: c.clientID, DisconnectedAt: now})
	if _, err := c.willAccepted.Publish(ctx, node.PublishOptions{MsgID: id, Wait: node.WaitStored}); err != nil {
		c.s.log.Warn("mqtt will not published", "client", c.clientID, "topic", w.Topic, "err", err)
	}
}

// resume restores a loaded session on the reader goroutine, after the
// CONNACK was queued: its subscriptions in the connection's feed first
// (live messages held), then the PUBRELs owed, then the replay of what it
// missed from the stream (node.Feed.Resume, which then releases the held
// live messages beyond the replay).
func (c *conn) resume(ctx context.Context, rec *record.Session) error {
	c.mu.Lock()
	// Until the replay is queued, nothing after the loaded position is
	// delivered, whatever live messages are held: a connection that ends
	// mid-replay saves at most that position. Left set on an error return.
	c.replaying, c.replayFrom = true, rec.Delivered.Seq
	c.mu.Unlock()
	revoked := 0
	for f, o := range rec.Subscriptions {
		group, filter, err := parseShared(f)
		if err != nil {
			continue
		}
		feed, err := c.ensureFeed(ctx)
		if err != nil {
			return fmt.Errorf("%w: restoring subscription %q: %w", ErrServerUnavailable, f, err)
		}
		// Re-authorized as a SUBSCRIBE of this credential would be: the
		// key may have been narrowed since the session was saved, or the
		// client id reused by another key of the tenant. A refused filter
		// is left out, with its offline messages, and the record saved
		// without it (c.changes, below); MQTT has no packet to tell the
		// client, which may SUBSCRIBE again and get 0x87.
		sub, err := feed.Subscribe(ctx, []string{filter}, node.Live(), node.SubOptions{Key: f, Group: group,
			QoS: min(o.QoS, 2), NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished, ID: o.ID})
		switch {
		case fault.Is(err, fault.Forbidden):
			revoked++
			c.s.log.Info("mqtt session subscription dropped on resume: no longer authorized", "client", c.clientID,
				"tenant", c.tenant, "filter", f, "err", err)
			continue
		case fault.Is(err, fault.InvalidFilter), fault.Is(err, fault.Quota):
			c.s.log.Info("mqtt session subscription dropped on resume", "client", c.clientID,
				"tenant", c.tenant, "filter", f, "err", err)
			continue
		case err != nil:
			return fmt.Errorf("%w: restoring subscription %q: %w", ErrServerUnavailable, f, err)
		}
		c.mu.Lock()
		if c.sess.subs == nil {
			c.sess.subs = map[string]*subscription{}
		}
		c.sess.subs[f] = &subscription{sub: sub, retainHandling: o.RetainHandling}
		c.mu.Unlock()
	}

	c.mu.Lock()
	_, pubrels := c.sess.retransmissions()
	for _, id := range pubrels {
		c.control = append(c.control, c.ackBytes(packets.Pubrel, id, nil))
	}
	// The replay sends again, with DUP and their identifier, the messages
	// in flight, and skips the QoS 2 messages the client already took:
	// released (PUBREL only) and completed ones.
	pending := map[uint64]*outbound{}
	took := map[uint64]bool{}
	for _, o := range c.sess.outbound {
		if o.released {
			took[o.seq] = true
		} else {
			pending[o.seq] = o
		}
	}
	for _, seq := range c.sess.completed {
		took[seq] = true
	}
	feed := c.feed
	c.kickLocked()
	c.mu.Unlock()

	// At most MaxOfflineMessages, the newest: a ring.
	limit := c.cfg.MaxOfflineMessages
	var ring []delivery
	skipped := 0
	emit := func(it node.Item) error {
		if it.Gap() {
			c.s.log.Warn("mqtt session missed messages no longer in the stream", "client", c.clientID,
				"after", rec.Delivered.String(), "stream_recreated", it.EpochChanged)
			return nil
		}
		if took[it.Msg.Seq] {
			return nil
		}
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return errClosing
		}
		d, ok := c.routeReplayLocked(it, pending[it.Msg.Seq])
		c.mu.Unlock()
		if !ok {
			return nil
		}
		if len(ring) == limit {
			copy(ring, ring[1:])
			ring = ring[:limit-1]
			skipped++
		}
		ring = append(ring, d)
		return nil
	}
	var res node.Replayed
	if feed != nil {
		var err error
		res, err = feed.Resume(ctx, rec.Delivered, emit)
		if errors.Is(err, errClosing) {
			return err
		}
		if err != nil {
			return fmt.Errorf("%w: replaying the session's messages: %w", ErrServerUnavailable, err)
		}
	}
	if revoked > 0 {
		c.s.stats.unauthorizedDropped.Add(uint64(revoked))
	}
	if skipped > 0 {
		c.s.stats.offlineDropped.Add(uint64(skipped))
		c.s.log.Warn("mqtt offline messages beyond max_offline_messages skipped, oldest first", "client", c.clientID,
			"skipped", skipped, "sent", len(ring))
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	// Placeholders whose message did not come back (expired, trimmed)
	// free their identifier.
	for id, o := range c.sess.outbound {
		if !o.released && o.d.m == nil {
			delete(c.sess.outbound, id)
		}
	}
	c.queue = append(c.queue, ring...)
	c.replaying = false // the replayed messages are queued: they lower the cursor, and live ones follow
	c.sess.restoring = nil
	c.hi = max(c.hi, res.Last)
	if res.Epoch != "" {
		c.epoch = res.Epoch
	}
	c.changes.Add(1)
	c.kickLocked()
	return nil
}

// routeReplayLocked decides how a replayed message is delivered: at the
// highest QoS its matching subscriptions grant (it, from the feed); QoS 0
// not at all (MQTT keeps only QoS 1 and 2 messages for an offline
// session); again with DUP and its old packet identifier if it was in
// flight at the save (o).
func (c *conn) routeReplayLocked(it node.Item, o *outbound) (delivery, bool) {
	d := delivery{m: it.Msg, track: true, qos: it.QoS, retain: it.Retain, ids: it.IDs}
	if o != nil && o.d.m == nil {
		o.d.m = it.Msg
		d.id, d.dup, d.qos = o.d.id, true, o.d.qos
		o.d = d
		return d, true
	}
	return d, d.qos > 0
}

// saveLoop saves the due sessions of the server's connections every
// SessionSaveInterval until Close.
func (s *Server) saveLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SessionSaveInterval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for {
		select {
		case <-s.ctlStop:
			return
		case now := <-t.C:
			s.mu.Lock()
			conns := make([]*conn, 0, len(s.conns))
			for c := range s.conns {
				conns = append(conns, c)
			}
			s.mu.Unlock()
			for _, c := range conns {
				c.saveDue(ctx, now)
			}
		}
	}
}
