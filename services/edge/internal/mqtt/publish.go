package mqtt

import (
	"context"
	"errors"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// pendingAck is an inbound QoS 1 publish waiting for its PUBACK.
type pendingAck struct {
	id   uint16
	done bool
	err  error
}

// handlePublish sends an inbound PUBLISH to the backbone without waiting
// for the store: the send happens here, on the reader goroutine, so the
// connection's publishes are stored in the order they arrived (across
// topics too); the confirmation is awaited on a goroutine, at most
// ReceiveMaximum of them per connection. A QoS 1 PUBLISH is acknowledged
// once stored, in arrival order.
func (c *conn) handlePublish(ctx context.Context, pk *packets.Packet) error {
	qos := pk.FixedHeader.Qos
	if qos == 2 {
		return ErrQoSNotSupported // we advertised Maximum QoS 1 [MQTT-3.3.1-4]
	}
	m := &message.Message{Tenant: c.tenant, Topic: pk.TopicName, Payload: pk.Payload, QoS: qos,
		Retain: pk.FixedHeader.Retain, Origin: c.origin}
	if c.version == 5 {
		if ttl := applyProperties(m, &pk.Properties); ttl > 0 {
			m.ExpiresAt = time.Now().Add(ttl)
		}
		if m.ResponseTopic != "" && topic.ValidateName(m.ResponseTopic, c.n.Limits) != nil {
			return errors.Join(ErrProtocol, errors.New("invalid response topic")) // [MQTT-3.3.2-14]
		}
	}

	var ack *pendingAck
	if qos == 1 {
		c.mu.Lock()
		if len(c.acks) >= c.cfg.ReceiveMaximum {
			c.mu.Unlock()
			return ErrReceiveMaximum // [MQTT-3.3.4-9]
		}
		ack = &pendingAck{id: pk.PacketID}
		c.acks = append(c.acks, ack)
		c.mu.Unlock()
	}

	select {
	case c.pubSlots <- struct{}{}:
	case <-ctx.Done():
		return ErrShuttingDown
	}
	pending, err := c.n.PublishAsync(ctx, m, backbone.PublishOptions{})
	if err != nil {
		<-c.pubSlots
		if ack == nil {
			if errors.Is(err, node.ErrInvalidTopic) {
				return err
			}
			c.n.Log.Warn("mqtt publish not stored", "client", c.clientID, "topic", m.Topic, "qos", m.QoS, "err", err)
			return nil
		}
		c.completeAck(ack, err)
		return nil
	}
	c.pubs.Add(1)
	go c.confirm(ctx, m, pending, ack)
	return nil
}

// confirm waits for the store of m and acknowledges it.
func (c *conn) confirm(ctx context.Context, m *message.Message, pending *backbone.Pending, ack *pendingAck) {
	defer c.pubs.Done()
	_, err := pending.Wait(ctx)
	<-c.pubSlots
	if err != nil {
		c.n.Log.Warn("mqtt publish not stored", "client", c.clientID, "topic", m.Topic, "qos", m.QoS, "err", err)
	}
	if ack != nil {
		c.completeAck(ack, err)
	}
}

// completeAck records the outcome of a QoS 1 publish and sends the PUBACKs
// that are now due: those of the completed publishes at the head of the
// arrival order [MQTT-4.6.0-2]. MQTT 3.1.1 has no negative PUBACK: a
// failure closes the connection, so that the client publishes again.
func (c *conn) completeAck(a *pendingAck, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a.done, a.err = true, err
	for len(c.acks) > 0 && c.acks[0].done {
		a := c.acks[0]
		c.acks[0] = nil
		c.acks = c.acks[1:]
		if a.err != nil && c.version != 5 {
			c.disconnectLocked(a.err)
			return
		}
		pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback},
			ProtocolVersion: c.version, PacketID: a.id, ReasonCode: reasonCode(a.err)}
		if !c.done {
			c.control = append(c.control, encodeBytes(pk))
		}
	}
	if len(c.acks) == 0 {
		c.acks = nil
	}
	c.kickLocked()
}

// applyProperties copies the MQTT 5 message properties of p onto m and
// returns the message expiry interval (0 for none).
func applyProperties(m *message.Message, p *packets.Properties) time.Duration {
	m.ContentType = p.ContentType
	m.PayloadUTF8 = p.PayloadFormatFlag && p.PayloadFormat == 1
	m.ResponseTopic = p.ResponseTopic
	m.CorrelationData = p.CorrelationData
	if len(p.User) > 0 {
		m.UserProperties = make([]message.UserProperty, len(p.User))
		for i, u := range p.User {
			m.UserProperties[i] = message.UserProperty{Key: u.Key, Value: u.Val}
		}
	}
	return time.Duration(p.MessageExpiryInterval) * time.Second
}
