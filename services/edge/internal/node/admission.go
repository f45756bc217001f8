package node

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/limits"
)

// Admission is one live connection's hold on the edge's shared
// enforcement: its identity, its registration with Clients (so that a
// revoked credential or a deleted tenant closes it) and its slot in the
// tenant's limits. The zero and nil Admissions hold nothing and allow
// everything. Release it when the connection ends.
type Admission struct {
	id     auth.Identity
	origin string
	client *Client
	conn   *limits.Conn
	shed   func()
	tel    *admissionTelemetry

	// watchers are told of a revocation (the connection's feeds); guarded
	// by mu, revoked once it happened.
	mu       sync.Mutex
	watchers map[*func(error)]struct{}
	revoked  error
	// feeds are the connection's open feeds, whose filters the admin API
	// lists; guarded by mu. A slice: a connection has one or two.
	feeds []*Feed
}

// Admit refuses an identity whose tenant cannot name a stream (an error
// wrapping backbone.ErrBadTenant: a credential the tenant source got
// wrong), then takes a slot of the edge's Shed (an error wrapping
// limits.ErrServerBusy when the edge sheds load), counts a new connection
// against its tenant's connection limit
// (an error wrapping limits.ErrConnectionLimit) and registers it with
// Clients (an error wrapping auth.ErrRevoked if the identity no longer
// holds); close is called at most once, with a reason wrapping
// auth.ErrRevoked, when the connection must end, and must not block. The
// connection's feeds stop delivering before close is called. Without
// Clients or Quota (anonymous mode) the corresponding part is skipped.
func (n *Node) Admit(ctx context.Context, info ClientInfo, close func(reason error)) (_ *Admission, err error) {
	if !backbone.ValidTenant(info.Identity.Tenant) {
		// No stream can be named after it: refused as a bad credential.
		return nil, fmt.Errorf("%w: tenant %q", backbone.ErrBadTenant, info.Identity.Tenant)
	}
	a := &Admission{id: info.Identity, origin: n.Origin(info.ID)}
	info.subscriptions = a.filters
	close = n.watchAdmission(a, info, a.revocation(close))
	defer func() { a.tel.admitted(err) }()
	// Shedding comes first: a busy edge spends nothing on the connection.
	if n.shed != nil {
		release, err := n.shed.Admit()
		if err != nil {
			return nil, err
		}
		a.shed = release
	}
	if n.quota != nil {
		c, err := n.quota.Connect(ctx, info.Identity.Tenant)
		if err != nil {
			a.Release()
			return nil, err
		}
		a.conn = c
	}
	if n.clients != nil {
		c, err := n.clients.Register(info, close)
		if err != nil {
			a.Release()
			return nil, err
		}
		a.client = c
	}
	return a, nil
}

// Identity returns the admitted identity; nil-safe (the zero identity).
func (a *Admission) Identity() auth.Identity {
	if a == nil {
		return auth.Identity{}
	}
	return a.id
}

// Caller returns the admission as the caller of a publish.
func (a *Admission) Caller() Caller { return Caller{Identity: a.Identity(), Conn: a} }

// revocation wraps a connection's close callback so that the watchers
// (its feeds) stop first.
func (a *Admission) revocation(close func(reason error)) func(reason error) {
	return func(reason error) {
		a.mu.Lock()
		if a.revoked == nil {
			a.revoked = reason
		}
		ws := make([]func(error), 0, len(a.watchers))
		for w := range a.watchers {
			ws = append(ws, *w)
		}
		a.mu.Unlock()
		for _, w := range ws {
			w(reason)
		}
		if close != nil {
			close(reason)
		}
	}
}

// watch calls w with the reason when the connection's credential is
// revoked (at once if it was already); the returned function stops
// watching. Nil-safe.
func (a *Admission) watch(w func(error)) (unwatch func()) {
	if a == nil {
		return func() {}
	}
	a.mu.Lock()
	if reason := a.revoked; reason != nil {
		a.mu.Unlock()
		w(reason)
		return func() {}
	}
	if a.watchers == nil {
		a.watchers = map[*func(error)]struct{}{}
	}
	a.watchers[&w] = struct{}{}
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		delete(a.watchers, &w)
		a.mu.Unlock()
	}
}

// track records an open feed of the connection; the returned function
// forgets it. Nil-safe.
func (a *Admission) track(f *Feed) (untrack func()) {
	if a == nil {
		return func() {}
	}
	a.mu.Lock()
	a.feeds = append(a.feeds, f)
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		if i := slices.Index(a.feeds, f); i >= 0 {
			a.feeds = slices.Delete(a.feeds, i, i+1)
		}
		a.mu.Unlock()
	}
}

// filters returns the filters the connection's feeds hold, sorted,
// without duplicates. It takes each feed's lock after releasing a.mu, so
// it nests no locks.
func (a *Admission) filters() []string {
	a.mu.Lock()
	feeds := slices.Clone(a.feeds)
	a.mu.Unlock()
	var out []string
	for _, f := range feeds {
		out = append(out, f.Filters()...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Release unregisters the connection and frees its limits slot. Idempotent;
// nil-safe.
func (a *Admission) Release() {
	if a == nil {
		return
	}
	a.tel.released()
	if a.client != nil {
		a.client.Unregister()
	}
	if a.conn != nil {
		a.conn.Close()
	}
	if a.shed != nil {
		a.shed()
	}
}

// Publish checks a publish of n payload bytes by the connection against its
// tenant's and its own rates and the payload limit: errors wrap
// limits.ErrRateLimited or limits.ErrPayloadTooLarge. Nil-safe.
func (a *Admission) Publish(n int) error {
	if a == nil || a.conn == nil {
		return nil
	}
	return a.conn.Publish(n)
}

// Subscriptions checks that the connection may hold n subscriptions: an
// error wrapping limits.ErrSubscriptionLimit if not. Nil-safe.
func (a *Admission) Subscriptions(n int) error {
	if a == nil || a.conn == nil {
		return nil
	}
	return a.conn.Subscriptions(n)
}
