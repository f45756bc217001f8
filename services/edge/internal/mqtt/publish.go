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

// handlePublish stores an inbound PUBLISH on the backbone without waiting
// for the store: the publish runs on its own goroutine, bounded by
// ReceiveMaximum per connection, after the previous publish of the same
// topic (MQTT's per-topic order). A QoS 1 PUBLISH is acknowledged once
// stored, in arrival order.
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
	if err := topic.ValidateName(m.Topic, c.n.Limits); err != nil {
		err = errors.Join(node.ErrInvalidTopic, err)
		if ack == nil {
			return err
		}
		c.completeAck(ack, err)
		return nil
	}

	select {
	case c.pubSlots <- struct{}{}:
	case <-ctx.Done():
		return ErrShuttingDown
	}
	c.mu.Lock()
	prev := c.tails[m.Topic]
	done := make(chan struct{})
	if c.tails == nil {
		c.tails = map[string]chan struct{}{}
	}
	c.tails[m.Topic] = done
	c.mu.Unlock()
	c.pubs.Add(1)
	go c.publish(ctx, m, prev, done, ack)
	return nil
}

// publish stores m once the previous publish of its topic (prev, if any)
// completed, then releases the next one (done) and acknowledges.
func (c *conn) publish(ctx context.Context, m *message.Message, prev, done chan struct{}, ack *pendingAck) {
	defer c.pubs.Done()
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
		}
	}
	_, err := c.n.Publish(ctx, m, backbone.PublishOptions{})
	close(done)
	c.mu.Lock()
	if c.tails[m.Topic] == done {
		delete(c.tails, m.Topic)
		if len(c.tails) == 0 {
			c.tails = nil
		}
	}
	c.mu.Unlock()
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
