package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/store"
)

// sweepSessions deletes the tenant's sessions past their expiry interval
// and publishes the wills they still held (due at the end of the session at
// the latest).
func (s *Service) sweepSessions(ctx context.Context, tenant string, log *slog.Logger) {
	for ctx.Err() == nil {
		gone, err := s.st.ExpireSessions(ctx, tenant, time.Now(), sessionSweepPage)
		if err != nil {
			s.warn(ctx, "expiring sessions failed", err, "tenant", tenant)
			return
		}
		for _, g := range gone {
			log.Info("session expired", "client_id", g.ClientID, "will", g.Will != nil)
			if g.Will != nil {
				// The record is gone: a failed publish is not retried.
				_ = s.publishWill(ctx, tenant, g, log)
			}
		}
		s.stats.sessionsExpired.Add(uint64(len(gone)))
		if len(gone) < sessionSweepPage {
			return
		}
	}
}

// sweepDue acts on the tenant's sessions that are due (see "Wills and
// leases" in the package documentation).
func (s *Service) sweepDue(ctx context.Context, tenant string, log *slog.Logger) {
	for ctx.Err() == nil {
		now := time.Now()
		due, err := s.st.DueSessions(ctx, tenant, now, sessionSweepPage)
		if err != nil {
			s.warn(ctx, "reading due sessions failed", err, "tenant", tenant)
			return
		}
		settled := 0
		for _, d := range due {
			if err := s.settle(ctx, tenant, d, now, log); err != nil && !errors.Is(err, store.ErrConflict) {
				s.warn(ctx, "settling a due session failed", err, "tenant", tenant, "client_id", d.ClientID)
				continue
			}
			settled++
		}
		// A page with failures is retried at the next round, not now.
		if len(due) < sessionSweepPage || settled < len(due) {
			return
		}
	}
}

// edgeLeaseRetention is how long a lapsed edge lease is kept before the
// session service deletes it: long enough for every tenant's sweep to have
// settled the edge's sessions. A session that still names an edge without
// a lease after that is taken as disconnected when found.
const edgeLeaseRetention = 24 * time.Hour

// sweepEdges settles the tenant's connected sessions whose edge's lease
// lapsed (see "Wills and leases" in the package documentation): each is
// disconnected at the lease's end, its will fires after its delay and its
// expiry starts. Sessions of a live edge cost nothing here.
func (s *Service) sweepEdges(ctx context.Context, tenant string, log *slog.Logger) {
	edges, err := s.st.SessionEdges(ctx, tenant)
	if err != nil {
		s.warn(ctx, "reading session edges failed", err, "tenant", tenant)
		return
	}
	if len(edges) == 0 {
		return
	}
	leases, err := s.st.EdgeLeases(ctx)
	if err != nil {
		s.warn(ctx, "reading edge leases failed", err, "tenant", tenant)
		return
	}
	now := time.Now()
	for edge, until := range leases {
		if now.Sub(until) > edgeLeaseRetention {
			if err := s.st.DeleteEdgeLease(ctx, edge); err != nil {
				s.warn(ctx, "deleting a lapsed edge lease failed", err, "edge", edge)
			}
		}
	}
	for _, edge := range edges {
		until, known := leases[edge]
		if known && until.After(now) {
			continue
		}
		if !known {
			until = now
		}
		log.Info("edge lease lapsed: the edge is presumed dead and its sessions disconnected",
			"edge", edge, "lease", until)
		s.settleEdge(ctx, tenant, edge, until, now, log)
	}
}

// settleEdge disconnects the tenant's sessions held by edge at lapsed, and
// settles each from there.
func (s *Service) settleEdge(ctx context.Context, tenant, edge string, lapsed, now time.Time, log *slog.Logger) {
	after := ""
	for ctx.Err() == nil {
		page, err := s.st.EdgeSessions(ctx, tenant, edge, after, sessionSweepPage)
		if err != nil {
			s.warn(ctx, "reading an edge's sessions failed", err, "tenant", tenant, "edge", edge)
			return
		}
		for _, sess := range page {
			after = sess.ClientID
			s.stats.leasesLapsed.Add(1)
			sess.DisconnectedAt, sess.ConnectedTo, sess.Edge = lapsed, "", ""
			if err := s.settle(ctx, tenant, sess, now, log); err != nil && !errors.Is(err, store.ErrConflict) {
				// Still listed under the edge: retried at the next round.
				s.warn(ctx, "settling a session of a lapsed edge failed", err, "tenant", tenant, "client_id", sess.ClientID)
			}
		}
		if len(page) < sessionSweepPage {
			return
		}
	}
}

// settle brings one due session up to now: a lapsed lease becomes a
// disconnect at its end; a will due (delay passed, or the session over) is
// published and dropped; an expired session is deleted. Every write is
// conditional on the revision read (store.ErrConflict: the session changed,
// typically a reconnect, and is left alone).
func (s *Service) settle(ctx context.Context, tenant string, sess *store.Session, now time.Time, log *slog.Logger) error {
	if sess.DisconnectedAt.IsZero() {
		if sess.LeaseUntil.IsZero() || sess.LeaseUntil.After(now) {
			return nil // renewed since it was listed
		}
		log.Info("session's connection lease lapsed: its edge is presumed dead",
			"client_id", sess.ClientID, "connection", sess.ConnectedTo, "lease", sess.LeaseUntil)
		s.stats.leasesLapsed.Add(1)
		sess.DisconnectedAt, sess.ConnectedTo, sess.LeaseUntil = sess.LeaseUntil, "", time.Time{}
	}
	exp, expires := sess.ExpiresAt()
	over := expires && !exp.After(now)
	if sess.Will != nil && (over || !sess.DisconnectedAt.Add(sess.Will.Delay).After(now)) {
		if err := s.publishWill(ctx, tenant, sess, log); err != nil {
			return err
		}
		sess.Will = nil
	}
	if over {
		if err := s.st.DeleteSession(ctx, tenant, sess.ClientID, sess.Revision); err != nil {
			return err
		}
		s.stats.sessionsExpired.Add(1)
		return nil
	}
	return s.st.SaveSession(ctx, tenant, sess, s.cfg.limitsFor(tenant))
}

// publishWill publishes the will of sess on the backbone, under its
// deduplicating id.
func (s *Service) publishWill(ctx context.Context, tenant string, sess *store.Session, log *slog.Logger) error {
	m := sess.Will.Message(tenant, time.Now())
	if _, err := s.bb.Publish(ctx, m, backbone.PublishOptions{MsgID: store.WillMsgID(tenant, sess)}); err != nil {
		s.stats.willsFailed.Add(1)
		return fmt.Errorf("publish will: %w", err)
	}
	s.stats.willsPublished.Add(1)
	log.Info("will published", "client_id", sess.ClientID, "topic", m.Topic)
	return nil
}
