package mqtt

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/hub"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// subscription is one filter of a connection.
type subscription struct {
	hs hub.Subscription
	// retainedSeqs are the sequences of the retained messages sent for
	// this subscription, by topic, until the live stream has passed them
	// (retainedMax): a live delivery of the same or an older message of
	// the topic is a duplicate.
	retainedSeqs map[string]uint64
	retainedMax  uint64
	// retainHandling is the subscription's option, kept with a persistent
	// session.
	retainHandling byte
}

// retainedDup reports whether live message m was already sent, or
// superseded, by the retained pass.
func (s *subscription) retainedDup(m *message.Message) bool {
	if s.retainedSeqs == nil {
		return false
	}
	if m.Seq > s.retainedMax {
		// Live messages of a tenant arrive in stream order: every later
		// one is newer than every retained message sent.
		s.retainedSeqs = nil
		return false
	}
	seq, ok := s.retainedSeqs[m.Topic]
	return ok && m.Seq <= seq
}

// granted is a subscription made by one SUBSCRIBE, for its retained pass.
type granted struct {
	sub            *subscription
	retainHandling byte
	isNew          bool
}

// handleSubscribe takes live interest in each filter, sends the SUBACK,
// then the matching retained messages, then the live messages that arrived
// meanwhile, minus those the retained pass already sent. Live deliveries
// are held for the duration, so that nothing of the new subscriptions
// precedes the SUBACK [MQTT-3.8.4-1] and retained messages precede the
// live ones.
func (c *conn) handleSubscribe(ctx context.Context, pk *packets.Packet) error {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()

	codes := make([]byte, len(pk.Filters))
	var gs []granted
	var firstErr error
	for i, f := range pk.Filters {
		g, err := c.subscribe(ctx, f)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", f.Filter, err)
			}
			codes[i] = reasonIn(err, packets.Suback)
			if c.version != 5 {
				codes[i] = 0x80 // 3.1.1 knows one failure code
			}
			continue
		}
		codes[i] = g.sub.hs.QoS
		gs = append(gs, g)
	}
	suback := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback},
		ProtocolVersion: c.version, PacketID: pk.PacketID, ReasonCodes: codes,
		Mods: packets.Mods{MaxSize: uint32(c.maxOut), DisallowProblemInfo: !c.problemInfo}}
	if c.version == 5 {
		suback.Properties.ReasonString = reasonString(firstErr)
	}
	c.sendControl(encodeBytes(suback))
	if c.expiry > 0 && len(gs) > 0 {
		c.advanceCursor(ctx)
	}
	c.sendRetained(ctx, gs)
	c.mu.Lock()
	c.releaseLocked()
	c.mu.Unlock()
	return nil
}

// subscribe registers one filter with the hub, replacing the connection's
// subscription of the same filter, and returns once it is live.
func (c *conn) subscribe(ctx context.Context, f packets.Subscription) (granted, error) {
	group, filter, err := parseShared(f.Filter)
	if err != nil {
		return granted{}, err
	}
	if err := topic.ValidateFilter(filter, c.n.Limits); err != nil {
		return granted{}, err
	}
	if err := node.AuthorizeSubscribe(c.id, f.Filter); err != nil {
		return granted{}, err // SUBACK 0x87
	}
	c.mu.Lock()
	held := len(c.sess.subs)
	if c.sess.subs[f.Filter] == nil {
		held++
	}
	c.mu.Unlock()
	if err := c.adm.Subscriptions(held); err != nil {
		return granted{}, err // SUBACK 0x97
	}
	sub := &subscription{retainHandling: f.RetainHandling, hs: hub.Subscription{Tenant: c.tenant, Filter: filter, Group: group, Subscriber: c,
		QoS: min(f.Qos, 2), NoLocal: f.NoLocal, RetainAsPublished: f.RetainAsPublished, ID: uint32(f.Identifier)}}
	if err := c.n.Hub.Subscribe(ctx, &sub.hs); err != nil {
		c.n.Log.Warn("mqtt subscribe failed", "client", c.clientID, "filter", f.Filter, "err", err)
		return granted{}, err
	}
	c.mu.Lock()
	old := c.sess.subs[f.Filter]
	if c.sess.subs == nil {
		c.sess.subs = map[string]*subscription{}
	}
	c.sess.subs[f.Filter] = sub
	c.changes++
	c.mu.Unlock()
	if old != nil {
		// The new subscription took over first: no message falls between.
		c.n.Hub.Unsubscribe(&old.hs) // [MQTT-3.8.4-3]
	}
	rh := f.RetainHandling
	if group != "" {
		rh = 2 // no retained messages for a shared subscription (MQTT 5 §4.8.2)
	}
	return granted{sub: sub, retainHandling: rh, isNew: old == nil}, nil
}

