// Package session is Herald's session service: the single writer of the
// state derived from tenant streams (retained messages and replay buffers,
// see package store), and the owner of the timers that do not belong to any
// edge (session expiry; will delay comes with the MQTT session work).
//
// For every tenant stream it owns it runs one goroutine that reads the
// stream in order through a durable pull consumer and hands each batch to
// store.ApplyBatch, then acknowledges the batch. Because one goroutine of
// one replica consumes a tenant in stream order, per-topic order holds in
// the store.
//
// # Exactly-once effect
//
// Delivery from JetStream is at least once, so the effect is made exactly
// once on the store's side:
//   - a batch is acknowledged only after the store applied it; a crash
//     before the ack redelivers it, and a failed write is retried with
//     backoff, never acknowledged;
//   - applying is atomic and idempotent by sequence: it skips every message
//     at or below the store's Applied checkpoint, so a redelivered (or
//     overlapping) batch changes nothing twice;
//   - the store's checkpoint, not the consumer's, decides where reading
//     starts: when a tenant's consumer has delivered past Applied (messages a
//     crashed process fetched but never applied, which JetStream would only
//     redeliver after AckWait, behind newer ones), the consumer is recreated
//     at Applied+1. Without that, a newer batch could move Applied past them
//     and they would be skipped as already applied. The same rule rebuilds a
//     lost store (Applied 0) from the stream.
//   - an epoch change (a recreated stream) is passed to the store, which
//     clears the tenant's derived state first: sequences of different
//     streams are never compared.
//
// # Scale-out: one owner per tenant
//
// Replicas share the tenants through leases in a NATS JetStream key-value
// bucket (see leases): each replica heartbeats, computes each tenant's
// desired owner by rendezvous hashing over the live replicas, takes the
// leases it should hold and releases those it should not. A tenant is
// consumed by the replica holding its lease, and only while it holds it.
// A replica that dies loses its leases one LeaseTTL later and the others
// take its tenants; a replica that joins gets its share as the others
// release them (within a PollInterval). The new owner resumes from the
// store's Applied, so an overlap during a handover only re-applies what
// idempotence skips.
//
// Leases alone cannot stop a paused or partitioned replica that has not
// noticed its lease expired. Writes are therefore fenced: on taking a lease
// the new owner obtains a fence token from the store (store.Fence, a
// per-tenant counter), and every ApplyBatch carries it; the store refuses a
// batch whose token is older than the newest it issued (store.ErrFenced,
// checked inside the same Lua script or bbolt transaction as the write), so
// a stale owner cannot write after the new owner took over.
//
// # Recovery
//
// The stream is the source of truth. Each writer passes the Applied it last
// saw (Batch.Expect); a store that holds less lost data (a FLUSHALL, a
// restart without persistence, a failover to a lagging replica) and refuses
// the batch with store.ErrStateLost. The service logs it, counts it
// (Stats.StoreLosses) and rebuilds the tenant from its stream. Idle tenants
// are checked every PollInterval.
//
// # Wills and leases
//
// A persistent MQTT session's record says whether it is connected: an edge
// holding it names itself (Session.Edge, an edge incarnation) and renews
// one edge lease for all its sessions (store.EdgeLeaseStore), so a live
// edge's idle connections write nothing. Every DueInterval the owner of a
// tenant lists the edges its connected sessions name; those whose lease
// lapsed (or that have none) are presumed dead, and each of their sessions
// becomes disconnected at the lease's end. From there, like every
// disconnected session (DueSessions): the will is published once its delay
// has passed or the session is over, and the session expires after its
// expiry interval. Records with a lease of their own (Session.LeaseUntil)
// lapse the same way through DueSessions. Every write is conditional on the
// revision read, so a session that reconnected meanwhile is left alone.
package session

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/nats-io/nats.go/jetstream"
)

