// Package record is the persistent MQTT session record: what a session
// that outlives its connection keeps — its subscriptions, the in-flight
// QoS 1 and 2 state, the will and a delivery cursor into the tenant
// stream — and the errors of writing one. The session store (pkg/store)
// keeps records; the MQTT server of an edge and the session service read
// and write them through the store's small interfaces.
package record

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"time"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/message"
)

// Errors of reading and writing records.
var (
	// ErrNoSession is returned by a load of an unknown session.
	ErrNoSession = fault.New(fault.NotFound, "store: no such session")
	// ErrConflict is returned by a save or a delete when the stored
	// session's revision is not the one the caller read: another writer
	// changed it in between.
	ErrConflict = fault.New(fault.Conflict, "store: session revision conflict")
	// ErrSessionLimit is returned by a save creating a session beyond the
	// tenant's session limit; nothing is written.
	ErrSessionLimit = fault.New(fault.Quota, "store: tenant session limit reached")
)

// NeverExpires is the Session.ExpiryInterval of a session that never
// expires (MQTT 5: 0xFFFFFFFF).
const NeverExpires = math.MaxUint32

// Session is the state of one MQTT persistent session: what a client that
// reconnects with clean start false gets back, on any edge.
//
// Offline delivery uses a cursor, not a queue: Delivered is the stream
// position the client has been given everything up to, and on reconnect the
// edge replays the tenant stream after it, filtered by Subscriptions (see the
// store package documentation for why).
type Session struct {
	// ClientID is the MQTT client identifier; required.
	ClientID string `json:"-"`
	// Revision is set by the store on every write; pass it back unchanged to
	// SaveSession or DeleteSession (0 to create).
	Revision uint64 `json:"-"`

	// Subscriptions maps each topic filter (a shared subscription keeps its
	// "$share/<group>/" prefix) to its options.
	Subscriptions map[string]Subscription `json:"subs,omitempty"`
	// ExpiryInterval is the MQTT 5 session expiry interval in seconds,
	// counted from DisconnectedAt; NeverExpires means never, and 0 means the
	// session ends when the connection does.
	ExpiryInterval uint32 `json:"exp,omitempty"`
	// ConnectedTo names the connection holding the session
	// ("<edge>/<connection>"), empty while disconnected. Takeover closes it.
	ConnectedTo string `json:"conn,omitempty"`
	// DisconnectedAt is when the last connection ended; zero while connected.
	// Only a disconnected session expires.
	DisconnectedAt time.Time `json:"disc,omitzero"`
	// LeaseUntil is how long the connection in ConnectedTo vouches for the
	// session by itself, for a writer that renews a lease per session. Past
	// it the connection is presumed dead and the session service treats the
	// session as disconnected at LeaseUntil (will, expiry). Zero: no
	// per-session lease.
	LeaseUntil time.Time `json:"lease,omitzero"`
	// Edge names the edge incarnation whose edge lease (EdgeLeaseStore)
	// vouches for the connected session: the session counts as connected
	// while that lease lives, with no write per session, and once it
	// lapsed the session service treats the session as disconnected at the
	// lease's end. A connected session with Edge set is listed by
	// EdgeSessions.
	Edge string `json:"edge,omitempty"`
	// Will is the will message, if any.
	Will *Will `json:"will,omitempty"`
	// Delivered is the position in the tenant stream up to which every
	// matching message has been delivered (QoS 0) or acknowledged (QoS 1
	// and 2 in Inflight aside).
	Delivered message.Position `json:"pos,omitzero"`
	// Inflight is the QoS 1 and 2 state by packet identifier.
	Inflight []Inflight `json:"inflight,omitempty"`
}

// Subscription holds the MQTT 5 options of one subscription.
type Subscription struct {
	// QoS is the maximum QoS granted.
	QoS byte `json:"q,omitempty"`
	// NoLocal: never deliver the client's own publications.
	NoLocal bool `json:"nl,omitempty"`
	// RetainAsPublished keeps the retain flag of forwarded messages.
	RetainAsPublished bool `json:"rap,omitempty"`
	// RetainHandling: 0 send retained on subscribe, 1 only if new, 2 never.
	RetainHandling byte `json:"rh,omitempty"`
	// ID is the subscription identifier, 0 for none.
	ID uint32 `json:"id,omitempty"`
}