// advanceCursor moves a persistent session's cursor to the stream's end
// after a SUBSCRIBE took effect: what was published before it is not owed
// to the new subscription, and must not come back on a resume.
func (c *conn) advanceCursor(ctx context.Context) {
	st, err := c.n.Backbone.State(ctx, c.tenant)
	if err != nil {
		return // no stream yet: the cursor's zero is its start
	}
	c.mu.Lock()
	if c.epoch == "" || c.epoch == st.Epoch {
		c.hi, c.epoch = max(c.hi, st.LastSeq), st.Epoch
		c.changes++
	}
	c.mu.Unlock()
}

// sharePrefix starts the filter of a shared subscription.
const sharePrefix = "$share/"

// parseShared splits a shared subscription's filter "$share/<group>/<filter>"
// (MQTT 5 §4.8.2, also accepted from 3.1.1 clients as most brokers do);
// any other filter is returned as it is, with no group.
func parseShared(f string) (group, filter string, err error) {
	rest, ok := strings.CutPrefix(f, sharePrefix)
	if !ok {
		return "", f, nil
	}
	group, filter, ok = strings.Cut(rest, "/")
	if !ok || group == "" || filter == "" || strings.ContainsAny(group, "+#") { // [MQTT-4.8.2-1, MQTT-4.8.2-2]
		return "", "", fmt.Errorf("%w: shared subscription %q", hub.ErrInvalidFilter, f)
	}
	return group, filter, nil
}

// sendRetained queues the retained messages of the new subscriptions, as
// their retain handling asks [MQTT-3.3.1-9, MQTT-3.3.1-10, MQTT-3.3.1-11].
func (c *conn) sendRetained(ctx context.Context, gs []granted) {
	for _, g := range gs {
		if g.retainHandling == 2 || (g.retainHandling == 1 && !g.isNew) {
			continue
		}
		hs := &g.sub.hs
		// node.Retained also folds in the stream's tail the session service
		// has not applied yet: a retained publish just before this
		// subscribe is not missed.
		res, err := c.n.Retained(ctx, c.tenant, hs.Filter)
		msgs := res.Messages
		if err != nil {
			c.n.Log.Warn("mqtt retained messages unavailable", "client", c.clientID, "filter", hs.Filter, "err", err)
			continue
		}
		var ids []int
		if hs.ID != 0 {
			ids = []int{int(hs.ID)}
		}
		now := time.Now()
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return
		}
		for _, m := range msgs {
			if len(m.Payload) == 0 || m.Expired(now) || !topic.Match(hs.Filter, m.Topic) {
				continue
			}
			c.queue = append(c.queue, delivery{m: m, qos: min(m.QoS, hs.QoS), retain: true, ids: ids})
			if g.sub.retainedSeqs == nil {
				g.sub.retainedSeqs = map[string]uint64{}
			}
			g.sub.retainedSeqs[m.Topic] = max(g.sub.retainedSeqs[m.Topic], m.Seq)
			g.sub.retainedMax = max(g.sub.retainedMax, m.Seq)
		}
		c.kickLocked()
		c.mu.Unlock()
	}
}

// handleUnsubscribe removes each filter and sends the UNSUBACK.
func (c *conn) handleUnsubscribe(pk *packets.Packet) {
	codes := make([]byte, len(pk.Filters))
	for i, f := range pk.Filters {
		c.mu.Lock()
		sub := c.sess.subs[f.Filter]
		delete(c.sess.subs, f.Filter)
		c.changes++
		c.mu.Unlock()
		if sub == nil {
			codes[i] = codeNoSubscription
			continue
		}
		c.n.Hub.Unsubscribe(&sub.hs)
	}
	unsuback := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsuback},
		ProtocolVersion: c.version, PacketID: pk.PacketID, ReasonCodes: codes,
		Mods: packets.Mods{MaxSize: uint32(c.maxOut), DisallowProblemInfo: !c.problemInfo}}
	c.sendControl(encodeBytes(unsuback))
}