// Config configures the session service.
type Config struct {
	// PollInterval is how often the backbone is asked for new tenants, leases
	// are renewed and rebalanced, and an idle tenant's consumer, epoch and
	// store are checked; default 2s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// BatchSize is the most messages fetched and applied at once; default 256.
	BatchSize int `yaml:"batch_size"`
	// FetchWait is how long an idle tenant's fetch waits for a message before
	// trying again; default 1s. It bounds how long a stop takes.
	FetchWait time.Duration `yaml:"fetch_wait"`
	// ApplyInterval is the least time between two store writes of one
	// tenant while its stream has less than a batch waiting; default 20ms.
	// Messages arriving meanwhile wait in the stream and go into the next
	// batch, so a busy tenant costs one store commit (an fsync on the
	// embedded store) per interval instead of one per handful of messages.
	// Readers never wait for it: retained and replay reads fold in the
	// stream tail the store has not applied yet. A full batch is applied at
	// once, so the interval never limits throughput.
	ApplyInterval time.Duration `yaml:"apply_interval"`
	// Durable names the consumer on every tenant stream; default
	// "herald-session". The lease bucket is "<durable>-leases": replicas
	// with the same durable share the tenants.
	Durable string `yaml:"durable"`
	// ReplicaID names this replica in the lease bucket; default the host
	// name. It must be unique among live replicas and should be stable
	// across restarts: a restarted replica takes over its own leases at once
	// instead of waiting for them to expire.
	ReplicaID string `yaml:"replica_id"`
	// LeaseTTL is how long a tenant stays with a replica that stopped
	// renewing (died); default 10s, at least 3 PollIntervals.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// LeaseReplicas is the replication factor of the lease bucket; default 1
	// (use 3 on a NATS cluster).
	LeaseReplicas int `yaml:"lease_replicas"`
	// SweepInterval is how often expired sessions are deleted, expired
	// retained messages swept and idle replay buffers trimmed by age;
	// default 30s.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// DueInterval is how often the sessions whose connection lease ran out
	// or whose will is due are looked for: it bounds how late a will fires;
	// default 1s.
	DueInterval time.Duration `yaml:"due_interval"`
	// Limits bound every tenant (defaults: see store.Limits).
	Limits store.Limits `yaml:"limits"`
	// TenantLimits override Limits per tenant; zero fields inherit Limits.
	TenantLimits map[string]store.Limits `yaml:"tenant_limits"`
	// Telemetry records the service's metrics and "session.apply" spans;
	// the zero value records nothing.
	Telemetry telemetry.Providers `yaml:"-"`
}

// Defaults of Config.
const (
	DefaultPollInterval  = 2 * time.Second
	DefaultBatchSize     = 256
	DefaultFetchWait     = time.Second
	DefaultApplyInterval = 20 * time.Millisecond
	DefaultDurable       = "herald-session"
	DefaultLeaseTTL      = 10 * time.Second
	DefaultSweepInterval = 30 * time.Second
	DefaultDueInterval   = time.Second
)

