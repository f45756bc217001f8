package mqtt

import (
	"bufio"
	"sync"
	"time"

	"github.com/heraldmq/herald/pkg/control"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// outbox is what a connection sends and the state sending moves, the
// lock domain that the writer, the feed's wake and the acknowledgements of
// outbound messages meet in, under mu: the control packets and deliveries
// queued, the feed the writer takes live messages from, the writer's
// lifecycle, the session's subscriptions and outbound QoS 1 and 2 state
// (sess) and its cursor. Nothing holding mu takes another domain's lock.
type outbox struct {
	mu sync.Mutex
	// closing: deliveries stop and the writer ends the connection once it
	// has written the control packets (the last of which may be a
	// DISCONNECT). done: no writer may start again.
	closing, done bool
	writing       bool
	writerDone    chan struct{}
	// lingering: the writer waits for work (writerLinger) on wake.
	lingering bool
	wake      chan struct{}
	control   [][]byte   // encoded packets, sent before deliveries
	queue     []delivery // deliveries ahead of the feed's, in order, from head
	head      int
	// feed is the connection's subscriptions and the bounded queue of its
	// live messages (the core's: node.Feed), made with its first
	// subscription; the writer takes from it after queue (takeLocked).
	feed *node.Feed
	sess *session

	// reasoned: the last packet carries a reason (a DISCONNECT or a
	// refusing CONNACK), so the close lingers; outputEnded: the output was
	// ended (halfClose, or closed).
	reasoned, outputEnded bool
	// ctl is the connection's interest in its control subject (takeovers
	// from other edges); echoed is set once its own announcement came back.
	ctl    *control.Sub
	echoed bool
	// hi is the highest stream sequence taken for the connection and epoch
	// its stream's epoch; floor, if floored, caps the cursor below queued
	// deliveries that were dropped when the connection began to close
	// (see persist.go).
	hi, floor uint64
	floored   bool
	// replaying is set while a resume's replay is read and not queued yet:
	// the cursor may not pass replayFrom, the loaded position, since the
	// live messages held meanwhile raise hi beyond messages the replay owes.
	replaying  bool
	replayFrom uint64
	epoch      string
	// exchangesUnsaved: a persistent session's outbound QoS 2 state has
	// moved in a way the writer must save before it sends on (a new QoS 2
	// PUBLISH taken, a PUBREL queued): see persist.go.
	exchangesUnsaved bool
}

// delivery is one message queued for a client.
type delivery struct {
	m      *message.Message
	qos    byte
	retain bool
	ids    []uint32 // subscription identifiers
	id     uint16
	dup    bool // a retransmission
	// live: a live message, taken from the feed (for telemetry).
	live bool
	// track: the delivery holds the session's cursor back until it is
	// written (QoS 0) or acknowledged (live and replayed messages, not
	// retained ones, which are older than the cursor).
	track bool
}

// maxBatch bounds the deliveries the writer takes per lock acquisition.
const maxBatch = 128

// handlePuback completes an outbound QoS 1 message. A PUBACK for anything
// else is ignored.
func (c *conn) handlePuback(id uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o := c.sess.outbound[id]; o != nil && o.d.qos == 1 {
		c.completeOutboundLocked(id)
	}
}

// handlePubrec answers the client's receipt of an outbound QoS 2 message
// with PUBREL, after which only PUBCOMP is awaited; a PUBREC with an error
// code ends the exchange. A PUBREC for an exchange the session does not
// hold is answered with PUBREL 0x92.
func (c *conn) handlePubrec(pk *packets.Packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.sess.outbound[pk.PacketID]
	var err error
	switch {
	case o == nil || o.d.qos != 2:
		err = errPacketIDNotFound
	case pk.ReasonCode >= 0x80:
		c.completeOutboundLocked(pk.PacketID)
		return
	default:
		o.released = true
		o.d.m = nil // only the identifier matters now
		c.changes.Add(1)
		// Durable before the PUBREL leaves: a resumed session then sends
		// PUBREL, never the PUBLISH again (persist.go).
		c.exchangesUnsaved = c.persistent
	}
	if !c.done {
		c.control = append(c.control, c.ackBytes(packets.Pubrel, pk.PacketID, err))
		c.kickLocked()
	}
}

// handlePubcomp completes an outbound QoS 2 message.
func (c *conn) handlePubcomp(id uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o := c.sess.outbound[id]; o != nil && o.released {
		c.completeOutboundLocked(id)
	}
}

// completeOutboundLocked frees the identifier and the in-flight slot of an
// outbound message. A persistent session remembers a QoS 2 message done
// with until its cursor passes it, so that a resume does not send it again.
func (c *conn) completeOutboundLocked(id uint16) {
	c.changes.Add(1)
	if o := c.sess.outbound[id]; o != nil && o.d.qos == 2 && o.seq > 0 && c.persistent {
		c.sess.complete(o.seq)
	}
	delete(c.sess.outbound, id)
	if len(c.sess.outbound) == 0 {
		c.sess.outbound = nil
	}
	c.kickLocked()
}

// releaseID frees the packet identifier of a delivery that was not sent.
func (c *conn) releaseID(d *delivery) {
	if d.qos > 0 {
		c.mu.Lock()
		c.completeOutboundLocked(d.id)
		c.mu.Unlock()
	}
}

// sendableLocked reports whether the writer has something to do.
func (c *conn) sendableLocked() bool {
	if c.closing || len(c.control) > 0 {
		return true
	}
	if c.head < len(c.queue) {
		d := &c.queue[c.head]
		return d.qos == 0 || d.dup || len(c.sess.outbound) < c.window
	}
	return c.feedOpenLocked() && c.feed.Ready(c.fitsWindowLocked)
}

// feedOpenLocked reports whether the writer may take the feed's live
// messages: they follow everything queued before them, and wait while a
// resume's replay is read and not queued yet.
func (c *conn) feedOpenLocked() bool {
	return c.feed != nil && !c.replaying && c.head == len(c.queue)
}

// fitsWindowLocked reports whether a live message can be sent now: QoS 0
// always, QoS 1 and 2 within the client's in-flight window.
func (c *conn) fitsWindowLocked(it *node.Item) bool {
	return it.QoS == 0 || len(c.sess.outbound) < c.window
}

// kickLocked starts the writer if it is not running and has work.
func (c *conn) kickLocked() {
	if c.done || !c.sendableLocked() {
		return
	}
	if c.writing {
		if c.lingering {
			c.lingering = false
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
		return
	}
	c.writing = true
	c.writerDone = make(chan struct{})
	go c.writeLoop(c.writerDone)
}

// takeLocked hands the writer the control packets and the deliveries the
// in-flight window allows — those queued here (retransmissions, a
// resume's replay, retained messages), then the feed's live messages —
// assigning packet identifiers to QoS 1 and 2 ones (retransmissions keep
// theirs and their place in the window).
func (c *conn) takeLocked(batch []delivery) ([][]byte, []delivery) {
	ctl := c.control
	c.control = nil
	if c.closing {
		return ctl, batch
	}
	for c.head < len(c.queue) && len(batch) < maxBatch {
		d := &c.queue[c.head]
		if d.qos > 0 && !d.dup {
			if len(c.sess.outbound) >= c.window {
				break
			}
			d.id = c.allocIDLocked(d)
			if d.qos == 2 && d.track && c.persistent {
				// Durable before the PUBLISH leaves (persist.go).
				c.exchangesUnsaved = true
			}
		}
		batch = append(batch, *d)
		*d = delivery{}
		c.head++
		c.changes.Add(1)
	}
	switch {
	case c.head == len(c.queue):
		// Keep a small backing array; let a burst's large one go.
		if cap(c.queue) > 256 {
			c.queue = nil
		} else {
			c.queue = c.queue[:0]
		}
		c.head = 0
	case c.head > 256 && c.head > len(c.queue)/2:
		c.queue = append(c.queue[:0], c.queue[c.head:]...)
		c.head = 0
	}
	if len(batch) < maxBatch && c.feedOpenLocked() {
		batch = c.takeFeedLocked(batch)
	}
	return ctl, batch
}

// takeFeedLocked takes the feed's live messages the in-flight window
// allows, in order.
func (c *conn) takeFeedLocked(batch []delivery) []delivery {
	taken := c.feed.Take(maxBatch-len(batch), func(it *node.Item) bool {
		if it.QoS > 0 && len(c.sess.outbound) >= c.window {
			return false
		}
		d := delivery{m: it.Msg, qos: it.QoS, retain: it.Retain, ids: it.IDs, live: true, track: true}
		c.hi = max(c.hi, d.m.Seq)
		if d.qos > 0 {
			d.id = c.allocIDLocked(&d)
			if d.qos == 2 && c.persistent {
				// Durable before the PUBLISH leaves (persist.go).
				c.exchangesUnsaved = true
			}
		}
		batch = append(batch, d)
		return true
	})
	if taken > 0 {
		c.changes.Add(uint64(taken))
	}
	return batch
}

// allocIDLocked assigns d a free packet identifier and records it in the
// session as in flight. The window (at most 65,535) keeps one free.
func (c *conn) allocIDLocked(d *delivery) uint16 {
	s := c.sess
	if s.outbound == nil {
		s.outbound = make(map[uint16]*outbound)
	}
	for {
		s.nextID++
		if _, used := s.outbound[s.nextID]; s.nextID != 0 && !used {
			s.sent++
			o := &outbound{d: *d, order: s.sent, seq: d.m.Seq}
			o.d.id = s.nextID
			o.d.live = false
			s.outbound[s.nextID] = o
			return s.nextID
		}
	}
}

// resumeLocked queues what a resumed session owes its client: its
// unacknowledged messages again, with DUP, and its PUBRELs.
func (c *conn) resumeLocked() {
	publishes, pubrels := c.sess.retransmissions()
	for _, id := range pubrels {
		c.control = append(c.control, c.ackBytes(packets.Pubrel, id, nil))
	}
	c.queue = append(c.queue, publishes...)
	c.kickLocked()
}

var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

// writerLinger is how long a writer with nothing to write waits for more
// before it ends. A connection that receives a steady flow keeps one
// writer goroutine (its stack grown once) instead of starting one per
// message; an idle connection has none once the linger is over.
const writerLinger = 100 * time.Millisecond

// writeLoop is the connection's only writer. It runs while there is
// something to write, and for writerLinger after, writing the queued
// packets through one buffer and flushing only when it runs out (so a
// burst leaves in few system calls), and ends the connection once it is
// closing and everything queued for the close is written.
func (c *conn) writeLoop(done chan struct{}) {
	defer close(done)
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(c.nc)
	defer func() {
		bw.Reset(nil)
		writers.Put(bw)
	}()
	var enc publishEncoder
	var batch []delivery
	var linger *time.Timer
	idle := false // lingered once with nothing arriving
	for {
		c.mu.Lock()
		var ctl [][]byte
		ctl, batch = c.takeLocked(batch[:0])
		closing := c.closing
		// Set only with something taken to write: saved once for the
		// whole batch, before any of it is written (persist.go).
		save := c.exchangesUnsaved
		c.exchangesUnsaved = false
		if len(ctl) == 0 && len(batch) == 0 {
			if bw.Buffered() > 0 {
				c.mu.Unlock()
				c.setWriteDeadline(closing)
				if err := bw.Flush(); err != nil {
					c.writeFailed()
					return
				}
				continue
			}
			if closing {
				c.writing = false
				c.done = true
				lingers := c.reasoned
				c.outputEnded = true
				c.mu.Unlock()
				c.endOutput(lingers)
				return
			}
			if idle {
				// An idle connection keeps none of its writer's state.
				c.writing = false
				c.writerDone, c.wake = nil, nil
				c.mu.Unlock()
				return
			}
			if c.wake == nil {
				c.wake = make(chan struct{}, 1)
			}
			c.lingering = true
			c.mu.Unlock()
			if linger == nil {
				linger = time.NewTimer(writerLinger)
				defer linger.Stop()
			} else {
				linger.Reset(writerLinger)
			}
			select {
			case <-c.wake:
			case <-linger.C:
				idle = true
			}
			c.mu.Lock()
			c.lingering = false
			c.mu.Unlock()
			continue
		}
		idle = false
		c.mu.Unlock()
		if save {
			c.saveExchanges()
		}
		c.setWriteDeadline(closing)
		for _, p := range ctl {
			if _, err := bw.Write(p); err != nil {
				c.writeFailed()
				return
			}
		}
		for i := range batch {
			if err := c.writeDelivery(bw, &enc, &batch[i]); err != nil {
				c.writeFailed()
				return
			}
			batch[i] = delivery{}
		}
	}
}

func (c *conn) setWriteDeadline(closing bool) {
	d := c.cfg.WriteTimeout
	if closing {
		d = min(d, closeGrace)
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(d))
}

// writeFailed ends the connection after a write error: the client is gone
// or stopped reading for WriteTimeout.
func (c *conn) writeFailed() {
	c.mu.Lock()
	c.writing = false
	c.done = true
	c.closing = true
	c.stopped.Store(true)
	c.outputEnded = true
	c.dropDeliveriesLocked()
	c.control = nil
	c.mu.Unlock()
	c.nc.Close()
}

// SeqProperty is the MQTT 5 user property that carries a delivered
// message's stream sequence (its position, as SSE and WebSocket clients
// see it), to a client that asked for it: MQTT requires user properties
// to be forwarded unaltered and in order [MQTT-3.3.2-17, MQTT-3.3.2-18],
// so nothing is added to a delivery unless the client asked. It asks with
// the CONNECT user property "herald-seq: 1" (answered with the same in
// CONNACK); every PUBLISH to that connection then ends its user
// properties with one herald-seq holding the sequence in decimal. A
// publisher's own properties, herald-seq included, are forwarded as they
// were sent, before it: the server's is always the last one of that name.
const SeqProperty = "herald-seq"

// TraceProperty is the MQTT 5 user property with which a client asks, at
// CONNECT ("herald-trace: 1", answered with the same in CONNACK), for the
// trace context of each sampled delivery: its PUBLISH then carries the
// edge's deliver span as its W3C traceparent user property, replacing the
// publisher's (as a W3C intermediary does) or added last. Other clients get
// the publisher's traceparent, if any, unaltered [MQTT-3.3.2-17].
const TraceProperty = "herald-trace"

// asked reports whether the user properties of a CONNECT ask for the
// server's property key (SeqProperty, TraceProperty) with the value "1".
func asked(user []packets.UserProperty, key string) bool {
	for _, u := range user {
		if u.Key == key && u.Val == "1" {
			return true
		}
	}
	return false
}

// writeDelivery encodes one PUBLISH. A message that expired in the queue,
// or that exceeds the client's Maximum Packet Size, is dropped as if it
// had been delivered [MQTT-3.1.2-25].
func (c *conn) writeDelivery(w *bufio.Writer, enc *publishEncoder, d *delivery) error {
	m := d.m
	p := publishOut{version: c.version, qos: d.qos, retain: d.retain, dup: d.dup, id: d.id, topic: m.Topic}
	if d.qos > 0 && d.id == 0 {
		c.releaseID(d) // [MQTT-2.2.1-2]; cannot happen: takeLocked assigns one
		return nil
	}
	if !m.ExpiresAt.IsZero() {
		left := time.Until(m.ExpiresAt)
		if left <= 0 {
			c.releaseID(d)
			return nil
		}
		p.expiry = uint32((left + time.Second - 1) / time.Second)
	}
	if c.version == 5 {
		p.ids = d.ids
		if c.traceProperty {
			p.traceParent = m.TraceParent
		}
		p.seq = c.seqProperty
	}
	var known bool
	if c.aliasesOut != nil {
		p.alias, known = c.aliasesOut.lookup(m.Topic)
		if known {
			p.topic = ""
		}
	}
	head := enc.header(&p, m)
	if c.maxOut > 0 && len(head)+len(m.Payload) > c.maxOut {
		c.releaseID(d)
		return nil
	}
	if c.aliasesOut != nil {
		c.aliasesOut.commit(m.Topic, known)
	}
	if _, err := w.Write(head); err != nil {
		return err
	}
	_, err := w.Write(m.Payload)
	if err == nil {
		c.n.Metrics().Delivered(telemetry.ProtocolMQTT, m, d.live)
	}
	return err
}
