// Package node holds what every transport of an edge shares: the backbone to
// publish on, the hub to subscribe through, the session store to read
// retained messages and replay buffers from, and the authenticator. Each
// transport (MQTT, SSE, WebSocket, HTTP) is a thin protocol mapping over it.
package node

import (
	"context"
	"errors"
	"log/slog"

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

// StateReader is what the edge reads from the session store. The session
// service is its only writer.
type StateReader interface {
	Retained(ctx context.Context, tenant, filter string) ([]*message.Message, error)
	Replay(ctx context.Context, tenant string, after uint64, max int) (store.ReplayPage, error)
	State(ctx context.Context, tenant string) (store.ReplayState, error)
}

// ErrInvalidTopic wraps a topic validation error on publish.
var ErrInvalidTopic = fault.New(fault.InvalidTopic, "invalid topic")

// Node is the shared core of one edge.
type Node struct {
	// ID names this edge in message origins ("<ID>/<client>").
	ID       string
	Backbone *backbone.Backbone
	Hub      *hub.Hub
	State    StateReader
	Auth     auth.Authenticator
	Log      *slog.Logger
	Limits   topic.Limits
	// Clients, if set, registers live connections so that a revoked
	// credential or a deleted tenant closes them (see Admit).
	Clients *Clients
	// Quota, if set, enforces tenants' connection, rate, payload and
	// subscription limits (see Admit and PublishQuota).
	Quota *limits.Limits
	// Shed, if set, refuses new connections while the edge holds its
	// maximum of them or is short of memory (see Admit).
	Shed *limits.Shedder
	// Telemetry, if set, records the edge's metrics and message spans.
	Telemetry *telemetry.Edge
}

// Publish validates m's topic and stores m on the backbone; a nil error
// means the message is durable and will be delivered.
func (n *Node) Publish(ctx context.Context, m *message.Message, opts backbone.PublishOptions) (message.Position, error) {
	if err := topic.ValidateName(m.Topic, n.Limits); err != nil {
		return message.Position{}, errors.Join(ErrInvalidTopic, err)
	}
	ctx, span := n.startPublish(ctx, m, &opts)
	pos, err := n.Backbone.Publish(ctx, m, opts)
	n.Telemetry.EndPublish(span, err)
	return pos, err
}

// PublishAsync validates m's topic and sends m to the backbone without
// waiting for the store; publishes sent from one goroutine are stored in
// that order. Wait on the result before acknowledging to the client.
func (n *Node) PublishAsync(ctx context.Context, m *message.Message, opts backbone.PublishOptions) (*backbone.Pending, error) {
	if err := topic.ValidateName(m.Topic, n.Limits); err != nil {
		return nil, errors.Join(ErrInvalidTopic, err)
	}
	ctx, span := n.startPublish(ctx, m, &opts)
	p, err := n.Backbone.PublishAsync(ctx, m, opts)
	n.Telemetry.EndPublish(span, err)
	return p, err
}

// Send validates m's topic and hands m to the backbone without asking for
// an acknowledgement (backbone.Send): the at-most-once publish of MQTT
// QoS 0. It keeps the order of PublishAsync calls from the same goroutine.
func (n *Node) Send(ctx context.Context, m *message.Message, opts backbone.PublishOptions) error {
	if err := topic.ValidateName(m.Topic, n.Limits); err != nil {
		return errors.Join(ErrInvalidTopic, err)
	}
	ctx, span := n.startPublish(ctx, m, &opts)
	err := n.Backbone.Send(ctx, m, opts)
	n.Telemetry.EndPublish(span, err)
	return err
}

// Origin returns the origin tag of a client of this edge.
func (n *Node) Origin(client string) string { return n.ID + "/" + client }
