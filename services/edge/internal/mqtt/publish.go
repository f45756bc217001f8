package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/record"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// inflight is the pipeline of a client's publishes, the lock domain of
// their acknowledgements, under pubMu: the QoS 1 and 2 publishes read and
// not acknowledged yet, in arrival order (acks), those awaiting their
// store (confirms, for the confirmer goroutine), the session's open
// inbound QoS 2 exchanges (inbound) and the counts that bound them. An
// acknowledgement is queued for the writer under pubMu and then the
// outbox's mu, so that acknowledgements leave in order; nothing under the
// outbox's mu takes pubMu.
type inflight struct {
	pubMu sync.Mutex
	acks  []*pendingAck
	// received counts the inbound QoS 1 and 2 publishes not completed
	// (PUBACK, or PUBCOMP, not sent yet): bounded by ReceiveMaximum.
	received int
	// inbound are the QoS 2 messages received from the client whose
	// exchange is not over (no PUBREL yet), by packet identifier: a
	// retransmission of one is acknowledged again and not published again.
	// They are the session's, saved with it.
	inbound map[uint16]*inbound
	// exchanges counts the session's inbound QoS 2 messages so far
	// (qos2MsgID).
	exchanges uint64
	// confirms are the QoS 1 and 2 publishes awaiting their store, from
	// confirmHead, for the confirmer goroutine that runs while there are
	// any (confirming).
	confirms    []confirmation
	confirmHead int
	confirming  bool

	// Not under pubMu. pubSlots bounds the connection's publishes in
	// flight to the backbone; ackRoom is signalled when a publish
	// acknowledgement leaves acks (see waitAckRoom); pubs counts the
	// publishes not settled; unpaced counts the QoS 0 publishes sent since
	// the last one that asked for an acknowledgement (the reader's alone).
	pubSlots chan struct{}
	ackRoom  chan struct{}
	pubs     sync.WaitGroup
	unpaced  int
}

// reset forgets the inbound state of a session about to be opened (again).
func (in *inflight) reset() {
	in.pubMu.Lock()
	defer in.pubMu.Unlock()
	in.inbound, in.exchanges, in.received = nil, 0, 0
}

// record returns the open inbound QoS 2 exchanges as the session record
// keeps them.
func (in *inflight) record() []record.Inflight {
	in.pubMu.Lock()
	defer in.pubMu.Unlock()
	var out []record.Inflight
	for id, e := range in.inbound {
		out = append(out, record.Inflight{PacketID: id, Phase: record.AwaitPubrel, MsgID: e.msgID})
	}
	return out
}

// restore takes back the open inbound QoS 2 exchanges of a loaded
// session: received before, they count against Receive Maximum until
// their PUBREL, which may come at once (the client saw the PUBREC).
func (in *inflight) restore(rec *record.Session) {
	in.pubMu.Lock()
	defer in.pubMu.Unlock()
	for _, f := range rec.Inflight {
		if f.Phase != record.AwaitPubrel {
			continue
		}
		if in.inbound == nil {
			in.inbound = map[uint16]*inbound{}
		}
		in.inbound[f.PacketID] = &inbound{msgID: f.MsgID, stored: true, resumed: true}
		in.received++
	}
}

// pendingAck is an inbound QoS 1 or 2 publish waiting for its store, then
// for its PUBACK or PUBREC to be sent.
type pendingAck struct {
	id   uint16
	qos  byte
	in   *inbound // QoS 2: the session's entry
	done bool
	err  error
}