// Will is a will message with its MQTT 5 properties.
type Will struct {
	Topic   string `json:"t"`
	Payload []byte `json:"p,omitempty"`
	QoS     byte   `json:"q,omitempty"`
	Retain  bool   `json:"r,omitempty"`
	// Delay is the will delay interval.
	Delay time.Duration `json:"d,omitempty"`
	// MessageExpiry is the message expiry interval of the will, 0 for none.
	MessageExpiry   time.Duration          `json:"x,omitempty"`
	ContentType     string                 `json:"ct,omitempty"`
	PayloadUTF8     bool                   `json:"pf,omitempty"`
	ResponseTopic   string                 `json:"rt,omitempty"`
	CorrelationData []byte                 `json:"cd,omitempty"`
	UserProperties  []message.UserProperty `json:"up,omitempty"`
}

// InflightPhase is where a QoS 1 or 2 exchange stands.
type InflightPhase byte

// Phases of an in-flight packet identifier.
const (
	// AwaitPuback: a QoS 1 message was sent to the client, not yet acknowledged.
	AwaitPuback InflightPhase = iota + 1
	// AwaitPubrec: a QoS 2 message was sent, PUBREC not yet received.
	AwaitPubrec
	// AwaitPubcomp: PUBREL was sent, PUBCOMP not yet received.
	AwaitPubcomp
	// AwaitPubrel: the client published QoS 2, PUBREC was sent, PUBREL not
	// yet received (inbound).
	AwaitPubrel
	// Completed: an outbound QoS 2 exchange ended (PUBCOMP) for a message
	// after Delivered; the message must not be sent again (no packet
	// identifier: it is free again).
	Completed
)

// Inflight is the state of one packet identifier, or (Completed) of one
// outbound QoS 2 message.
type Inflight struct {
	PacketID uint16        `json:"id"`
	Phase    InflightPhase `json:"ph"`
	// Seq is the stream sequence of an outbound message (0 for inbound).
	Seq uint64 `json:"s,omitempty"`
	// MsgID is the JetStream message id an inbound QoS 2 message was
	// published with, so a retransmission after a reconnect is deduplicated.
	MsgID string `json:"m,omitempty"`
}

// ExpiresAt returns when the session expires, and false if it does not
// (connected, or NeverExpires).
func (s *Session) ExpiresAt() (time.Time, bool) {
	if s.DisconnectedAt.IsZero() || s.ExpiryInterval == NeverExpires {
		return time.Time{}, false
	}
	return s.DisconnectedAt.Add(time.Duration(s.ExpiryInterval) * time.Second), true
}

// Due returns when the session service must next act on the session other
// than expiring it, and false if never: for a connected session the end of
// its connection lease, for a disconnected one with a will the moment the
// will is due — when its delay has passed or the session ends, whichever
// is first [MQTT-3.1.3-9] (a session that expires before the will delay
// takes its will with it, at its expiry, not at the end of the delay). The
// store indexes it (DueSessions).
func (s *Session) Due() (time.Time, bool) {
	switch {
	case s.DisconnectedAt.IsZero() && !s.LeaseUntil.IsZero():
		return s.LeaseUntil, true
	case !s.DisconnectedAt.IsZero() && s.Will != nil:
		due := s.DisconnectedAt.Add(s.Will.Delay)
		if exp, expires := s.ExpiresAt(); expires && exp.Before(due) {
			due = exp
		}
		return due, true
	}
	return time.Time{}, false
}

// WillOf returns the will of m (a will message as an edge built it from
// CONNECT: no Seq, no ExpiresAt), with its delay and message expiry.
func WillOf(m *message.Message, delay, expiry time.Duration) *Will {
	return &Will{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Delay: delay,
		MessageExpiry: expiry, ContentType: m.ContentType, PayloadUTF8: m.PayloadUTF8,
		ResponseTopic: m.ResponseTopic, CorrelationData: m.CorrelationData, UserProperties: m.UserProperties}
}

// Message returns the message to publish for the will of a session of
// tenant, published at now (its message expiry counts from then).
func (w *Will) Message(tenant string, now time.Time) *message.Message {
	m := &message.Message{Tenant: tenant, Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain,
		ContentType: w.ContentType, PayloadUTF8: w.PayloadUTF8, ResponseTopic: w.ResponseTopic,
		CorrelationData: w.CorrelationData, UserProperties: w.UserProperties}
	if w.MessageExpiry > 0 {
		m.ExpiresAt = now.Add(w.MessageExpiry)
	}
	return m
}

// WillMsgID is the JetStream message id of the will of session s of
// tenant, for the disconnect at s.DisconnectedAt: whoever publishes that
// will (the edge at once, or the session service when due, retried after a
// failure) publishes it under one id, so JetStream stores it once.
func WillMsgID(tenant string, s *Session) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + s.ClientID))
	return "will-" + hex.EncodeToString(sum[:8]) + "-" + strconv.FormatInt(s.DisconnectedAt.UnixNano(), 36)
}