// Fixed consumer and retry settings.
const (
	// ackWait is how long JetStream waits for an ack before redelivering.
	ackWait = 30 * time.Second
	// retryMin and retryMax bound the backoff between failed attempts.
	retryMin, retryMax = 100 * time.Millisecond, 5 * time.Second
	// sessionSweepPage is how many expired sessions one store call deletes.
	sessionSweepPage = 100
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FetchWait == 0 {
		c.FetchWait = DefaultFetchWait
	}
	if c.ApplyInterval == 0 {
		c.ApplyInterval = DefaultApplyInterval
	}
	if c.Durable == "" {
		c.Durable = DefaultDurable
	}
	if c.ReplicaID == "" {
		c.ReplicaID = defaultReplicaID()
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = max(DefaultLeaseTTL, 3*c.PollInterval)
	}
	if c.LeaseReplicas == 0 {
		c.LeaseReplicas = 1
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.DueInterval == 0 {
		c.DueInterval = DefaultDueInterval
	}
	c.Limits = c.Limits.WithDefaults()
	return c
}

// defaultReplicaID is the host name, reduced to the lease key alphabet.
func defaultReplicaID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "session"
	}
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b[:min(len(b), 64)])
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.PollInterval < 0:
		return errors.New("session: poll_interval must be positive")
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return fmt.Errorf("session: batch_size must be 1..10000, got %d", c.BatchSize)
	case c.FetchWait < 10*time.Millisecond || c.FetchWait > time.Minute:
		return fmt.Errorf("session: fetch_wait must be 10ms..1m, got %s", c.FetchWait)
	case c.ApplyInterval < 0 || c.ApplyInterval > time.Second:
		return fmt.Errorf("session: apply_interval must be 0..1s, got %s", c.ApplyInterval)
	case !nameRE.MatchString(c.Durable):
		return fmt.Errorf("session: durable %q must be 1..64 of [A-Za-z0-9_-]", c.Durable)
	case !nameRE.MatchString(c.ReplicaID):
		return fmt.Errorf("session: replica_id %q must be 1..64 of [A-Za-z0-9_-]", c.ReplicaID)
	case c.LeaseTTL < 3*c.PollInterval:
		return fmt.Errorf("session: lease_ttl %s must be at least 3 poll intervals (%s)", c.LeaseTTL, 3*c.PollInterval)
	case c.LeaseReplicas < 1 || c.LeaseReplicas > 5:
		return fmt.Errorf("session: lease_replicas must be 1..5, got %d", c.LeaseReplicas)
	case c.SweepInterval < 0:
		return errors.New("session: sweep_interval must be positive")
	case c.DueInterval < 0:
		return errors.New("session: due_interval must be positive")
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("session: limits: %w", err)
	}
	for t, l := range c.TenantLimits {
		if err := l.Validate(); err != nil {
			return fmt.Errorf("session: tenant_limits %s: %w", t, err)
		}
	}
	return nil
}

// limitsFor returns the effective limits of a tenant.
func (c Config) limitsFor(tenant string) store.Limits {
	return c.TenantLimits[tenant].Or(c.Limits).WithDefaults()
}

// Stats are the service's counters since it started.
type Stats struct {
	// Messages counts messages newly applied (not skipped as already applied).
	Messages uint64
	// StoreLosses counts detected losses of a tenant's stored state, each
	// followed by a rebuild from the stream.
	StoreLosses uint64
	// RetainedDropped counts retained messages refused by a tenant's limits.
	RetainedDropped uint64
	// RetainedExpired counts expired retained messages swept.
	RetainedExpired uint64
	// SessionsExpired counts sessions deleted past their expiry interval.
	SessionsExpired uint64
	// LeasesLapsed counts connected sessions whose connection lease ran
	// out (their edge died or lost the store), taken as disconnected.
	LeasesLapsed uint64
	// WillsPublished counts wills published by the service; WillsFailed
	// those whose publish failed (retried at the next round).
	WillsPublished, WillsFailed uint64
	// Fenced counts writes refused because a newer owner took the tenant.
	Fenced uint64
	// LeasesAcquired, LeasesReleased and LeasesLost count tenant ownership
	// changes: taken, given up (rebalance, stream gone, stop) and lost
	// (expired or taken while held).
	LeasesAcquired, LeasesReleased, LeasesLost uint64
}

type counters struct {
	messages, storeLosses, retainedDropped, retainedExpired, sessionsExpired, fenced atomic.Uint64
	acquired, released, lost                                                         atomic.Uint64
	leasesLapsed, willsPublished, willsFailed                                        atomic.Uint64
}

// Service consumes the tenant streams it owns into a store.
type Service struct {
	cfg    Config
	bb     *backbone.Backbone
	st     store.Store
	log    *slog.Logger
	leases *leases
	stats  counters
	tel    *telemetry.Session

	started atomic.Bool
	ready   atomic.Bool

	mu    sync.Mutex
	owned map[string]*worker // tenants whose lease this replica holds
}

