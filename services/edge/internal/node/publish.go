package node

import (
	"context"
	"errors"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/auth"
)

// Caller is who a publish acts for: an authenticated identity, and the
// admitted connection it comes on, if any.
type Caller struct {
	Identity auth.Identity
	// Conn is the connection's admission: its own rates apply with its
	// tenant's. Nil for a request outside any connection (HTTP publish):
	// the tenant's rates and payload limit apply.
	Conn *Admission
}

// Wait says how long Publish waits for the store.
type Wait int

const (
	// WaitNone sends without waiting: the Receipt's Wait gives the
	// position once the backbone stored the message. Publishes sent from
	// one goroutine are stored in the order sent.
	WaitNone Wait = iota
	// WaitStored returns once the backbone stored the message (retrying
	// once on a stream that vanished); the Receipt is settled.
	WaitStored
	// WaitNothing asks the backbone for no acknowledgement at all (MQTT
	// QoS 0, at most once): the Receipt is nil, and a message the backbone
	// then fails to store is lost without notice. Its order with the
	// sender's other publishes is kept.
	WaitNothing
)

// PublishOptions refine one publish.
type PublishOptions struct {
	// Wait is how long Publish waits; default WaitNone.
	Wait Wait
	// MsgID, when set, makes the backbone drop a second publish with the
	// same id inside its duplicate window (MQTT QoS 2, wills).
	MsgID string
	// TraceParent is the client's W3C trace context, the publish span's
	// parent.
	TraceParent string
	// Protocol names the ingress protocol for metrics and spans
	// (telemetry.ProtocolMQTT, ...).
	Protocol string
	// BeforeSend, if set, is called once the publish passed every check,
	// just before it is sent; an error stops it (nothing is sent). MQTT
	// saves a QoS 2 exchange's message id there.
	BeforeSend func() error
}

// Receipt is a publish handed to the backbone: Wait returns its position
// once stored, or why it was not. A nil Receipt (WaitNothing) waits for
// nothing.
type Receipt = backbone.Pending

// Publish is the edge's one publish path. It validates m's topic (an error
// wrapping ErrInvalidTopic), authorizes the caller (auth.ErrForbidden),
// checks the caller's limits (limits.ErrRateLimited,
// limits.ErrPayloadTooLarge), records the message and starts its publish
// span, and sends m to the caller's tenant stream. m.Tenant is set to the
// caller's tenant: no client publishes into another. A nil error means m
// was sent (or stored, with WaitStored): wait on the Receipt before
// acknowledging to the client.
func (n *Node) Publish(ctx context.Context, c Caller, m *message.Message, opts PublishOptions) (*Receipt, error) {
	if err := n.check(c, m); err != nil {
		return nil, err
	}
	if opts.BeforeSend != nil {
		if err := opts.BeforeSend(); err != nil {
			return nil, err
		}
	}
	return n.send(ctx, m, backbone.PublishOptions{MsgID: opts.MsgID, TraceParent: opts.TraceParent, Protocol: opts.Protocol}, opts.Wait)
}

// send records m, starts its publish span and hands it to the backbone.
func (n *Node) send(ctx context.Context, m *message.Message, opts backbone.PublishOptions, wait Wait) (*Receipt, error) {
	ctx, span := n.startPublish(ctx, m, &opts)
	var r *Receipt
	var err error
	switch wait {
	case WaitStored:
		var pos message.Position
		if pos, err = n.stream.Publish(ctx, m, opts); err == nil {
			r = backbone.Settled(pos, nil)
		}
	case WaitNothing:
		err = n.stream.Send(ctx, m, opts)
	default:
		r, err = n.stream.PublishAsync(ctx, m, opts)
	}
	n.tel.EndPublish(span, err)
	return r, err
}

// check runs the checks of a publish, in the order a client is told about
// them: the topic, the capabilities, then the limits (which take from the
// rate buckets, so a refused publish spends nothing).
func (n *Node) check(c Caller, m *message.Message) error {
	m.Tenant = c.Identity.Tenant
	if err := topic.ValidateName(m.Topic, n.limits); err != nil {
		return errors.Join(ErrInvalidTopic, err)
	}
	if err := AuthorizePublish(c.Identity, m.Topic); err != nil {
		return err
	}
	if c.Conn != nil {
		return c.Conn.Publish(len(m.Payload))
	}
	if n.quota != nil {
		return n.quota.Publish(c.Identity.Tenant, len(m.Payload))
	}
	return nil
}

// PublishChecked stores m on the backbone without the caller checks of
// Publish (the topic is validated): for the MQTT server's wills, judged at
// CONNECT already, until it moves onto Publish.
func (n *Node) PublishChecked(ctx context.Context, m *message.Message, opts backbone.PublishOptions) (message.Position, error) {
	r, err := n.legacyPublish(ctx, m, opts, WaitStored)
	if err != nil {
		return message.Position{}, err
	}
	return r.Wait(ctx)
}

// PublishAsync is PublishChecked without waiting for the store, for the
// MQTT server until it moves onto Publish.
func (n *Node) PublishAsync(ctx context.Context, m *message.Message, opts backbone.PublishOptions) (*backbone.Pending, error) {
	return n.legacyPublish(ctx, m, opts, WaitNone)
}

// Send is PublishChecked without an acknowledgement, for the MQTT server
// until it moves onto Publish.
func (n *Node) Send(ctx context.Context, m *message.Message, opts backbone.PublishOptions) error {
	_, err := n.legacyPublish(ctx, m, opts, WaitNothing)
	return err
}

func (n *Node) legacyPublish(ctx context.Context, m *message.Message, opts backbone.PublishOptions, wait Wait) (*Receipt, error) {
	n.adoptLegacy()
	if err := topic.ValidateName(m.Topic, n.limits); err != nil {
		return nil, errors.Join(ErrInvalidTopic, err)
	}
	return n.send(ctx, m, opts, wait)
}
