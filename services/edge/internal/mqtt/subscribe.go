package mqtt

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/mochi-mqtt/server/v2/packets"
)

// subscription is one filter of a session: its subscription in the
// connection's feed (the core's), and what the session record keeps
// beside the feed's options.
type subscription struct {
	sub *node.Sub
	// retainHandling is the subscription's option, kept with a persistent
	// session.
	retainHandling byte
}

// handleSubscribe subscribes each filter in the connection's feed, sends
// the SUBACK, then the matching retained messages, then the live
// messages that arrived meanwhile, minus those the retained pass already
// sent. The feed holds live deliveries for the duration (node.Policy's
// PerMessage), so that nothing of the new subscriptions precedes the
// SUBACK [MQTT-3.8.4-1] and retained messages precede the live ones.
func (c *conn) handleSubscribe(ctx context.Context, pk *packets.Packet) error {
	codes := make([]byte, len(pk.Filters))
	var subs []*node.Sub
	var firstErr error
	for i, f := range pk.Filters {
		s, err := c.subscribe(ctx, f)
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
		codes[i] = s.Options().QoS
		subs = append(subs, s)
	}
	suback := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback},
		ProtocolVersion: c.version, PacketID: pk.PacketID, ReasonCodes: codes,
		Mods: packets.Mods{MaxSize: uint32(c.maxOut), DisallowProblemInfo: !c.problemInfo}}
	if c.version == 5 {
		suback.Properties.ReasonString = reasonString(firstErr)
	}
	c.sendControl(encodeBytes(suback))
	if c.expiry > 0 && len(subs) > 0 {
		c.advanceCursor(ctx)
	}
	// Each subscription's start: its retained messages, as its retain
	// handling asks, queued ahead of the live messages it releases.
	for _, s := range subs {
		if s.Closed() {
			continue // replaced by a later filter of the same SUBSCRIBE
		}
		if _, err := s.Replay(ctx, c.queueRetained); err != nil {
			break // closing: teardown releases the rest
		}
	}
	return nil
}

// subscribe makes one filter a subscription of the connection's feed,
// replacing the session's subscription of the same filter
// [MQTT-3.8.4-3], and returns it live but paused. Its start is retained
// first as its retain handling asks [MQTT-3.3.1-9, MQTT-3.3.1-10,
// MQTT-3.3.1-11]; a shared subscription gets no retained messages (MQTT 5
// §4.8.2).
func (c *conn) subscribe(ctx context.Context, f packets.Subscription) (*node.Sub, error) {
	group, filter, err := parseShared(f.Filter)
	if err != nil {
		return nil, err
	}
	feed, err := c.ensureFeed(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	old := c.sess.subs[f.Filter]
	c.mu.Unlock()
	from := node.RetainedFirst()
	if rh := f.RetainHandling; group != "" || rh == 2 || (rh == 1 && old != nil) {
		from = node.Live()
	}
	o := node.SubOptions{Key: f.Filter, Group: group, QoS: min(f.Qos, 2), NoLocal: f.NoLocal,
		RetainAsPublished: f.RetainAsPublished, ID: uint32(f.Identifier)}
	if old != nil {
		o.Replaces = old.sub // closed once the new one is live: no message falls between
	}
	// The core validates the filter (0x8F), authorizes it (0x87), applies
	// the connection's subscription limit (0x97) and takes live interest.
	s, err := feed.Subscribe(ctx, []string{filter}, from, o)
	if err != nil {
		if fault.Is(err, fault.Unavailable) {
			c.s.log.Warn("mqtt subscribe failed", "client", c.clientID, "filter", f.Filter, "err", err)
		}
		return nil, err
	}
	c.mu.Lock()
	if c.sess.subs == nil {
		c.sess.subs = map[string]*subscription{}
	}
	c.sess.subs[f.Filter] = &subscription{sub: s, retainHandling: f.RetainHandling}
	c.changes.Add(1)
	c.mu.Unlock()
	return s, nil
}

// ensureFeed returns the connection's feed, made with its first
// subscription (a SUBSCRIBE, or a resumed session's): the bounded queue of
// its live messages, QoS 0 shed first (see the package documentation),
// one delivery per message. Only the reader sets it, under mu.
func (c *conn) ensureFeed(ctx context.Context) (*node.Feed, error) {
	if c.feed != nil {
		return c.feed, nil
	}
	f, err := c.n.NewFeed(ctx, c.adm, node.Policy{Queue: c.cfg.QueueSize, Overflow: node.OverflowShedQoS0,
		OnDrop: func() { c.s.stats.dropped.Add(1) }, PerMessage: true, SharedGroups: true,
		Wake: c.feedWake, Ended: c.feedEnded})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.feed = f
	c.mu.Unlock()
	return f, nil
}

// feedWake is the feed's Wake: the writer has something to take.
func (c *conn) feedWake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kickLocked()
}

// feedEnded is the feed's Ended: a slow consumer is disconnected (0x97),
// a revoked credential too (its reason; the admission's close says it as
// well).
func (c *conn) feedEnded(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(err, node.ErrSlowConsumer) {
		if !c.closing {
			c.s.stats.slowConsumers.Add(1)
			c.s.log.Info("mqtt slow consumer disconnected", "client", c.clientID, "queue", c.cfg.QueueSize)
		}
		err = ErrSlowConsumer
	}
	c.disconnectLocked(err, "")
}

// queueRetained queues a retained message of a new subscription's start.
func (c *conn) queueRetained(it node.Item) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return errClosing
	}
	c.queue = append(c.queue, delivery{m: it.Msg, qos: it.QoS, retain: true, ids: it.IDs})
	c.kickLocked()
	return nil
}

// advanceCursor moves a persistent session's cursor to the stream's end
// after a SUBSCRIBE took effect: what was published before it is not owed
// to the new subscription, and must not come back on a resume. (What the
// feed still holds for the older subscriptions keeps the cursor below it:
// see cursorLocked.)
func (c *conn) advanceCursor(ctx context.Context) {
	head, err := c.n.Head(ctx, c.tenant)
	if err != nil {
		return
	}
	c.mu.Lock()
	if c.epoch == "" || c.epoch == head.Epoch {
		c.hi, c.epoch = max(c.hi, head.Seq), head.Epoch
		c.changes.Add(1)
	}
	c.mu.Unlock()
}

// sharePrefix starts the filter of a shared subscription.
const sharePrefix = "$share/"

// errBadShare is a malformed shared subscription filter (SUBACK 0x8F).
var errBadShare = fault.New(fault.InvalidFilter, "invalid shared subscription")

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
		return "", "", fmt.Errorf("%w: %q", errBadShare, f)
	}
	return group, filter, nil
}

// handleUnsubscribe removes each filter and sends the UNSUBACK.
func (c *conn) handleUnsubscribe(pk *packets.Packet) {
	codes := make([]byte, len(pk.Filters))
	for i, f := range pk.Filters {
		c.mu.Lock()
		sub := c.sess.subs[f.Filter]
		delete(c.sess.subs, f.Filter)
		c.changes.Add(1)
		c.mu.Unlock()
		if sub == nil {
			codes[i] = codeNoSubscription
			continue
		}
		sub.sub.Close()
	}
	unsuback := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsuback},
		ProtocolVersion: c.version, PacketID: pk.PacketID, ReasonCodes: codes,
		Mods: packets.Mods{MaxSize: uint32(c.maxOut), DisallowProblemInfo: !c.problemInfo}}
	c.sendControl(encodeBytes(unsuback))
}
