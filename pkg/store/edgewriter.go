package store

import (
	"context"
	"time"
)

// EdgeWriter is what an edge writes to the session store, and all it
// writes: the records of the MQTT sessions its connections hold, and the
// lease of the edge incarnation that vouches for them. The edge is given
// one explicitly (its MQTT server's session writer); the rest of the
// store it only reads (retained messages, replay buffers). An edge does
// not create sessions beyond a limit of its own: the tenant's session
// limit is the session service's to apply, so saves pass no Limits.
type EdgeWriter struct {
	Sessions SessionStore
	Leases   EdgeLeaseStore
}

// NewEdgeWriter returns the edge writer of a store that keeps both
// sessions and edge leases (Redis, Embedded).
func NewEdgeWriter(st interface {
	SessionStore
	EdgeLeaseStore
}) *EdgeWriter {
	return &EdgeWriter{Sessions: st, Leases: st}
}

// LoadSession returns the session of clientID, or ErrNoSession.
func (w *EdgeWriter) LoadSession(ctx context.Context, tenant, clientID string) (*Session, error) {
	return w.Sessions.LoadSession(ctx, tenant, clientID)
}

// SaveSession writes s under its revision (SessionStore.SaveSession).
func (w *EdgeWriter) SaveSession(ctx context.Context, tenant string, s *Session) error {
	return w.Sessions.SaveSession(ctx, tenant, s, Limits{})
}

// DeleteSession deletes the session of clientID at revision.
func (w *EdgeWriter) DeleteSession(ctx context.Context, tenant, clientID string, revision uint64) error {
	return w.Sessions.DeleteSession(ctx, tenant, clientID, revision)
}

// RenewEdgeLease sets the lease of edge to end at until.
func (w *EdgeWriter) RenewEdgeLease(ctx context.Context, edge string, until time.Time) error {
	return w.Leases.RenewEdgeLease(ctx, edge, until)
}