// handlePublish sends an inbound PUBLISH to the backbone without waiting
// for the store: the send happens here, on the reader goroutine, so the
// connection's publishes are stored in the order they arrived (across
// topics too); the confirmation is awaited on a goroutine, at most
// ReceiveMaximum of them per connection. A QoS 1 PUBLISH is acknowledged
// (PUBACK) and a QoS 2 PUBLISH received (PUBREC) once stored, in arrival
// order. A QoS 2 PUBLISH whose exchange is still open (no PUBREL yet) is a
// retransmission: it is not published again.
func (c *conn) handlePublish(ctx context.Context, pk *packets.Packet) error {
	qos := pk.FixedHeader.Qos
	name := pk.TopicName
	if c.version == 5 && pk.Properties.TopicAliasFlag {
		var err error
		if name, err = c.resolveAlias(name, pk.Properties.TopicAlias); err != nil {
			return err
		}
	}
	m := &message.Message{Tenant: c.tenant, Topic: name, Payload: pk.Payload, QoS: qos,
		Retain: pk.FixedHeader.Retain, Origin: c.origin}
	if c.version == 5 {
		if ttl := applyProperties(m, &pk.Properties); ttl > 0 {
			m.ExpiresAt = time.Now().Add(ttl)
		}
		if m.ResponseTopic != "" && topic.ValidateName(m.ResponseTopic, c.n.TopicLimits()) != nil {
			return errors.Join(ErrProtocol, errors.New("invalid response topic")) // [MQTT-3.3.2-14]
		}
	}

	var ack *pendingAck
	opts := node.PublishOptions{Protocol: telemetry.ProtocolMQTT}
	if qos > 0 {
		c.pubMu.Lock()
		if qos == 2 {
			if in := c.inbound[pk.PacketID]; in != nil && in.resumed {
				// Received by an earlier connection, perhaps on an edge that
				// died before storing it: published again under the same id,
				// which JetStream drops if it has it, then PUBREC.
				in.resumed, in.stored = false, false
				ack = &pendingAck{id: pk.PacketID, qos: qos, in: in}
				opts.MsgID = in.msgID
				c.acks = append(c.acks, ack)
				c.pubMu.Unlock()
				return c.publishPending(ctx, m, opts, ack)
			} else if in != nil {
				// A retransmission [MQTT-4.3.3-10]: received again, not
				// stored again. Its PUBREC follows the store if it is still
				// running; otherwise it is sent again now.
				if in.stored {
					c.sendControl(c.ackBytes(packets.Pubrec, pk.PacketID, nil))
				}
				c.pubMu.Unlock()
				return nil
			}
		}
		if c.version == 5 && c.received >= c.cfg.ReceiveMaximum {
			c.pubMu.Unlock()
			return ErrReceiveMaximum // [MQTT-3.3.4-9]
		}
		c.received++
		ack = &pendingAck{id: pk.PacketID, qos: qos}
		if qos == 2 {
			c.exchanges++
			ack.in = &inbound{msgID: qos2MsgID(c.tenant, c.sess, pk.PacketID, c.exchanges)}
			if c.inbound == nil {
				c.inbound = make(map[uint16]*inbound)
			}
			c.inbound[pk.PacketID] = ack.in
			opts.MsgID = ack.in.msgID
		}
		c.acks = append(c.acks, ack)
		c.changes.Add(1)
		c.pubMu.Unlock()
		if qos == 2 && c.persistent {
			// The exchange's message id is saved once the publish passed
			// its checks and before the message is stored: if this edge
			// dies between the two, the client's retransmission, on
			// whatever edge, is published again under the same id, which
			// JetStream drops. Saved only after the store, a crash in
			// between stored it twice.
			opts.BeforeSend = func() error {
				if err := c.saveSession(ctx); err != nil {
					return fmt.Errorf("%w: session not saved: %w", ErrServerUnavailable, err)
				}
				return nil
			}
		}
	}
	return c.publishPending(ctx, m, opts, ack)
}

