// Package store keeps the state Herald derives from tenant streams and the
// state of MQTT persistent sessions: the retained message of each topic, a
// bounded replay buffer of recent messages per tenant, and session records,
// which edges read to serve retained messages, resumes and reconnects
// without touching JetStream.
//
// The session service is the single writer of derived state: it consumes
// each tenant stream in order and calls ApplyBatch, fenced by the token of
// its tenant lease. Derived state can be rebuilt from the streams, so for it
// a store is a cache with a checkpoint (Applied), not a source of truth; a
// writer notices a store that lost data (ErrStateLost) and rebuilds it.
// Session records are written by edges (connect, disconnect) and by the
// session service (expiry), each write conditional on the revision read.
//
// # Offline delivery: cursors into JetStream, not per-session queues
//
// A persistent session stores the stream position it has been delivered up
// to (Session.Delivered); on reconnect the edge replays the tenant stream
// after it, filtered by the session's subscriptions (the resume path SSE
// already uses), then goes live. Nothing is written per message per
// session. Measured (BenchmarkOfflineQueues, BenchmarkOfflineCursors; real
// Redis 7.0 and embedded NATS 2.15, 2 cores, docs/benchmarks.md): 1,000
// offline sessions, 10,000 messages of 128 bytes, each session matching 1%:
//
//	                     per-session queues   cursors into JetStream
//	writes per message   10 (100,000 total)   0 (one session save at disconnect)
//	Redis memory         28.7 MiB             0.54 MiB (the 1,000 session records)
//	extra ingest work    0.56-0.73 s          none (the stream is written anyway)
//	reconnect replay     1.0 ms (LRANGE)      4.3-6.8 ms (filtered stream replay)
//
// Queues cost Redis memory and writes proportional to offline sessions x
// matching traffic, on the session service's hot path, and need their own
// length limit; cursors cost a few milliseconds per reconnect and bound
// offline delivery by the stream's retention (MaxAge, MaxBytes), past which
// the client is told of the gap like any resume. Herald uses cursors.
// Caveat found by the benchmark: backbone.Range leaves each replay's ordered
// consumer to expire after 30 s and a stream allows 1,000 consumers by
// default, so a burst of more than ~1,000 resumes per tenant within 30 s
// fails until Range deletes its consumer (or uses batched direct gets).
//
// Two implementations share one conformance suite (package storetest): Redis
// (standalone or Cluster; every key of a tenant on one slot, every write one
// Lua script) for deployments, and an embedded bbolt file for the
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

