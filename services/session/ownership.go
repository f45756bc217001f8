package session

import (
	"context"
	"errors"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
)

// reconcile is one round of ownership: heartbeat, list replicas and
// tenants, renew or release what is held, take what this replica should
// hold.
func (s *Service) reconcile(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.LeaseTTL/2)
	defer cancel()
	s.reap(rctx)
	if err := s.leases.heartbeat(rctx); err != nil {
		s.warn(ctx, "lease heartbeat failed", err)
		s.expire()
		return
	}
	replicas, err := s.leases.live(rctx)
	if err != nil {
		s.warn(ctx, "listing replicas failed", err)
		s.expire()
		return
	}
	tenants, err := s.bb.Tenants(rctx)
	if err != nil {
		s.warn(ctx, "listing tenants failed", err)
		s.expire()
		return
	}
	s.ready.Store(true)
	exists := make(map[string]bool, len(tenants))
	for _, t := range tenants {
		exists[t] = true
	}

	s.mu.Lock()
	owned := maps(s.owned)
	s.mu.Unlock()
	for t, w := range owned {
		if !exists[t] || owner(t, replicas) != s.cfg.ReplicaID {
			s.drop(rctx, t, w, "released", !exists[t])
			continue
		}
		rev, err := s.leases.renew(rctx, t, w.rev)
		if err == nil {
			s.mu.Lock()
			w.rev, w.renewed = rev, time.Now()
			s.mu.Unlock()
			continue
		}
		if errors.Is(err, backbone.ErrRevision) || errors.Is(err, backbone.ErrKeyNotFound) {
			s.stats.lost.Add(1)
			s.drop(rctx, t, w, "lost", false)
			continue
		}
		s.warn(ctx, "renewing a lease failed", err, "tenant", t)
	}
	s.expire()

	for _, t := range tenants {
		if _, ok := owned[t]; ok || owner(t, replicas) != s.cfg.ReplicaID || ctx.Err() != nil {
			continue
		}
		rev, err := s.leases.acquire(rctx, t)
		if err != nil {
			s.warn(ctx, "taking a lease failed", err, "tenant", t)
			continue
		}
		if rev == 0 {
			continue // still held by its previous owner: it releases it or it expires
		}
		s.start(ctx, t, rev)
	}
}

// start runs the worker of a tenant whose lease was just taken.
func (s *Service) start(ctx context.Context, tenant string, rev uint64) {
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{rev: rev, renewed: time.Now(), cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	s.owned[tenant] = w
	s.mu.Unlock()
	s.stats.acquired.Add(1)
	s.log.Info("took tenant", "tenant", tenant, "lease", rev)
	go func() {
		defer close(w.done)
		s.runTenant(wctx, tenant)
	}()
}

// drop stops a tenant's worker and, unless the lease is lost already,
// releases it.
func (s *Service) drop(ctx context.Context, tenant string, w *worker, why string, gone bool) {
	w.stop()
	s.tel.Released(tenant)
	s.mu.Lock()
	if s.owned[tenant] == w {
		delete(s.owned, tenant)
	}
	s.mu.Unlock()
	if why == "lost" {
		s.log.Warn("lost tenant lease", "tenant", tenant)
		return
	}
	if err := s.leases.release(ctx, tenant, w.rev); err != nil {
		s.warn(ctx, "releasing a lease failed", err, "tenant", tenant)
	}
	s.stats.released.Add(1)
	s.log.Info("released tenant", "tenant", tenant, "stream_gone", gone)
}

// reap releases the tenants whose worker ended by itself (fenced out, or
// its stream went away).
func (s *Service) reap(ctx context.Context) {
	s.mu.Lock()
	owned := maps(s.owned)
	s.mu.Unlock()
	for t, w := range owned {
		select {
		case <-w.done:
			s.drop(ctx, t, w, "released", false)
		default:
		}
	}
}

// expire stops the workers whose lease was not renewed for a LeaseTTL:
// another replica may hold it by now (fencing covers the moment between).
func (s *Service) expire() {
	s.mu.Lock()
	var stale []string
	for t, w := range s.owned {
		if time.Since(w.renewed) >= s.cfg.LeaseTTL {
			stale = append(stale, t)
		}
	}
	s.mu.Unlock()
	for _, t := range stale {
		s.mu.Lock()
		w := s.owned[t]
		delete(s.owned, t)
		s.mu.Unlock()
		if w != nil {
			s.stats.lost.Add(1)
			s.log.Warn("tenant lease not renewed in time; stopping", "tenant", t)
			w.stop()
		}
	}
}

func maps(m map[string]*worker) map[string]*worker {
	out := make(map[string]*worker, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
