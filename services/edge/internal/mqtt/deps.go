package mqtt

import (
	"context"
	"time"

	"github.com/heraldmq/herald/pkg/control"
	"github.com/heraldmq/herald/pkg/record"
)

// Deps is what the MQTT server is given besides the edge's core: the
// session writer and the control plane. Each is the small interface the
// server needs, defined here where it is used.
type Deps struct {
	// Sessions keeps persistent sessions; nil: sessions end with their
	// connections.
	Sessions Sessions
	// Control carries takeovers between edges (takeover.go); required
	// unless Config.SoleEdge.
	Control Control
	// ClientSubject names the control subject of a tenant's client
	// (backbone.Config.ClientControlSubject); required with Control.
	ClientSubject func(tenant, clientID string) string
}

// Sessions is the session store as the MQTT server writes it: the records
// of the sessions its connections hold (persist.go) and the edge's lease
// (edgelease.go). Every write is conditional on the record's revision
// (record.ErrConflict otherwise). store.EdgeWriter implements it.
type Sessions interface {
	LoadSession(ctx context.Context, tenant, clientID string) (*record.Session, error)
	SaveSession(ctx context.Context, tenant string, s *record.Session) error
	DeleteSession(ctx context.Context, tenant, clientID string, revision uint64) error
	RenewEdgeLease(ctx context.Context, edge string, until time.Time) error
}

// Control is the control plane as takeovers use it: a request answered by
// the connection that holds a session (control.ErrNoResponders when none
// does), an announcement, and one inbox for the control subjects of all
// the server's connections. backbone.Control implements it over core NATS,
// backbone.MemoryControl in memory.
type Control interface {
	Publish(subject string, header map[string]string, data []byte) error
	Request(ctx context.Context, subject string, header map[string]string, data []byte) (*control.Msg, error)
	NewInbox(size int) *control.Inbox
}