// Store keeps retained messages, replay buffers and persistent sessions,
// per tenant.
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
//   - Writes are fenced: once a writer with fence token F has applied, a
//     batch carrying a smaller token fails with ErrFenced and changes nothing.
//   - Tenants are isolated: nothing read for one tenant comes from another.
//   - Everything is bounded by Limits: what does not fit has a documented
//     outcome (see Limits), never unbounded growth.
//
// Sequences above 2^53 are not supported (Redis keeps them as float scores).
type Store interface {
	// Apply is ApplyBatch with fence 0 and the default limits but for the
	// replay window: the single-writer form, for tests and tools. Once a
	// tenant has been fenced (by an owner with a token), Apply fails with
	// ErrFenced.
	Apply(ctx context.Context, tenant, epoch string, msgs []*message.Message, lim ReplayLimits) error

	// ApplyBatch atomically applies b.Messages (one tenant, strictly
	// ascending Seq) taken from the tenant stream of b.Epoch.
	//
	// First the fence: if b.Fence is below the tenant's stored fence, it
	// fails with ErrFenced; otherwise the stored fence becomes b.Fence.
	// Then loss detection: if the stored state is missing or another epoch's
	// while b.Expect > 0, or Applied < b.Expect, it fails with ErrStateLost.
	//
	// If b.Epoch differs from the stored epoch, the tenant's stream-derived
	// state (buffer, retained messages, Applied, TrimmedThrough) is cleared
	// first: the stream was recreated and its sequences start again. Sessions
	// and the fence are kept. If Applied < b.SkipThrough, the messages
	// through SkipThrough are gone from the stream: the buffer is trimmed
	// through it and Applied and TrimmedThrough become SkipThrough, so
	// readers see the loss as a trimmed prefix.
	//
	// Then each message with Seq > Applied is appended to the replay buffer;
	// a Retain message with a payload replaces its topic's retained message
	// and a Retain message with an empty payload deletes it, in both cases
	// only if its Seq is newer than the stored retained message's. A
	// retained message that would take the tenant beyond
	// Limits.RetainedMessages or Limits.RetainedBytes is not stored, and the
	// topic's previous retained message is deleted (a reader never gets a
	// value older than one that was refused); ApplyResult.RetainedDropped
	// counts them. Applied becomes the last Seq. Retained messages whose
	// ExpiresAt has passed are deleted (swept, a bounded number per call).
	// Finally the replay buffer is trimmed to Limits.Replay: to at most
	// MaxMessages messages, and of messages whose Time is older than MaxAge
	// (by the caller's clock), as a prefix; TrimmedThrough records the
	// highest Seq ever trimmed. A message with a zero Time never ages out.
	//
	// An empty batch still checks the fence, records the epoch, trims by
	// age and sweeps expired retained messages.
	ApplyBatch(ctx context.Context, tenant string, b Batch) (ApplyResult, error)

	// Fence issues a new fence token for tenant, greater than every token
	// it issued before, for a writer that just became the tenant's owner.
	// The token takes effect at the writer's first ApplyBatch.
	Fence(ctx context.Context, tenant string) (uint64, error)

	// Retained returns the tenant's retained messages whose topic matches
	// filter, sorted by topic, excluding expired ones. A wildcard filter
	// costs what it visits of the tenant's retained topic tree, not what
	// the tenant holds (retained_index.go); the store keeps the index
	// exact through every write (RetainedIndexVerifier checks it).
	Retained(ctx context.Context, tenant, filter string) ([]*message.Message, error)

	// Replay returns up to max messages with Seq > after, ascending, and the
	// buffer state they were read at. If after < TrimmedThrough, messages in
	// (after, TrimmedThrough] are gone: the reader must fall back to the
	// stream or report the loss. max <= 0 means DefaultReplayPage.
	Replay(ctx context.Context, tenant string, after uint64, max int) (ReplayPage, error)

	// State returns the tenant's epoch, Applied and TrimmedThrough. A tenant
	// never applied has the zero state.
	State(ctx context.Context, tenant string) (ReplayState, error)

	// DeleteTenant drops everything of a tenant: its derived state,
	// sessions and whatever else the store keeps for it. Only the fence
	// stays, raised above every token issued, so that a writer that held
	// the tenant before cannot write again (ErrFenced) and resurrect what
	// was deleted; a new owner takes a new token with Fence. Deleting an
	// unknown tenant is not an error; deleting twice is harmless.
	DeleteTenant(ctx context.Context, tenant string) error

	SessionStore
	EdgeLeaseStore

	// Close releases the store's resources.
	Close() error
}

