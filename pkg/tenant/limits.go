package tenant

import (
	"fmt"
	"reflect"
	"time"
)

// Limits bound a tenant's use of the cluster. Zero means unlimited for each
// field. Rates are enforced by token buckets at the edges (tenant-wide
// rates split across edges or counted cluster-wide, per connection rates
// locally); counts of connections and sessions are cluster-wide counters.
// Edges apply a change as soon as their Directory sees it.
type Limits struct {
	// MaxConnections bounds the tenant's concurrent client connections
	// across all edges and protocols.
	MaxConnections int64 `json:"max_connections,omitempty"`
	// MaxMessagesPerSecond and MaxBytesPerSecond bound the publish rate of
	// the whole tenant (messages, and payload bytes).
	MaxMessagesPerSecond int64 `json:"max_messages_per_second,omitempty"`
	MaxBytesPerSecond    int64 `json:"max_bytes_per_second,omitempty"`
	// MaxConnectionMessagesPerSecond and MaxConnectionBytesPerSecond bound
	// the publish rate of one connection.
	MaxConnectionMessagesPerSecond int64 `json:"max_connection_messages_per_second,omitempty"`
	MaxConnectionBytesPerSecond    int64 `json:"max_connection_bytes_per_second,omitempty"`
	// MaxPayloadBytes bounds one message's payload.
	MaxPayloadBytes int64 `json:"max_payload_bytes,omitempty"`
	// MaxSubscriptionsPerConnection bounds the filters one connection
	// holds.
	MaxSubscriptionsPerConnection int64 `json:"max_subscriptions_per_connection,omitempty"`
	// MaxRetainedMessages bounds the tenant's retained messages.
	MaxRetainedMessages int64 `json:"max_retained_messages,omitempty"`
	// MaxSessions bounds the tenant's persistent sessions.
	MaxSessions int64 `json:"max_sessions,omitempty"`
	// MaxQueuedMessages bounds the messages queued for one connection or
	// offline session before the queue's overflow policy applies.
	MaxQueuedMessages int64 `json:"max_queued_messages,omitempty"`
	// ReplayWindow bounds how far back a client may resume or replay.
	ReplayWindow time.Duration `json:"replay_window,omitempty"`
}

// Validate reports a negative limit as ErrInvalid.
func (l Limits) Validate() error {
	v := reflect.ValueOf(l)
	for i := range v.NumField() {
		if v.Field(i).Int() < 0 {
			return fmt.Errorf("%w: limit %s is negative", ErrInvalid, v.Type().Field(i).Name)
		}
	}
	return nil
}
