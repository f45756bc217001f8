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
	// A subscriber of the tenant that keeps up but whose queue is filling
	// holds the publish back (pressure.go): slowed, not dropped later.
	if n.pressure.any.Load() > 0 {
		if err := n.pressure.wait(ctx, m.Tenant); err != nil {
			return nil, err
		}
	}
	if err := n.waitBacklog(ctx); err != nil {
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

// Accepted is a message that passed Publish's checks to be sent later: an
// MQTT will, judged at its CONNECT as the PUBLISH it will be, and published
// when its connection ends. What was accepted is delivered: it is not
// checked again (a credential's rates, say, when it fires).
type Accepted struct {
	n *Node
	m *message.Message
}

// Accept runs the checks of Publish on m for the caller and keeps it, to
// be published later.
func (n *Node) Accept(c Caller, m *message.Message) (*Accepted, error) {
	if err := n.check(c, m); err != nil {
		return nil, err
	}
	return &Accepted{n: n, m: m}, nil
}

// Kept is a message accepted earlier and kept since: the will of a
// session record, accepted at its connection's CONNECT (here or on
// another edge), which this edge publishes when a clean start ends that
// session. Only its topic is checked again; it goes to tenant's stream.
func (n *Node) Kept(tenant string, m *message.Message) (*Accepted, error) {
	if err := topic.ValidateName(m.Topic, n.limits); err != nil {
		return nil, errors.Join(ErrInvalidTopic, err)
	}
	m.Tenant = tenant
	return &Accepted{n: n, m: m}, nil
}

// Message returns the accepted message; changes to it (an expiry set when
// it fires) are published.
func (a *Accepted) Message() *message.Message { return a.m }

// Publish sends the accepted message as Publish does (BeforeSend aside).
func (a *Accepted) Publish(ctx context.Context, opts PublishOptions) (*Receipt, error) {
	return a.n.send(ctx, a.m, backbone.PublishOptions{MsgID: opts.MsgID, TraceParent: opts.TraceParent, Protocol: opts.Protocol}, opts.Wait)
}
