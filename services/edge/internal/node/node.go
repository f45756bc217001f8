// Package node is the edge's core: what every transport of an edge shares,
// behind two verbs.
//
//   - Publish (publish.go) takes a message from a client: it validates the
//     topic, authorizes the publisher, applies its admission's limits, starts
//     the message's trace and stores it on the backbone. It is the one
//     publish path of the edge.
//   - Subscribe (feed.go) gives a client a Feed: it validates and authorizes
//     the filters, takes live interest in them through the hub, replays what
//     the client is owed from the session store and the stream's tail,
//     hands over to live messages without duplicates, stamps every message
//     with its position (epoch and sequence), holds what the client has not
//     read in a bounded queue under a documented overflow policy, and stops
//     delivering the moment the client's credential is revoked. It is where
//     a subscriber's replay happens, for every transport.
//
// The transports (MQTT, SSE, the WebSocket protocol, long-poll, HTTP
// publish) are decoders of publishes and encoders of Feeds: framing, their
// protocol's rules and its reason codes. None of them reaches the backbone,
// the hub or the store; the core's state is its own. Admit (admission.go)
// counts and registers a connection for revocation and limits.
package node

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/hub"
	"github.com/heraldmq/herald/services/edge/internal/limits"
)

// Stream is the backbone as the core uses it: one append-only stream per
// tenant, each message at a position (the stream's epoch and the message's
// sequence). Publishes sent from one goroutine are stored in the order
// sent, whichever method sends them; a nil error from Publish, or from a
// Pending's Wait, means the message is durable. Range reads back, in stream
// order, exactly the stored messages matching a filter in a span of
// sequences. Errors are classified (pkg/fault): backbone.ErrNoStream for a
// tenant without a stream, backbone.ErrBadTenant for an invalid tenant id,
// backbone.ErrUnavailable and ErrNotStored otherwise. backbone.Backbone
// (JetStream) and backbone.Memory implement it; both pass the conformance
// suite of pkg/backbone/backbonetest.
type Stream interface {
	EnsureTenant(ctx context.Context, tenant string) (epoch string, err error)
	Epoch(ctx context.Context, tenant string) (string, error)
	State(ctx context.Context, tenant string) (backbone.StreamState, error)
	Publish(ctx context.Context, m *message.Message, opts backbone.PublishOptions) (message.Position, error)
	PublishAsync(ctx context.Context, m *message.Message, opts backbone.PublishOptions) (*backbone.Pending, error)
	Send(ctx context.Context, m *message.Message, opts backbone.PublishOptions) error
	Range(ctx context.Context, tenant string, filters []string, after, upto uint64, fn func(*message.Message) error) error
}

// StateReader is what the edge reads from the session store: retained
// messages and replay buffers. The session service is its only writer.
type StateReader interface {
	Retained(ctx context.Context, tenant, filter string) ([]*message.Message, error)
	Replay(ctx context.Context, tenant string, after uint64, max int) (store.ReplayPage, error)
	State(ctx context.Context, tenant string) (store.ReplayState, error)
}

// ErrInvalidTopic wraps a topic validation error on publish.
var ErrInvalidTopic = fault.New(fault.InvalidTopic, "invalid topic")

// Config configures a Node.
type Config struct {
	// ID names this edge in message origins ("<ID>/<client>").
	ID string
	// Stream is the backbone's tenant streams; required.
	Stream Stream
	// Interest is the backbone's live interest, through which the hub
	// watches the filters of the edge's subscriptions; required.
	Interest hub.Interest
	// State reads the session store; nil: replays read the stream only.
	State StateReader
	// Auth authenticates clients; required.
	Auth auth.Authenticator
	// Log is the edge's logger; default slog.Default().
	Log *slog.Logger
	// Limits bound topic names and filters; zero means topic's defaults.
	Limits topic.Limits
	// Clients, if set, registers live connections so that a revoked
	// credential or a deleted tenant closes them (see Admit).
	Clients *Clients
	// Quota, if set, enforces tenants' connection, rate, payload and
	// subscription limits.
	Quota *limits.Limits
	// Shed, if set, refuses new connections while the edge holds its
	// maximum of them or is short of memory.
	Shed *limits.Shedder
	// Telemetry, if set, records the edge's metrics and message spans.
	Telemetry *telemetry.Edge
	// SlowAfter is how long a subscriber's full queue may hold its
	// tenant's publishers back (pressure.go) before the subscriber counts
	// as slow and its own overflow policy applies; 0: DefaultSlowAfter;
	// negative: never (publishers are not slowed, full queues overflow at
	// once). It also scales what one subscriber and one tenant may cost
	// the edge's other deliveries: a full feed whose writer takes nothing
	// for SlowAfter/20 is slow at once, and the deliveries of one tenant
	// wait for room at most SlowAfter/10 in every SlowAfter/2 (pressure.go,
	// waits.go).
	SlowAfter time.Duration
}