// SessionStore keeps MQTT persistent sessions, per tenant and client id.
//
// Every write is atomic and conditional on the session's revision
// (optimistic concurrency): a session is read with its Revision, and saving
// or deleting it fails with ErrConflict if another writer changed it since.
// Revisions are unique per tenant (never reused after a delete), so a
// session deleted and created again never matches a stale revision.
type SessionStore interface {
	// LoadSession returns the session of clientID, or ErrNoSession.
	LoadSession(ctx context.Context, tenant, clientID string) (*Session, error)

	// SaveSession writes s. With s.Revision 0 it creates the session and
	// fails with ErrConflict if one exists; otherwise it replaces the
	// session whose revision is s.Revision, and fails with ErrConflict if
	// the stored one has another revision or is gone. Creating a session
	// when the tenant holds lim.Sessions already fails with ErrSessionLimit.
	// On success s.Revision is the new revision.
	SaveSession(ctx context.Context, tenant string, s *Session, lim Limits) error

	// DeleteSession deletes the session of clientID if its revision is
	// revision (any revision if 0); ErrConflict if it is another. Deleting
	// an unknown session is not an error.
	DeleteSession(ctx context.Context, tenant, clientID string, revision uint64) error

	// Sessions returns up to max sessions (DefaultSessionPage if max <= 0)
	// whose client id sorts after the given one, in client id order: pass the
	// last client id of a page to read the next. A page is not a snapshot:
	// sessions changed while paging may or may not appear.
	Sessions(ctx context.Context, tenant, after string, max int) ([]*Session, error)

	// CountSessions returns how many sessions the tenant holds.
	CountSessions(ctx context.Context, tenant string) (int, error)

	// ExpireSessions atomically deletes up to max sessions (DefaultSessionPage
	// if max <= 0) whose expiry deadline (Session.ExpiresAt) is at or before
	// now, and returns them (their wills are the caller's to publish). A
	// session saved again before its deadline, or connected, is not deleted.
	ExpireSessions(ctx context.Context, tenant string, now time.Time, max int) ([]*Session, error)

	// DueSessions returns up to max sessions (DefaultSessionPage if max <= 0)
	// whose Session.Due is at or before now, earliest first: connected
	// sessions whose connection lease ran out and disconnected sessions whose
	// will is due. It changes nothing: the caller acts on each with a
	// revision-checked SaveSession or DeleteSession, which takes it off the
	// index (or moves it) when the new state is due later or never.
	DueSessions(ctx context.Context, tenant string, now time.Time, max int) ([]*Session, error)

	// SessionEdges returns the edges (Session.Edge) of the tenant's
	// connected sessions, in order, each once.
	SessionEdges(ctx context.Context, tenant string) ([]string, error)

	// EdgeSessions returns up to max connected sessions (DefaultSessionPage
	// if max <= 0) whose Session.Edge is edge and whose client id sorts
	// after the given one, in client id order. Like DueSessions it changes
	// nothing: a save that disconnects a session, or names another edge,
	// takes it off the edge's list.
	EdgeSessions(ctx context.Context, tenant, edge, after string, max int) ([]*Session, error)
}

// EdgeLeaseStore keeps one lease per edge incarnation: an edge renews its
// own, and every connected session naming it (Session.Edge) counts as
// connected while it lives, so the cost of liveness is one write per edge
// per renewal, whatever the number of connections. Leases are global, not
// per tenant.
type EdgeLeaseStore interface {
	// RenewEdgeLease sets the lease of edge to end at until.
	RenewEdgeLease(ctx context.Context, edge string, until time.Time) error

	// EdgeLeases returns every edge lease: edge → end of its lease, lapsed
	// ones included until deleted.
	EdgeLeases(ctx context.Context) (map[string]time.Time, error)

	// DeleteEdgeLease removes the lease of edge; unknown edges are not an
	// error. Sessions still naming it count as connected to a lapsed edge.
	DeleteEdgeLease(ctx context.Context, edge string) error
}

// Batch is one ApplyBatch: messages of one stream epoch and how to apply them.
type Batch struct {
	// Epoch is the epoch of the stream the messages come from; required.
	Epoch string
	// Messages are in strictly ascending Seq order.
	Messages []*message.Message
	// Fence is the writer's fence token (from Fence); 0 means unfenced.
	Fence uint64
	// Expect is the Applied the writer last saw (0 if it knows nothing);
	// a store holding less lost data (ErrStateLost).
	Expect uint64
	// SkipThrough is the highest sequence the stream no longer holds, as far
	// as the writer knows (its first sequence minus one), or 0.
	SkipThrough uint64
	// Limits bound the tenant; zero fields take the defaults.
	Limits Limits
}

// ApplyResult reports what an ApplyBatch did.
type ApplyResult struct {
	// Applied is the tenant's Applied after the batch.
	Applied uint64
	// RetainedDropped counts retained messages refused by the limits.
	RetainedDropped int
	// RetainedExpired counts expired retained messages swept.
	RetainedExpired int
	// RetainedMessages and RetainedBytes are the tenant's retained
	// messages and their encoded size after the batch (the metrics'
	// retained gauges; no extra read).
	RetainedMessages int
	RetainedBytes    int64
}

// Defaults of Limits, ReplayLimits and reads.
const (
	DefaultReplayMessages   = 10000
	DefaultReplayAge        = 24 * time.Hour
	DefaultReplayPage       = 1000
	DefaultRetainedMessages = 100000
	DefaultRetainedBytes    = 256 << 20
	DefaultSessions         = 100000
	DefaultSessionPage      = 100
	// sweepMax bounds the expired retained messages one ApplyBatch deletes,
	// so a mass expiry never makes one call (one Redis script) long.
	sweepMax = 1000
)

