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
//
// # Files
//
// Ownership (ownership.go, lease.go): which replica holds which tenant.
// Consumption (consume.go): a held tenant's stream, read in order. Writing
// (write.go): a tenant's batches applied to the store under its fence.
// Sweeping (sweep.go): expired sessions, due wills and dead edges.
package session

import (
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
)

// Config configures the session service.
type Config struct {
	// PollInterval is how often the backbone is asked for new tenants, leases
	// are renewed and rebalanced, and an idle tenant's consumer, epoch and
	// store are checked; default 2s.
	PollInterval time.Duration `name:"poll-interval" env:"HERALD_SESSION_POLL_INTERVAL" help:"How often to look for new tenants (default 2s)."`
	// BatchSize is the most messages fetched and applied at once; default 256.
	BatchSize int `name:"batch-size" env:"HERALD_SESSION_BATCH_SIZE" placeholder:"N" help:"Most messages fetched and applied at once (default 256)."`
	// FetchWait is how long an idle tenant's fetch waits for a message before
	// trying again; default 1s. It bounds how long a stop takes.
	FetchWait time.Duration `name:"fetch-wait" env:"HERALD_SESSION_FETCH_WAIT" help:"How long an idle tenant's fetch waits (bounds shutdown time) (default 1s)."`
	// ApplyInterval is the least time between two store writes of one
	// tenant while its stream has less than a batch waiting; default 20ms.
	// Messages arriving meanwhile wait in the stream and go into the next
	// batch, so a busy tenant costs one store commit (an fsync on the
	// embedded store) per interval instead of one per handful of messages.
	// Readers never wait for it: retained and replay reads fold in the
	// stream tail the store has not applied yet. A full batch is applied at
	// once, so the interval never limits throughput.
	ApplyInterval time.Duration `name:"apply-interval" env:"HERALD_SESSION_APPLY_INTERVAL" help:"Least time between two store writes of a tenant with less than a batch waiting (one commit per interval, not per few messages) (default 20ms)."`
	// Durable names the consumer on every tenant stream; default
	// "herald-session". The lease bucket is "<durable>-leases": replicas
	// with the same durable share the tenants.
	Durable string `name:"durable" env:"HERALD_SESSION_DURABLE" placeholder:"NAME" help:"Name of the consumer on every tenant stream; replicas with the same durable share the tenants (default herald-session)."`
	// ReplicaID names this replica in the lease bucket; default the host
	// name. It must be unique among live replicas and should be stable
	// across restarts: a restarted replica takes over its own leases at once
	// instead of waiting for them to expire.
	ReplicaID string `name:"replica-id" placeholder:"NAME" env:"HERALD_SESSION_REPLICA_ID" help:"This replica's name in the lease bucket: unique among live replicas, stable across restarts (default: the host name)."`
	// LeaseTTL is how long a tenant stays with a replica that stopped
	// renewing (died); default 10s, at least 3 PollIntervals.
	LeaseTTL time.Duration `name:"lease-ttl" env:"HERALD_SESSION_LEASE_TTL" help:"How long a tenant stays with a replica that stopped renewing its lease (default 10s)."`
	// LeaseReplicas is the replication factor of the lease bucket; default 1
	// (use 3 on a NATS cluster).
	LeaseReplicas int `name:"lease-replicas" env:"HERALD_SESSION_LEASE_REPLICAS" placeholder:"N" help:"Replication factor of the lease bucket (3 on a NATS cluster) (default 1)."`
	// SweepInterval is how often expired sessions are deleted, expired
	// retained messages swept and idle replay buffers trimmed by age;
	// default 30s.
	SweepInterval time.Duration `name:"sweep-interval" env:"HERALD_SESSION_SWEEP_INTERVAL" help:"How often expired sessions and retained messages are deleted and idle replay buffers trimmed (default 30s)."`
	// DueInterval is how often the sessions whose connection lease ran out
	// or whose will is due are looked for: it bounds how late a will fires;
	// default 1s.
	DueInterval time.Duration `name:"due-interval" env:"HERALD_SESSION_DUE_INTERVAL" help:"How often lapsed MQTT connection leases and due wills are looked for (bounds how late a will fires) (default 1s)."`
	// Limits bound every tenant (defaults: see store.Limits).
	Limits store.Limits `embed:""`
	// TenantLimits override Limits per tenant; zero fields inherit Limits.
	TenantLimits map[string]store.Limits `kong:"-"`
	// Telemetry records the service's metrics and "session.apply" spans;
	// the zero value records nothing.
	Telemetry telemetry.Providers `kong:"-"`
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

// Streams is the backbone as the session service reads it: the tenants
// that have a stream, each stream's bounds, durable consumers that deliver
// a stream in order from where the service left off, and the publish of
// wills. backbone.Backbone (JetStream) and backbone.Memory implement it;
// both pass the conformance suite of pkg/backbone/backbonetest.
type Streams interface {
	Tenants(ctx context.Context) ([]string, error)
	State(ctx context.Context, tenant string) (backbone.StreamState, error)
	Durable(ctx context.Context, tenant string, cfg backbone.DurableConfig) (backbone.Consumer, error)
	Publish(ctx context.Context, m *message.Message, opts backbone.PublishOptions) (message.Position, error)
}

// LeaseBucket is the key-value bucket the replicas keep their leases in
// (see leases): keys expire one TTL after their last write; Create fails
// with backbone.ErrKeyExists on a present key, Update and a Delete at a
// revision with backbone.ErrRevision when the key moved on, Get with
// backbone.ErrKeyNotFound on an absent one. backbone.Bucket (JetStream
// key-value) and backbone.MemoryBucket implement it, both checked by the
// conformance suite of pkg/backbone/backbonetest. Config.LeaseBucket
// configures it.
type LeaseBucket interface {
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	Delete(ctx context.Context, key string, rev uint64) error
	Keys(ctx context.Context, filter string) ([]string, error)
}

// LeaseBucket returns the configuration of the replicas' lease bucket,
// "<durable>-leases": replicas with the same durable share the tenants.
func (c Config) LeaseBucket() backbone.BucketConfig {
	c = c.WithDefaults()
	return backbone.BucketConfig{Name: c.Durable + "-leases", TTL: c.LeaseTTL, Replicas: c.LeaseReplicas,
		Description: "Herald session service: replica heartbeats and tenant ownership"}
}

// Service consumes the tenant streams it owns into a store.
type Service struct {
	cfg    Config
	bb     Streams
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

// New returns a service over the backbone's streams and its lease bucket
// (configured by cfg.LeaseBucket); Run starts it. The backbone, the bucket
// and the store remain the caller's.
func New(cfg Config, bb Streams, bucket LeaseBucket, st store.Store, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bb == nil || bucket == nil || st == nil {
		return nil, errors.New("session: backbone streams, a lease bucket and a store are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	s := &Service{
		cfg: cfg, bb: bb, st: st, log: log.With("replica", cfg.ReplicaID),
		leases: &leases{b: bucket, id: cfg.ReplicaID},
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

func (s *Service) warn(ctx context.Context, msg string, err error, args ...any) {
	if ctx.Err() == nil {
		s.log.Warn(msg, append(args, "err", err)...)
	}
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
