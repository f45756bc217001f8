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

// errEpochChanged ends a tenant's consumption when its stream was recreated.
var errEpochChanged = errors.New("session: stream epoch changed")

// runTenant consumes one owned tenant until ctx is done (the lease was
// released or lost), its stream is gone, or a newer owner fenced it out.
func (s *Service) runTenant(ctx context.Context, tenant string) {
	log := s.log.With("tenant", tenant)
	fence, err := s.fence(ctx, tenant)
	if err != nil {
		return
	}
	retry := backoff{}
	for {
		err := s.consume(ctx, tenant, fence, log, &retry)
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
		if !sleep(ctx, retry.next()) {
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
func (s *Service) consume(ctx context.Context, tenant string, fence uint64, log *slog.Logger, retry *backoff) error {
	ss, err := s.bb.State(ctx, tenant)
	if err != nil {
		return err
	}
	cons, applied, err := s.consumer(ctx, tenant, ss.Epoch)
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
		b, err := cons.Fetch(s.cfg.BatchSize, s.cfg.FetchWait)
		if err != nil {
			return err
		}
		if b.Fetched == 0 {
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
			if err := cons.Check(ctx); err != nil {
				return err
			}
			if err := w.check(ctx); err != nil {
				return err
			}
			continue
		}
		s.tel.Pending(tenant, b.Pending)
		for _, sk := range b.Skipped {
			// Not a Herald message: nothing to apply, acknowledged with the batch.
			log.Warn("skipping undecodable message", "subject", sk.Subject, "err", sk.Err)
		}
		msgs := b.Messages
		applyStart := time.Now()
		if err := w.apply(ctx, msgs, 0); err != nil {
			// Not applied, so not acknowledged: it is redelivered.
			return err
		}
		s.tel.Applied(tenant, msgs, applyStart)
		// A lost ack only means a redelivery that the store skips.
		_ = b.Ack()
		retry.reset()
		if b.Fetched < s.cfg.BatchSize {
			// Less than a batch was waiting: let the next one gather.
			if d := time.Until(applyStart.Add(s.cfg.ApplyInterval)); d > 0 && !sleep(ctx, d) {
				return ctx.Err()
			}
		}
	}
	return ctx.Err()
}

// consumer returns the tenant's durable consumer, positioned so that the next
// message delivered is the first one the store has not applied, and the
// store's Applied for epoch.
func (s *Service) consumer(ctx context.Context, tenant, epoch string) (backbone.Consumer, uint64, error) {
	rs, err := s.st.State(ctx, tenant)
	if err != nil {
		return nil, 0, fmt.Errorf("store state: %w", err)
	}
	var applied uint64
	if rs.Epoch == epoch {
		applied = rs.Applied
	}
	c, err := s.bb.Durable(ctx, tenant, backbone.DurableConfig{Name: s.cfg.Durable,
		Description: "Herald session service: retained messages and replay buffers",
		After:       applied, AckWait: ackWait, MaxAckPending: 2 * s.cfg.BatchSize})
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
