// Package session is Herald's session service: the single writer of the
// state derived from tenant streams (retained messages and replay buffers,
// see package store).
//
// For every tenant stream it finds on the backbone it runs one goroutine that
// reads the stream in order through a durable pull consumer and hands each
// batch to store.Apply, then acknowledges the batch. Because one goroutine
// consumes a tenant in stream order, per-topic order holds in the store.
//
// # Exactly-once effect
//
// Delivery from JetStream is at least once, so the effect is made exactly
// once on the store's side:
//   - a batch is acknowledged only after Apply succeeded; a crash before the
//     ack redelivers it, and a failed Apply is retried with backoff, never
//     acknowledged;
//   - Apply is atomic and idempotent by sequence: it skips every message at
//     or below the store's Applied checkpoint, so a redelivered (or
//     overlapping) batch changes nothing twice;
//   - the store's checkpoint, not the consumer's, decides where reading
//     starts: when a tenant's consumer has delivered past Applied (messages a
//     crashed process fetched but never applied, which JetStream would only
//     redeliver after AckWait, behind newer ones), the consumer is recreated
//     at Applied+1. Without that, a newer batch could move Applied past them
//     and they would be skipped as already applied. The same rule rebuilds a
//     lost store (Applied 0) from the stream.
//   - an epoch change (a recreated stream) is passed to Apply, which clears
//     the tenant first: sequences of different streams are never compared.
//
// # Scale
//
// One replica consumes every tenant for now. Two replicas would both apply
// every batch: harmless for correctness (Apply is idempotent and atomic) but
// wasted work, and a rolling restart makes them fight over the consumer.
// Spreading tenants over replicas (a lease per tenant) is a later issue.
package session

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/nats-io/nats.go/jetstream"
)

// Config configures the session service.
type Config struct {
	// PollInterval is how often the backbone is asked for new tenants, and
	// how often an idle tenant's consumer and epoch are checked; default 2s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// BatchSize is the most messages fetched and applied at once; default 256.
	BatchSize int `yaml:"batch_size"`
	// FetchWait is how long an idle tenant's fetch waits for a message before
	// trying again; default 1s. It bounds how long a stop takes.
	FetchWait time.Duration `yaml:"fetch_wait"`
	// Replay bounds each tenant's replay buffer (defaults: 10000 messages, 24h).
	Replay store.ReplayLimits `yaml:"replay"`
	// Durable names the consumer on every tenant stream; default "herald-session".
	Durable string `yaml:"durable"`
}

// Defaults of Config.
const (
	DefaultPollInterval = 2 * time.Second
	DefaultBatchSize    = 256
	DefaultFetchWait    = time.Second
	DefaultDurable      = "herald-session"
)

// Fixed consumer and retry settings.
const (
	// ackWait is how long JetStream waits for an ack before redelivering.
	ackWait = 30 * time.Second
	// retryMin and retryMax bound the backoff between failed attempts.
	retryMin, retryMax = 100 * time.Millisecond, 5 * time.Second
	// trimEvery is how often an idle tenant's buffer is trimmed by age
	// (Apply trims on every batch; without traffic nothing else would).
	trimEvery = time.Minute
)

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
	if c.Durable == "" {
		c.Durable = DefaultDurable
	}
	c.Replay = c.Replay.WithDefaults()
	return c
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
	}
	if err := c.Replay.Validate(); err != nil {
		return fmt.Errorf("session: replay: %w", err)
	}
	for _, r := range c.Durable {
		if r == '.' || r == '*' || r == '>' || r == ' ' || r == '/' || r == '\\' {
			return fmt.Errorf("session: durable %q may not contain %q", c.Durable, r)
		}
	}
	return nil
}

// Service consumes tenant streams into a store.
type Service struct {
	cfg Config
	bb  *backbone.Backbone
	st  store.Store
	log *slog.Logger

	started atomic.Bool
	ready   atomic.Bool

	mu      sync.Mutex
	workers map[string]bool // tenants with a running consumer goroutine
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
	return &Service{cfg: cfg.WithDefaults(), bb: bb, st: st, log: log, workers: map[string]bool{}}, nil
}

// Ready reports whether the service has listed the backbone's tenants at
// least once and is running.
func (s *Service) Ready() bool { return s.ready.Load() }

// Run consumes every tenant stream until ctx is done, discovering new
// tenants every PollInterval. It returns nil once ctx is done and every
// goroutine it started has stopped; it may be called once.
func (s *Service) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("session: Run called twice")
	}
	var wg sync.WaitGroup
	defer func() {
		s.ready.Store(false)
		wg.Wait()
	}()
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	for {
		s.discover(ctx, &wg)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// discover starts a consumer goroutine for each tenant without one.
func (s *Service) discover(ctx context.Context, wg *sync.WaitGroup) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	tenants, err := s.bb.Tenants(lctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("listing tenants failed", "err", err)
		}
		return
	}
	s.ready.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range tenants {
		if s.workers[t] {
			continue
		}
		s.workers[t] = true
		wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.workers, t)
				s.mu.Unlock()
			}()
			s.runTenant(ctx, t)
		})
	}
}