// Limits bound one tenant's derived state. Zero fields take the defaults;
// there is no "unlimited".
//
// Outcomes when a limit is reached:
//   - Replay: the oldest messages leave the buffer (TrimmedThrough moves);
//     resuming readers are told of the gap.
//   - RetainedMessages, RetainedBytes: a retained message that does not fit
//     is not stored, the topic's previous retained message is deleted, and
//     ApplyResult.RetainedDropped counts it. Deleting always works.
//   - Sessions: creating one more session fails with ErrSessionLimit (MQTT
//     CONNECT is refused with "quota exceeded"); existing ones can be saved.
type Limits struct {
	// Replay bounds the replay buffer.
	Replay ReplayLimits `embed:"" prefix:"replay-"`
	// RetainedMessages is the most retained topics; default 100000.
	RetainedMessages int `name:"max-retained" env:"HERALD_MAX_RETAINED" placeholder:"N" help:"Most retained topics per tenant (default 100000)."`
	// RetainedBytes bounds the encoded size of all retained messages;
	// default 256 MiB.
	RetainedBytes int64 `name:"max-retained-bytes" env:"HERALD_MAX_RETAINED_BYTES" placeholder:"BYTES" help:"Most bytes of retained messages per tenant (default 256 MiB)."`
	// Sessions is the most persistent sessions; default 100000.
	Sessions int `name:"max-sessions" env:"HERALD_MAX_SESSIONS" placeholder:"N" help:"Most persistent sessions per tenant (default 100000)."`
}

// WithDefaults returns the limits with zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	l.Replay = l.Replay.WithDefaults()
	if l.RetainedMessages == 0 {
		l.RetainedMessages = DefaultRetainedMessages
	}
	if l.RetainedBytes == 0 {
		l.RetainedBytes = DefaultRetainedBytes
	}
	if l.Sessions == 0 {
		l.Sessions = DefaultSessions
	}
	return l
}

// Validate reports negative limits.
func (l Limits) Validate() error {
	if l.RetainedMessages < 0 || l.RetainedBytes < 0 || l.Sessions < 0 {
		return ErrBadLimits
	}
	return l.Replay.Validate()
}

// Or returns l with each zero field taken from def.
func (l Limits) Or(def Limits) Limits {
	if l.Replay.MaxMessages == 0 {
		l.Replay.MaxMessages = def.Replay.MaxMessages
	}
	if l.Replay.MaxAge == 0 {
		l.Replay.MaxAge = def.Replay.MaxAge
	}
	if l.RetainedMessages == 0 {
		l.RetainedMessages = def.RetainedMessages
	}
	if l.RetainedBytes == 0 {
		l.RetainedBytes = def.RetainedBytes
	}
	if l.Sessions == 0 {
		l.Sessions = def.Sessions
	}
	return l
}

// ReplayLimits bound a tenant's replay buffer. Zero fields take the defaults.
type ReplayLimits struct {
	// MaxMessages is the most messages kept; default 10000.
	MaxMessages int `name:"max-messages" env:"HERALD_REPLAY_MAX_MESSAGES" placeholder:"N" help:"Most messages kept per tenant replay buffer (default 10000)."`
	// MaxAge is how long a message is kept after it was stored; default 24h.
	MaxAge time.Duration `name:"max-age" env:"HERALD_REPLAY_MAX_AGE" help:"How long a message stays in a replay buffer (default 24h)."`
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

// checkBatch validates ApplyBatch's arguments.
func checkBatch(tenant string, b Batch) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if b.Epoch == "" {
		return ErrNoEpoch
	}
	if err := b.Limits.Validate(); err != nil {
		return err
	}
	var last uint64
	for _, m := range b.Messages {
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

// expiryMillis is when a message expires in Unix milliseconds, 0 for never.
func expiryMillis(m *message.Message) int64 {
	if m.ExpiresAt.IsZero() {
		return 0
	}
	return max(m.ExpiresAt.UnixMilli(), 1)
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
