package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/tenant"
)

// Deleting a tenant deletes its data, in two phases.
//
// The first is one etcd transaction (tenant.Etcd.DeleteAt): the tenant,
// its credentials and admin keys go, and a mark says the tenant is being
// deleted. Edges see the tenant go in their Directory, close its clients
// and forget its stream's epoch; from then on no new client of it is
// admitted, and its ID cannot be created again while the mark stands.
//
// The second (eraser.finish) removes the data, each step idempotent, in an
// order that leaves nothing to bring the data back:
//
//  1. the store's state of the tenant: sessions (so that the session
//     service publishes none of its wills, which would create its stream
//     again), retained messages, the replay buffer, counters; the store's
//     fence is raised, so the session-service replica that owned the
//     tenant cannot write any of it back;
//  2. the JetStream stream, its messages and consumers;
//  3. the store again: what a new owner applied from the stream between 1
//     and 2;
//  4. if the stream exists again (an edge that had not yet seen the
//     deletion published for it), 1 to 3 once more, at most twice;
//  5. the mark, in etcd: the ID may be created again, and a tenant created
//     under it starts with no data and a stream of a new epoch.
//
// A failed step leaves the mark; DeleteTenant called again resumes the
// deletion, and the admin server retries unfinished ones in the background
// every Config.DeletionRetry (and once at start).
type eraser struct {
	tenants *tenant.Etcd
	store   store.Store
	bb      *backbone.Backbone
	log     *slog.Logger
}

// eraseRounds bounds how often finish deletes a stream that keeps coming
// back.
const eraseRounds = 3

// finish removes the data of tenant id, which DeleteAt marked as being
// deleted, and then the mark.
func (e *eraser) finish(ctx context.Context, id string) error {
	for round := 1; ; round++ {
		if err := e.store.DeleteTenant(ctx, id); err != nil {
			return fmt.Errorf("deleting the stored state: %w", err)
		}
		if err := e.bb.DeleteTenant(ctx, id); err != nil {
			return fmt.Errorf("deleting the stream: %w", err)
		}
		if err := e.store.DeleteTenant(ctx, id); err != nil {
			return fmt.Errorf("deleting the stored state: %w", err)
		}
		_, err := e.bb.State(ctx, id)
		if errors.Is(err, backbone.ErrNoStream) {
			break
		}
		if err != nil {
			return fmt.Errorf("checking the stream is gone: %w", err)
		}
		if round == eraseRounds {
			return errors.New("its stream keeps being created again (an edge still admits its clients?)")
		}
		e.log.Warn("admin API: a deleted tenant's stream was created again; deleting it again", "tenant", id)
	}
	if err := e.tenants.FinishDelete(ctx, id); err != nil {
		return err
	}
	e.log.Info("admin API: tenant data deleted", "tenant", id)
	return nil
}

// resume finishes every deletion left unfinished.
func (e *eraser) resume(ctx context.Context) {
	ids, err := e.tenants.Deleting(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("admin API: listing unfinished tenant deletions failed", "err", err)
		}
		return
	}
	for _, id := range ids {
		if err := e.finish(ctx, id); err != nil && ctx.Err() == nil {
			e.log.Warn("admin API: deleting a tenant's data failed; retrying later", "tenant", id, "err", err)
		}
	}
}

// maintainer runs the admin server's background work: it reconciles the
// identity ownership index with the records at start (retrying every
// interval until that succeeds), and finishes tenant deletions left
// unfinished, at start and every interval.
//
// Until the first reconciliation, an identity that a record written before
// the index existed holds can be registered again; edges then resolve it
// to nobody (tenant.Directory), never to the wrong tenant, and the
// reconciliation logs the clash.
type maintainer struct {
	tenants  *tenant.Etcd
	erase    *eraser // nil: no data plane, deletions cannot be finished here
	log      *slog.Logger
	interval time.Duration
	indexed  *atomic.Bool
}

// reconcile builds the ownership index of identities stored before it
// existed; see tenant.Etcd.ReconcileOwners.
func (m *maintainer) reconcile(ctx context.Context) bool {
	rep, err := m.tenants.ReconcileOwners(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("admin API: reconciling the identity index failed; retrying later", "err", err)
		}
		return false
	}
	if rep != (tenant.OwnersReport{}) {
		m.log.Info("admin API: identity index reconciled", "indexed", rep.Indexed, "conflicts", rep.Conflicts, "stale", rep.Stale)
	}
	m.indexed.Store(true)
	return true
}

// run works until ctx is done.
func (m *maintainer) run(ctx context.Context) {
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for {
		if !m.indexed.Load() {
			m.reconcile(ctx)
		}
		if m.erase != nil {
			m.erase.resume(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