// worker is one owned tenant: its lease revision and consumer goroutine.
type worker struct {
	rev     uint64 // lease revision
	renewed time.Time
	cancel  context.CancelFunc
	done    chan struct{}
}

// stop cancels the worker and waits for its goroutine.
func (w *worker) stop() {
	w.cancel()
	<-w.done
}

// errEpochChanged ends a tenant's consumption when its stream was recreated.
var errEpochChanged = errors.New("session: stream epoch changed")

// New returns a service; Run starts it. The backbone and the store remain
// the caller's.
func New(cfg Config, bb *backbone.Backbone, st store.Store, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bb == nil || st == nil {
		return nil, errors.New("session: backbone and store are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	s := &Service{
		cfg: cfg, bb: bb, st: st, log: log.With("replica", cfg.ReplicaID),
		leases: newLeases(bb.JetStream(), cfg.Durable+"-leases", cfg.LeaseTTL, cfg.LeaseReplicas, cfg.ReplicaID),
		owned:  map[string]*worker{},
	}
	s.tel = s.instrument()
	return s, nil
}

// Ready reports whether the service has listed the backbone's tenants at
// least once and is running.
func (s *Service) Ready() bool { return s.ready.Load() }

// Stats returns the counters.
func (s *Service) Stats() Stats {
	c := &s.stats
	return Stats{
		Messages: c.messages.Load(), StoreLosses: c.storeLosses.Load(), RetainedDropped: c.retainedDropped.Load(),
		RetainedExpired: c.retainedExpired.Load(), SessionsExpired: c.sessionsExpired.Load(), Fenced: c.fenced.Load(),
		LeasesAcquired: c.acquired.Load(), LeasesReleased: c.released.Load(), LeasesLost: c.lost.Load(),
		LeasesLapsed: c.leasesLapsed.Load(), WillsPublished: c.willsPublished.Load(), WillsFailed: c.willsFailed.Load(),
	}
}

// Owned returns the tenants this replica holds, sorted.
func (s *Service) Owned() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.owned))
	for t := range s.owned {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Run consumes the tenants this replica owns until ctx is done, rebalancing
// every PollInterval. On return every goroutine it started has stopped and
// its leases are released. It may be called once.
func (s *Service) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("session: Run called twice")
	}
	defer s.shutdown()
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	for {
		s.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// shutdown stops every worker and hands its tenant over at once: releasing
// the leases and the heartbeat spares the others a LeaseTTL of waiting.
func (s *Service) shutdown() {
	s.ready.Store(false)
	s.mu.Lock()
	owned := s.owned
	s.owned = map[string]*worker{}
	s.mu.Unlock()
	for _, w := range owned {
		w.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for t, w := range owned {
		<-w.done
		if err := s.leases.release(ctx, t, w.rev); err == nil {
			s.stats.released.Add(1)
		}
	}
	_ = s.leases.leave(ctx)
}

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
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
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

func (s *Service) warn(ctx context.Context, msg string, err error, args ...any) {
	if ctx.Err() == nil {
		s.log.Warn(msg, append(args, "err", err)...)
	}
}

func maps(m map[string]*worker) map[string]*worker {
	out := make(map[string]*worker, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// runTenant consumes one owned tenant until ctx is done (the lease was
// released or lost), its stream is gone, or a newer owner fenced it out.
func (s *Service) runTenant(ctx context.Context, tenant string) {
	log := s.log.With("tenant", tenant)
	fence, err := s.fence(ctx, tenant)
	if err != nil {
		return
	}
	b := backoff{}
	for {
		err := s.consume(ctx, tenant, fence, log, &b)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, backbone.ErrNoStream):
			log.Info("tenant stream gone; stopping")
			return
		case errors.Is(err, store.ErrFenced):
			s.stats.fenced.Add(1)
			log.Warn("a newer owner fenced this replica out of the tenant; stopping")
			return
		case errors.Is(err, errEpochChanged):
			log.Info("tenant stream recreated; restarting from its start")
			continue
		case errors.Is(err, store.ErrStateLost):
			continue // rebuild at once
		}
		log.Warn("consuming tenant failed; retrying", "err", err)
		if !sleep(ctx, b.next()) {
			return
		}
	}
}

// fence obtains the tenant's fence token, retrying until ctx is done.
func (s *Service) fence(ctx context.Context, tenant string) (uint64, error) {
	b := backoff{}
	for {
		f, err := s.st.Fence(ctx, tenant)
		if err == nil {
			return f, nil
		}
		s.warn(ctx, "obtaining a fence token failed; retrying", err, "tenant", tenant)
		if !sleep(ctx, b.next()) {
			return 0, ctx.Err()
		}
	}
}

// consume sets up the tenant's consumer and applies batches until an error.
func (s *Service) consume(ctx context.Context, tenant string, fence uint64, log *slog.Logger, b *backoff) error {
	ss, err := s.bb.State(ctx, tenant)
	if err != nil {
		return err
	}
	cons, applied, err := s.consumer(ctx, tenant, ss.Epoch, log)
	if err != nil {
		return err
	}
	// Deleting a stream deletes its consumers: if the epoch is unchanged
	// now, the consumer reads the stream of that epoch.
	if err := s.checkEpoch(ctx, tenant, ss.Epoch); err != nil {
		return err
	}
	// The first write raises the fence, records the epoch and marks what the
	// stream no longer holds, so that readers see it as trimmed.
	var skip uint64
	if ss.FirstSeq > applied+1 {
		skip = ss.FirstSeq - 1
	}
	w := &tenantWriter{s: s, tenant: tenant, epoch: ss.Epoch, fence: fence, applied: applied, log: log}
	if err := w.apply(ctx, nil, skip); err != nil {
		return err
	}
	lastCheck, lastSweep, lastDue := time.Now(), time.Now(), time.Time{}
	for ctx.Err() == nil {
		if time.Since(lastDue) >= s.cfg.DueInterval {
			lastDue = time.Now()
			s.sweepEdges(ctx, tenant, log)
			s.sweepDue(ctx, tenant, log)
		}
		if time.Since(lastSweep) >= s.cfg.SweepInterval {
			lastSweep = time.Now()
			// Expired sessions go; an empty batch trims an idle buffer by
			// age and sweeps expired retained messages.
			s.sweepSessions(ctx, tenant, log)
			if err := w.apply(ctx, nil, 0); err != nil {
				return err
			}
		}
		jms, err := s.fetch(cons)
		if err != nil {
			return err
		}
		s.observeLag(tenant, jms)
		if len(jms) == 0 {
			if time.Since(lastCheck) < s.cfg.PollInterval {
				continue
			}
			// Idle: make sure the consumer, the stream and the store's state
			// are still there (a fetch on a deleted consumer just times out;
			// a flushed store would otherwise go unnoticed until traffic).
			lastCheck = time.Now()
			if err := s.checkEpoch(ctx, tenant, ss.Epoch); err != nil {
				return err
			}
			if _, err := cons.Info(ctx); err != nil {
				return fmt.Errorf("consumer info: %w", err)
			}
			if err := w.check(ctx); err != nil {
				return err
			}
			continue
		}
		msgs := make([]*message.Message, 0, len(jms))
		// last is the message of the highest stream sequence (a redelivery
		// can arrive among newer messages): the consumer acknowledges
		// cumulatively, so its ack covers the batch.
		var last jetstream.Msg
		var lastSeq uint64
		for _, jm := range jms {
			m, err := s.bb.DecodeStored(tenant, jm)
			var seq uint64
			if err == nil {
				seq = m.Seq
			} else if md, merr := jm.Metadata(); merr == nil {
				seq = md.Sequence.Stream
			}
			if last == nil || seq > lastSeq {
				last, lastSeq = jm, seq
			}
			if err != nil {
				// Not a Herald message: nothing to apply, acknowledged with the batch.
				log.Warn("skipping undecodable message", "subject", jm.Subject(), "err", err)
				continue
			}
			msgs = append(msgs, m)
		}
		// A redelivery (after a lost ack) can arrive among newer messages;
		// the store wants ascending sequences and skips the already applied.
		slices.SortFunc(msgs, func(a, b *message.Message) int { return cmp.Compare(a.Seq, b.Seq) })
		msgs = slices.CompactFunc(msgs, func(a, b *message.Message) bool { return a.Seq == b.Seq })
		applyStart := time.Now()
		if err := w.apply(ctx, msgs, 0); err != nil {
			// Not applied, so not acknowledged: it is redelivered.
			return err
		}
		s.tel.Applied(tenant, msgs, applyStart)
		// A lost ack only means a redelivery that the store skips.
		if last != nil {
			_ = last.Ack()
		}
		b.reset()
		if len(jms) < s.cfg.BatchSize {
			// Less than a batch was waiting: let the next one gather.
			if d := time.Until(applyStart.Add(s.cfg.ApplyInterval)); d > 0 && !sleep(ctx, d) {
				return ctx.Err()
			}
		}
	}
	return ctx.Err()
}

// tenantWriter applies one tenant's batches under a fence, keeping the
// Applied it last saw so that a store that lost data is noticed.
type tenantWriter struct {
	s       *Service
	tenant  string
	epoch   string
	fence   uint64
	applied uint64
	log     *slog.Logger
}

// apply applies msgs, retrying transient failures with backoff until it
// succeeds or ctx is done. It returns store.ErrFenced and
// store.ErrStateLost at once: retrying cannot help.
func (w *tenantWriter) apply(ctx context.Context, msgs []*message.Message, skip uint64) error {
	s := w.s
	batch := store.Batch{Epoch: w.epoch, Messages: msgs, Fence: w.fence, Expect: w.applied, SkipThrough: skip, Limits: s.cfg.limitsFor(w.tenant)}
	b := backoff{}
	for {
		res, err := s.st.ApplyBatch(ctx, w.tenant, batch)
		if err == nil {
			w.done(msgs, res)
			return nil
		}
		if errors.Is(err, store.ErrStateLost) {
			return w.lost(ctx, "store refused a batch")
		}
		if errors.Is(err, store.ErrFenced) || ctx.Err() != nil {
			return err
		}
		w.log.Warn("applying batch failed; retrying", "messages", len(msgs), "err", err)
		if !sleep(ctx, b.next()) {
			return ctx.Err()
		}
	}
}

func (w *tenantWriter) done(msgs []*message.Message, res store.ApplyResult) {
	c := &w.s.stats
	var fresh uint64
	for _, m := range msgs {
		if m.Seq > w.applied {
			fresh++
		}
	}
	c.messages.Add(fresh)
	w.applied = res.Applied
	if res.RetainedDropped > 0 {
		c.retainedDropped.Add(uint64(res.RetainedDropped))
		w.log.Warn("retained messages refused by the tenant's limits", "dropped", res.RetainedDropped)
	}
	c.retainedExpired.Add(uint64(res.RetainedExpired))
	w.s.tel.Retained(w.tenant, res.RetainedMessages, res.RetainedBytes)
}

// check compares the store's state with what this writer applied.
func (w *tenantWriter) check(ctx context.Context) error {
	st, err := w.s.st.State(ctx, w.tenant)
	if err != nil {
		return fmt.Errorf("store state: %w", err)
	}
	if st.Epoch != w.epoch || st.Applied < w.applied {
		return w.lost(ctx, "store state behind")
	}
	return nil
}

// lost reports a loss of stored state and returns store.ErrStateLost, which
// makes the caller rebuild the tenant from its stream. A store that moved to
// another epoch was not lost: the stream was recreated.
func (w *tenantWriter) lost(ctx context.Context, how string) error {
	st, err := w.s.st.State(ctx, w.tenant)
	if err == nil && st.Epoch != "" && st.Epoch != w.epoch {
		return errEpochChanged
	}
	w.s.stats.storeLosses.Add(1)
	w.log.Error("store lost the tenant's state; rebuilding it from the stream",
		"how", how, "applied_before", w.applied, "applied_now", st.Applied, "epoch", w.epoch, "store_epoch", st.Epoch)
	return store.ErrStateLost
}

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

// consumer returns the tenant's durable consumer, positioned so that the next
// message delivered is the first one the store has not applied, and the
// store's Applied for epoch.
func (s *Service) consumer(ctx context.Context, tenant, epoch string, log *slog.Logger) (jetstream.Consumer, uint64, error) {
	js, stream := s.bb.JetStream(), backbone.StreamName(tenant)
	rs, err := s.st.State(ctx, tenant)
	if err != nil {
		return nil, 0, fmt.Errorf("store state: %w", err)
	}
	var applied uint64
	if rs.Epoch == epoch {
		applied = rs.Applied
	}
	want := jetstream.ConsumerConfig{
		Durable:       s.cfg.Durable,
		Description:   "Herald session service: retained messages and replay buffers",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 2 * s.cfg.BatchSize,
	}
	if applied > 0 {
		want.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		want.OptStartSeq = applied + 1
	}
	c, err := js.Consumer(ctx, stream, s.cfg.Durable)
	switch {
	case err == nil:
		info := c.CachedInfo()
		if info.Delivered.Stream <= applied && info.Config.AckPolicy == want.AckPolicy {
			// Nothing delivered beyond the checkpoint: continue where it is
			// (the start policy of an existing consumer cannot change).
			want.DeliverPolicy, want.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
			c, err := js.CreateOrUpdateConsumer(ctx, stream, want)
			return c, applied, err
		}
		// Ahead of the store, or of an older version that acknowledged
		// each message (an ack policy cannot be updated).
		log.Info("recreating the consumer", "delivered", info.Delivered.Stream, "applied", applied, "ack_policy", info.Config.AckPolicy.String())
		if err := js.DeleteConsumer(ctx, stream, s.cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, 0, fmt.Errorf("delete consumer: %w", err)
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, 0, backbone.ErrNoStream
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, 0, fmt.Errorf("consumer: %w", err)
	}
	c, err = js.CreateOrUpdateConsumer(ctx, stream, want)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, 0, backbone.ErrNoStream
	}
	return c, applied, err
}

// checkEpoch fails with errEpochChanged when the tenant's stream is no longer
// the one of epoch, or with backbone.ErrNoStream when it is gone.
func (s *Service) checkEpoch(ctx context.Context, tenant, epoch string) error {
	ss, err := s.bb.State(ctx, tenant)
	if err != nil {
		return err
	}
	if ss.Epoch != epoch {
		return errEpochChanged
	}
	return nil
}

// fetch returns the next batch: what is available now, or else, waiting up
// to FetchWait, the first message to arrive and what is available with it.
// It never abandons a pull request early, so no message is left delivered
// but unseen (that one would only come back after AckWait).
func (s *Service) fetch(c jetstream.Consumer) ([]jetstream.Msg, error) {
	msgs, err := drain(c.FetchNoWait(s.cfg.BatchSize))
	if err != nil || len(msgs) > 0 || s.cfg.BatchSize == 1 {
		return msgs, err
	}
	if msgs, err = drain(c.Fetch(1, jetstream.FetchMaxWait(s.cfg.FetchWait))); err != nil || len(msgs) == 0 {
		return msgs, err
	}
	more, err := drain(c.FetchNoWait(s.cfg.BatchSize - 1))
	return append(msgs, more...), err
}

func drain(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	return out, batch.Error()
}

// backoff doubles a delay from retryMin up to retryMax.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	b.d = min(max(2*b.d, retryMin), retryMax)
	return b.d
}

func (b *backoff) reset() { b.d = 0 }

// sleep waits d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