// runTenant consumes one tenant until ctx is done or its stream is gone
// (discovery starts it again if the stream comes back).
func (s *Service) runTenant(ctx context.Context, tenant string) {
	log := s.log.With("tenant", tenant)
	log.Info("consuming tenant")
	b := backoff{}
	for {
		err := s.consume(ctx, tenant, log, &b)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, backbone.ErrNoStream):
			log.Info("tenant stream gone; stopping")
			return
		case errors.Is(err, errEpochChanged):
			log.Info("tenant stream recreated; restarting from its start")
			continue
		}
		log.Warn("consuming tenant failed; retrying", "err", err)
		if !sleep(ctx, b.next()) {
			return
		}
	}
}

// consume sets up the tenant's consumer and applies batches until an error.
func (s *Service) consume(ctx context.Context, tenant string, log *slog.Logger, b *backoff) error {
	ss, err := s.bb.State(ctx, tenant)
	if err != nil {
		return err
	}
	cons, err := s.consumer(ctx, tenant, ss.Epoch, log)
	if err != nil {
		return err
	}
	// Deleting a stream deletes its consumers: if the epoch is unchanged
	// now, the consumer reads the stream of that epoch.
	if err := s.checkEpoch(ctx, tenant, ss.Epoch); err != nil {
		return err
	}
	lastCheck, lastTrim := time.Now(), time.Now()
	for ctx.Err() == nil {
		jms, err := s.fetch(cons)
		if err != nil {
			return err
		}
		if len(jms) == 0 {
			if time.Since(lastCheck) < s.cfg.PollInterval {
				continue
			}
			// Idle: make sure the consumer and the stream still exist (a
			// fetch on a deleted consumer just times out), and trim by age.
			lastCheck = time.Now()
			if err := s.checkEpoch(ctx, tenant, ss.Epoch); err != nil {
				return err
			}
			if _, err := cons.Info(ctx); err != nil {
				return fmt.Errorf("consumer info: %w", err)
			}
			if time.Since(lastTrim) >= trimEvery {
				lastTrim = time.Now()
				if err := s.apply(ctx, tenant, ss.Epoch, nil, log); err != nil {
					return err
				}
			}
			continue
		}
		msgs := make([]*message.Message, 0, len(jms))
		for _, jm := range jms {
			m, err := s.bb.DecodeStored(tenant, jm)
			if err != nil {
				// Not a Herald message: nothing to apply, acknowledged with the batch.
				log.Warn("skipping undecodable message", "subject", jm.Subject(), "err", err)
				continue
			}
			msgs = append(msgs, m)
		}
		// A redelivery (after a lost ack) can arrive among newer messages;
		// Apply wants ascending sequences and skips the already applied.
		slices.SortFunc(msgs, func(a, b *message.Message) int { return cmp.Compare(a.Seq, b.Seq) })
		msgs = slices.CompactFunc(msgs, func(a, b *message.Message) bool { return a.Seq == b.Seq })
		if err := s.apply(ctx, tenant, ss.Epoch, msgs, log); err != nil {
			// Not applied, so not acknowledged: it is redelivered.
			return err
		}
		lastTrim = time.Now()
		for _, jm := range jms {
			// A lost ack only means a redelivery that Apply skips.
			_ = jm.Ack()
		}
		b.reset()
	}
	return ctx.Err()
}

// consumer returns the tenant's durable consumer, positioned so that the next
// message delivered is the first one the store has not applied.
func (s *Service) consumer(ctx context.Context, tenant, epoch string, log *slog.Logger) (jetstream.Consumer, error) {
	js, stream := s.bb.JetStream(), backbone.StreamName(tenant)
	rs, err := s.st.State(ctx, tenant)
	if err != nil {
		return nil, fmt.Errorf("store state: %w", err)
	}
	var applied uint64
	if rs.Epoch == epoch {
		applied = rs.Applied
	}
	want := jetstream.ConsumerConfig{
		Durable:       s.cfg.Durable,
		Description:   "Herald session service: retained messages and replay buffers",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
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
		if info.Delivered.Stream <= applied {
			// Nothing delivered beyond the checkpoint: continue where it is
			// (the start policy of an existing consumer cannot change).
			want.DeliverPolicy, want.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
			return js.CreateOrUpdateConsumer(ctx, stream, want)
		}
		log.Info("consumer ahead of the store; recreating it", "delivered", info.Delivered.Stream, "applied", applied)
		if err := js.DeleteConsumer(ctx, stream, s.cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete consumer: %w", err)
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, backbone.ErrNoStream
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("consumer: %w", err)
	}
	c, err = js.CreateOrUpdateConsumer(ctx, stream, want)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, backbone.ErrNoStream
	}
	return c, err
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

// apply applies msgs, retrying with backoff until it succeeds or ctx is done.
func (s *Service) apply(ctx context.Context, tenant, epoch string, msgs []*message.Message, log *slog.Logger) error {
	b := backoff{}
	for {
		err := s.st.Apply(ctx, tenant, epoch, msgs, s.cfg.Replay)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("applying batch failed; retrying", "messages", len(msgs), "err", err)
		if !sleep(ctx, b.next()) {
			return ctx.Err()
		}
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