// Node is the core of one edge. Its state is its own: transports use its
// methods.
type Node struct {
	id      string
	stream  Stream
	hub     *hub.Hub
	state   StateReader
	auth    auth.Authenticator
	log     *slog.Logger
	limits  topic.Limits
	clients *Clients
	quota   *limits.Limits
	shed    *limits.Shedder
	tel     *telemetry.Edge

	slowAfter time.Duration
	stall     time.Duration // see stallDivisor
	pressure  pressure
	waits     waits
	backlog   Backlog // nil: the interest does not say
}

// New returns the core of an edge.
func New(cfg Config) (*Node, error) {
	if cfg.Stream == nil || cfg.Interest == nil || cfg.Auth == nil {
		return nil, errors.New("node: a stream, live interest and an authenticator are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	n := &Node{id: cfg.ID, stream: cfg.Stream, hub: hub.New(cfg.Interest), state: cfg.State, auth: cfg.Auth,
		log: cfg.Log, limits: cfg.Limits, clients: cfg.Clients, quota: cfg.Quota, shed: cfg.Shed, tel: cfg.Telemetry,
		slowAfter: cfg.SlowAfter}
	if n.slowAfter == 0 {
		n.slowAfter = DefaultSlowAfter
	}
	n.stall, n.waits = n.slowAfter/stallDivisor, newWaits(n.slowAfter)
	n.backlog, _ = cfg.Interest.(Backlog)
	return n, nil
}

// EdgeID returns the edge's id.
func (n *Node) EdgeID() string { return n.id }

// Logger returns the edge's logger.
func (n *Node) Logger() *slog.Logger { return n.log }

// TopicLimits returns the bounds of topic names and filters.
func (n *Node) TopicLimits() topic.Limits { return n.limits }

// Metrics returns the edge's metrics and spans (nil-safe methods); nil
// without telemetry.
func (n *Node) Metrics() *telemetry.Edge { return n.tel }

// Authenticate identifies a client by the credentials it presented.
func (n *Node) Authenticate(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
	return n.auth.Authenticate(ctx, c)
}

// Origin returns the origin tag of a client of this edge.
func (n *Node) Origin(client string) string {
	return n.id + "/" + client
}

// Dispatch hands a live message to the edge's subscribers and returns how
// many it reached; the backbone's live interest calls it, from its one
// dispatching goroutine, in stream order.
func (n *Node) Dispatch(m *message.Message) int { return n.hub.Dispatch(m) }

// Subscriptions returns the number of live subscriptions on the edge.
func (n *Node) Subscriptions() int { return n.hub.Len() }

// Epoch returns the epoch of the tenant's stream, which is created if it
// does not exist: the session service looks after the tenants whose
// stream exists, so a transport that keeps state for a tenant (an MQTT
// session) makes sure of it first.
func (n *Node) Epoch(ctx context.Context, tenant string) (string, error) {
	return n.stream.EnsureTenant(ctx, tenant)
}

// Head returns the position of the tenant stream's end: what a client
// that wants only what comes next starts from. The stream is created if
// it does not exist, so that the position has an epoch.
func (n *Node) Head(ctx context.Context, tenant string) (message.Position, error) {
	if _, err := n.stream.EnsureTenant(ctx, tenant); err != nil {
		return message.Position{}, err
	}
	st, err := n.stream.State(ctx, tenant)
	if err != nil {
		return message.Position{}, err
	}
	return message.Position{Epoch: st.Epoch, Seq: st.LastSeq}, nil
}
