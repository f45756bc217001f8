package mqtt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// The edge lease.
//
// Persistent sessions held by this edge count as connected while one lease
// lives: the edge incarnation's (store.EdgeLeaseStore), named
// "<edge id>~<random>" so that a restarted edge, which has lost its
// connections, never vouches for the sessions of the one before it. Each
// record names it (record.Session.Edge). The edge renews the lease every
// third of SessionLease on a goroutine of its own, so liveness costs one
// store write per edge per renewal whatever the number of connections,
// and a record is written only when its session's state moved. When the
// edge dies the lease lapses, and the session service treats every session
// naming it as disconnected at the lease's end (will after its delay,
// expiry). An edge that failed to renew past its lease finds its sessions
// taken away: their next save conflicts and the connections are closed.
//
// The store holds the lease rather than NATS key-value: the session service
// reads it beside the session records it settles, and an edge with a
// session store needs nothing more.

// edgeLease is the lease of this edge incarnation. The zero value is ready;
// the name is drawn on first use.
type edgeLease struct {
	once  sync.Once
	name  string
	start sync.Once

	mu      sync.Mutex
	renewed time.Time // when the last renewal was written (zero: never)
}

// leaseName returns the name of the edge incarnation's lease.
func (s *Server) leaseName() string {
	s.lease.once.Do(func() {
		var b [6]byte
		_, _ = rand.Read(b[:])
		s.lease.name = s.node.EdgeID() + "~" + hex.EncodeToString(b[:])
	})
	return s.lease.name
}

// ensureLease makes sure the edge lease lives before a session record
// names it: the first call writes it and starts the renewals; later ones
// renew it only if it is due (a failing renewal loop).
func (s *Server) ensureLease(ctx context.Context) error {
	if err := s.renewLease(ctx, time.Now(), false); err != nil {
		return err
	}
	s.lease.start.Do(func() {
		// The caller is a connection goroutine, counted in wg: Close
		// cannot be waiting on a zero count.
		s.wg.Add(1)
		go s.leaseLoop()
	})
	return nil
}

// renewLease writes the lease, SessionLease ahead, if forced or if a third
// of it has passed since the last renewal.
func (s *Server) renewLease(ctx context.Context, now time.Time, force bool) error {
	if s.sessions == nil {
		return nil
	}
	s.lease.mu.Lock()
	defer s.lease.mu.Unlock()
	if !force && !s.lease.renewed.IsZero() && now.Sub(s.lease.renewed) < s.cfg.SessionLease/3 {
		return nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := s.sessions.RenewEdgeLease(sctx, s.leaseName(), now.Add(s.cfg.SessionLease)); err != nil {
		return err
	}
	s.lease.renewed = now
	return nil
}

// leaseLoop renews the edge lease until Close. It checks every
// SessionSaveInterval (at most a third of the lease), so that a failed
// renewal is retried well before the lease runs out.
func (s *Server) leaseLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SessionSaveInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctlStop:
			return
		case now := <-t.C:
			if err := s.renewLease(context.Background(), now, false); err != nil {
				s.log.Warn("mqtt edge lease not renewed", "lease", s.leaseName(), "err", err)
			}
		}
	}
}