// refuseQoS0 handles a refused QoS 0 publish, which has no acknowledgement
// to refuse in. Outside the client's capabilities it is dropped and
// counted (as MQTT 3.1.1 brokers do; the connection stays usable for what
// it may do). Over a rate or payload limit the connection is closed,
// DISCONNECT 0x96 (message rate too high) or 0x95 (packet too large), so
// that the client learns to slow down.
func (c *conn) refuseQoS0(m *message.Message, deny error) error {
	switch fault.KindOf(deny) {
	case fault.Quota:
		return errors.Join(errQoS0RateTooHigh, deny)
	case fault.PayloadQuota:
		return errors.Join(ErrPacketTooLarge, deny)
	case fault.Forbidden:
		c.s.deniedQoS0.Add(1)
		c.n.Logger().Debug("mqtt QoS 0 publish dropped: not authorized", "client", c.clientID, "topic", m.Topic)
		return nil
	case fault.InvalidTopic:
		return deny
	}
	// Not stored (the backbone could not take it): at most once.
	c.n.Logger().Warn("mqtt publish not stored", "client", c.clientID, "topic", m.Topic, "qos", m.QoS, "err", deny)
	return nil
}

// publishPending publishes m through the edge's core, which checks it
// (topic, capabilities, limits) before it sends it. A QoS 0 message (ack
// nil) is handed over without an acknowledgement (node.WaitNothing): at
// most once, with nothing to wait for, except one in qos0Pace, which paces
// the connection; a refused one is handled by refuseQoS0. A QoS 1 or 2
// message (and a pacing one) is sent without waiting and its confirmation
// queued for the connection's confirmer, which waits for the stores in
// arrival order (the order its acknowledgements must leave in anyway) and
// acknowledges each; a refused one is acknowledged with its reason, in
// its turn.
func (c *conn) publishPending(ctx context.Context, m *message.Message, opts node.PublishOptions, ack *pendingAck) error {
	caller := c.adm.Caller()
	if ack == nil {
		if c.unpaced++; c.unpaced < qos0Pace {
			opts.Wait = node.WaitNothing
			if _, err := c.n.Publish(ctx, caller, m, opts); err != nil {
				return c.refuseQoS0(m, err)
			}
			return nil
		}
		// Every qos0Pace-th QoS 0 message asks for an acknowledgement,
		// and takes an in-flight slot until it has it: as a connection's
		// messages are stored in order, its acknowledgement tells that
		// the ones before it were taken too. So a QoS 0 publisher is held
		// to at most ReceiveMaximum × qos0Pace messages ahead of the
		// stream, instead of filling JetStream's ingest queue until it
		// drops messages, while paying one round trip per qos0Pace.
		c.unpaced = 0
	}
	select {
	case c.pubSlots <- struct{}{}:
	case <-ctx.Done():
		return ErrShuttingDown
	}
	pending, err := c.n.Publish(ctx, caller, m, opts)
	if err != nil {
		<-c.pubSlots
		if ack == nil {
			return c.refuseQoS0(m, err)
		}
		c.completeAck(ack, err)
		return nil
	}
	c.pubs.Add(1)
	c.pubMu.Lock()
	c.confirms = append(c.confirms, confirmation{m: m, pending: pending, ack: ack})
	start := !c.confirming
	c.confirming = true
	c.pubMu.Unlock()
	if start {
		go c.confirmLoop(ctx)
	}
	return nil
}

// qos0Pace is how many QoS 0 messages of a connection go to the backbone
// per acknowledged one (see publishPending).
const qos0Pace = 16

// confirmation is a publish sent to the backbone whose store is awaited:
// QoS 1 or 2, or a QoS 0 message that paces its connection (ack nil).
type confirmation struct {
	m       *message.Message
	pending *node.Receipt
	ack     *pendingAck
}

// confirmLoop is the connection's confirmer: it runs while publishes
// await their store, one goroutine for all of them rather than one each.
func (c *conn) confirmLoop(ctx context.Context) {
	for {
		c.pubMu.Lock()
		if c.confirmHead == len(c.confirms) {
			clear(c.confirms)
			c.confirms, c.confirmHead = c.confirms[:0], 0
			c.confirming = false
			c.pubMu.Unlock()
			return
		}
		j := c.confirms[c.confirmHead]
		c.confirms[c.confirmHead] = confirmation{}
		c.confirmHead++
		c.pubMu.Unlock()
		c.confirm(ctx, j.m, j.pending, j.ack)
	}
}

