package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
)

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
