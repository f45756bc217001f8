// Package store keeps the state Herald derives from tenant streams: the
// retained message of each topic and a bounded replay buffer of recent
// messages per tenant, which edges read to serve retained messages and
// resumes without touching JetStream.
//
// The session service is the single writer: it consumes each tenant stream
// in order and calls Apply. Everything in a store can be rebuilt from the
// streams, so a store is a cache with a checkpoint (Applied), not a source of
// truth.
//
// Two implementations share one conformance suite (package storetest): Redis
// (standalone or Cluster) for deployments, and an embedded bbolt file for the
// single-binary default.
package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
)

// Store keeps retained messages and replay buffers, per tenant.
//
// Guarantees of every implementation:
//   - Apply is atomic: a concurrent reader sees a tenant either before or
//     after a whole Apply, never in between; in particular the messages of a
//     ReplayPage are exactly those of the buffer at the page's state.
//   - Apply is idempotent by sequence: messages with Seq <= Applied are
//     ignored, so a writer that crashed before recording its progress
//     elsewhere may apply the same or an overlapping batch again.
//   - The replay buffer of a tenant always holds exactly the applied
//     messages with TrimmedThrough < Seq <= Applied: trimming removes a
//     prefix, never a message in the middle.
//   - Tenants are isolated: nothing read for one tenant comes from another.
//
// Sequences above 2^53 are not supported (Redis keeps them as float scores).
type Store interface {
	// Apply atomically applies msgs (one tenant, strictly ascending Seq)
	// taken from the tenant stream of the given epoch.
	//
	// If epoch differs from the stored epoch, the tenant's state is cleared
	// first: the stream was recreated and its sequences start again. Then
	// each message with Seq > Applied is appended to the replay buffer; a
	// Retain message with a payload replaces its topic's retained message and
	// a Retain message with an empty payload deletes it, in both cases only if
	// its Seq is newer than the stored retained message's. Applied becomes
	// the last Seq. Finally the replay buffer is trimmed to lim: to at most
	// MaxMessages messages, and of messages whose Time is older than MaxAge
	// (by the caller's clock), as a prefix; TrimmedThrough records the highest
	// Seq ever trimmed. A message with a zero Time never ages out.
	//
	// An empty msgs still records the epoch and trims by age.
	Apply(ctx context.Context, tenant, epoch string, msgs []*message.Message, lim ReplayLimits) error

	// Retained returns the tenant's retained messages whose topic matches
	// filter, sorted by topic, excluding expired ones.
	Retained(ctx context.Context, tenant, filter string) ([]*message.Message, error)

	// Replay returns up to max messages with Seq > after, ascending, and the
	// buffer state they were read at. If after < TrimmedThrough, messages in
	// (after, TrimmedThrough] are gone: the reader must fall back to the
	// stream or report the loss. max <= 0 means DefaultReplayPage.
	Replay(ctx context.Context, tenant string, after uint64, max int) (ReplayPage, error)

	// State returns the tenant's epoch, Applied and TrimmedThrough. A tenant
	// never applied has the zero state.
	State(ctx context.Context, tenant string) (ReplayState, error)

	// DeleteTenant drops everything of a tenant. Deleting an unknown tenant
	// is not an error.
	DeleteTenant(ctx context.Context, tenant string) error

	// Close releases the store's resources.
	Close() error
}

// Defaults of ReplayLimits and Replay.
const (
	DefaultReplayMessages = 10000
	DefaultReplayAge      = 24 * time.Hour
	DefaultReplayPage     = 1000
)

// ReplayLimits bound a tenant's replay buffer. Zero fields take the defaults.
type ReplayLimits struct {
	// MaxMessages is the most messages kept; default 10000.
	MaxMessages int `yaml:"max_messages"`
	// MaxAge is how long a message is kept after it was stored; default 24h.
	MaxAge time.Duration `yaml:"max_age"`
}

// WithDefaults returns the limits with zero fields set to their defaults.
func (l ReplayLimits) WithDefaults() ReplayLimits {
	if l.MaxMessages == 0 {
		l.MaxMessages = DefaultReplayMessages
	}
	if l.MaxAge == 0 {
		l.MaxAge = DefaultReplayAge
	}
	return l
}

// Validate reports negative limits.
func (l ReplayLimits) Validate() error {
	if l.MaxMessages < 0 || l.MaxAge < 0 {
		return ErrBadLimits
	}
	return nil
}

// ReplayState is where a tenant's replay buffer stands.
type ReplayState struct {
	// Epoch is the epoch of the stream the state was derived from.
	Epoch string
	// Applied is the Seq of the last message applied.
	Applied uint64
	// TrimmedThrough is the highest Seq trimmed from the buffer: the buffer
	// holds the applied messages in (TrimmedThrough, Applied].
	TrimmedThrough uint64
}

// ReplayPage is one page of a replay buffer and the state it was read at.
type ReplayPage struct {
	ReplayState
	Messages []*message.Message
}

// checkTenant refuses tenant ids that would break a Redis hash tag or a key
// layout; the backbone enforces the narrower alphabet for real tenants.
func checkTenant(tenant string) error {
	if tenant == "" || strings.ContainsAny(tenant, "{}") {
		return ErrBadTenant
	}
	return nil
}

// checkBatch validates Apply's arguments.
func checkBatch(tenant, epoch string, msgs []*message.Message, lim ReplayLimits) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if epoch == "" {
		return ErrNoEpoch
	}
	if err := lim.Validate(); err != nil {
		return err
	}
	var last uint64
	for _, m := range msgs {
		if m.Tenant != "" && m.Tenant != tenant {
			return ErrBadTenant
		}
		if m.Seq <= last {
			return ErrOutOfOrder
		}
		last = m.Seq
	}
	return nil
}

// retainAction says what a message does to its topic's retained message.
type retainAction byte

const (
	retainNone retainAction = iota
	retainSet
	retainDelete
)

func retainOf(m *message.Message) retainAction {
	switch {
	case !m.Retain:
		return retainNone
	case len(m.Payload) == 0:
		return retainDelete
	default:
		return retainSet
	}
}

// ageMillis is the time a message ages from, in Unix milliseconds; a zero
// Time maps to the largest value, so it never ages out.
func ageMillis(m *message.Message) int64 {
	if m.Time.IsZero() {
		return 1<<53 - 1
	}
	return m.Time.UnixMilli()
}

// checkFilter validates a Retained filter.
func checkFilter(tenant, filter string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if err := topic.ValidateFilter(filter, topic.Limits{}); err != nil {
		return fmt.Errorf("%w: %w", ErrBadFilter, err)
	}
	return nil
}

// keepRetained drops expired messages and those not matching filter, and
// sorts the rest by topic.
func keepRetained(filter string, msgs []*message.Message, now time.Time) []*message.Message {
	out := msgs[:0]
	for _, m := range msgs {
		if topic.Match(filter, m.Topic) && !m.Expired(now) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b *message.Message) int { return strings.Compare(a.Topic, b.Topic) })
	return out
}