// confirm waits for the store of m and acknowledges it.
func (c *conn) confirm(ctx context.Context, m *message.Message, pending *node.Receipt, ack *pendingAck) {
	defer c.pubs.Done()
	_, err := pending.Wait(ctx)
	<-c.pubSlots
	if err != nil {
		c.n.Logger().Warn("mqtt publish not stored", "client", c.clientID, "topic", m.Topic, "qos", m.QoS, "err", err)
	}
	if ack == nil {
		return // a QoS 0 message that paced the connection
	}
	c.completeAck(ack, err)
}

// completeAck records the outcome of a QoS 1 or 2 publish and sends the
// PUBACKs and PUBRECs that are now due: those of the completed publishes
// at the head of the arrival order [MQTT-4.6.0-2, MQTT-4.6.0-3]. A stored
// QoS 2 message stays in the session until its PUBREL. MQTT 3.1.1 has no
// negative acknowledgement: a failure closes the connection, so that the
// client publishes again.
func (c *conn) completeAck(a *pendingAck, err error) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	a.done, a.err = true, err
	for len(c.acks) > 0 && c.acks[0].done {
		a := c.acks[0]
		c.acks[0] = nil
		c.acks = c.acks[1:]
		if a.err != nil && c.version != 5 {
			c.disconnectLocked(a.err, "")
			return
		}
		typ := packets.Puback
		switch {
		case a.qos == 1:
			c.received--
		case a.err == nil:
			typ = packets.Pubrec
			a.in.stored = true
		default:
			// A PUBREC with an error code ends the exchange (MQTT 5 §4.3.3):
			// the client may reuse the identifier.
			typ = packets.Pubrec
			delete(c.inbound, a.id)
			c.received--
		}
		if !c.done {
			c.control = append(c.control, c.ackBytes(typ, a.id, a.err))
		}
	}
	if len(c.acks) == 0 {
		c.acks = nil
	}
	select {
	case c.ackRoom <- struct{}{}:
	default:
	}
	c.kickLocked()
}

// waitAckRoom holds the reader of an MQTT 3.1.1 connection while
// ReceiveMaximum of its publishes await their store. 3.1.1 has no receive
// maximum a client could respect, so the server must not disconnect it for
// sending more: it stops reading instead, and TCP flow control slows the
// client down.
func (c *conn) waitAckRoom(ctx context.Context) {
	for {
		c.pubMu.Lock()
		full := len(c.acks) >= c.cfg.ReceiveMaximum && !c.stopped.Load()
		c.pubMu.Unlock()
		if !full {
			return
		}
		select {
		case <-c.ackRoom:
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond): // notices a close too
		}
	}
}

// handlePubrel completes an inbound QoS 2 exchange: the message leaves the
// session and PUBCOMP is sent. A PUBREL for an identifier the session does
// not hold is answered with PUBCOMP 0x92 (3.1.1: PUBCOMP), as a client
// that lost the PUBCOMP sends PUBREL again.
func (c *conn) handlePubrel(id uint16) error {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	in := c.inbound[id]
	var err error
	switch {
	case in == nil:
		err = errPacketIDNotFound
	case !in.stored:
		// The client cannot have seen a PUBREC yet.
		return errors.Join(ErrProtocol, errors.New("PUBREL before PUBREC"))
	default:
		delete(c.inbound, id)
		c.received--
		c.changes.Add(1)
	}
	c.sendControl(c.ackBytes(packets.Pubcomp, id, err))
	return nil
}

// ackBytes encodes a PUBACK, PUBREC, PUBREL or PUBCOMP reporting err (MQTT
// 5: its reason code and, if the client accepts problem information, its
// reason string).
func (c *conn) ackBytes(typ byte, id uint16, err error) []byte {
	pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, ProtocolVersion: c.version, PacketID: id}
	if c.version == 5 {
		pk.ReasonCode = reasonIn(err, typ)
		pk.Mods = packets.Mods{MaxSize: uint32(c.maxOut), DisallowProblemInfo: !c.problemInfo}
		pk.Properties.ReasonString = reasonString(err)
	}
	return encodeBytes(pk)
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
