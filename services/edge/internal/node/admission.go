package node

import (
	"context"

	"github.com/heraldmq/herald/services/edge/internal/limits"
)

// Admission is one live connection's hold on the edge's shared
// enforcement: its registration with Clients (so that a revoked credential
// or a deleted tenant closes it) and its slot in the tenant's limits. The
// zero and nil Admissions hold nothing and allow everything. Release it
// when the connection ends.
type Admission struct {
	client *Client
	conn   *limits.Conn
	shed   func()
	tel    *admissionTelemetry
}

// Admit takes a slot of the edge's Shed (an error wrapping
// limits.ErrServerBusy when the edge sheds load), counts a new connection
// against its tenant's connection limit
// (an error wrapping limits.ErrConnectionLimit) and registers it with
// Clients (an error wrapping auth.ErrRevoked if the identity no longer
// holds); close is called at most once, with a reason wrapping
// auth.ErrRevoked, when the connection must end, and must not block. Without
// Clients or Quota (anonymous mode) the corresponding part is skipped.
func (n *Node) Admit(ctx context.Context, info ClientInfo, close func(reason error)) (_ *Admission, err error) {
	a := &Admission{}
	close = n.watchAdmission(a, info, close)
	defer func() { a.tel.admitted(err) }()
	// Shedding comes first: a busy edge spends nothing on the connection.
	if n.Shed != nil {
		release, err := n.Shed.Admit()
		if err != nil {
			return nil, err
		}
		a.shed = release
	}
	if n.Quota != nil {
		c, err := n.Quota.Connect(ctx, info.Identity.Tenant)
		if err != nil {
			a.Release()
			return nil, err
		}
		a.conn = c
	}
	if n.Clients != nil {
		c, err := n.Clients.Register(info, close)
		if err != nil {
			a.Release()
			return nil, err
		}
		a.client = c
	}
	return a, nil
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

// PublishQuota checks a publish outside any connection (HTTP publish) of n
// payload bytes against the tenant's rates and payload limit.
func (n *Node) PublishQuota(tenantID string, size int) error {
	if n.Quota == nil {
		return nil
	}
	return n.Quota.Publish(tenantID, size)
}
