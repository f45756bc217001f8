package mqtt

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"

	"github.com/heraldmq/herald/pkg/record"
)

// session is the state of one MQTT session that must outlive a network
// connection (MQTT 5 §4.1) on the sending side — the subscriptions, the
// QoS 1 and 2 messages sent and not completed — held in the connection's
// outbox (conn.mu); the QoS 2 messages received and not released, the
// receiving side, are the connection's inflight (conn.pubMu). A persistent
// session is saved to the session store as a record.Session record and
// loaded from it on CONNECT, on any edge (persist.go).
type session struct {
	clientID string
	// nonce is random per session. It names the session's inbound QoS 2
	// messages in JetStream (qos2MsgID), so that a later session of the
	// same client, whose packet identifiers and counters start again,
	// never collides with this one's.
	nonce string
	subs  map[string]*subscription // by filter as subscribed ("$share/..." included)
	// outbound are the QoS 1 and 2 messages sent to the client and not
	// completed (PUBACK, or PUBREC then PUBCOMP), by packet identifier.
	outbound map[uint16]*outbound
	sent     uint64 // orders outbound, for retransmission
	nextID   uint16
	// restoring are the subscriptions of a loaded session until its resume
	// has restored them into subs: the record keeps them meanwhile, so
	// that a save (the CONNECT's own, a periodic one) cannot drop them.
	restoring map[string]record.Subscription
	// completed are the stream sequences of outbound QoS 2 messages whose
	// exchange is over (or that were dropped as if delivered) while the
	// session's cursor is still below them, ascending: a resume must not
	// send them again (persist.go). Pruned as the cursor passes them; at
	// most maxCompleted, the oldest forgotten beyond.
	completed []uint64
}

// maxCompleted bounds session.completed: the QoS 2 messages completed
// after the oldest message the client has not acknowledged yet (or that
// is still queued for it). A client that leaves a message unacknowledged
// for longer than maxCompleted QoS 2 messages after it may get the
// oldest of those twice if its edge then crashes.
const maxCompleted = 1024

// complete records the end of the outbound QoS 2 exchange of the message
// with stream sequence seq.
func (s *session) complete(seq uint64) {
	i, found := slices.BinarySearch(s.completed, seq)
	if found {
		return
	}
	s.completed = slices.Insert(s.completed, i, seq)
	if len(s.completed) > maxCompleted {
		s.completed = slices.Delete(s.completed, 0, len(s.completed)-maxCompleted)
	}
}

// pruneCompleted forgets the completed sequences the cursor has passed.
func (s *session) pruneCompleted(cursor uint64) {
	i, _ := slices.BinarySearch(s.completed, cursor+1)
	if i > 0 {
		s.completed = slices.Delete(s.completed, 0, i)
	}
	if len(s.completed) == 0 {
		s.completed = nil
	}
}

// outbound is a QoS 1 or 2 message sent and not completed.
type outbound struct {
	d     delivery
	seq   uint64 // the message's stream sequence, kept after d.m is let go
	order uint64
	// released: the client acknowledged a QoS 2 message with PUBREC and
	// the server sent PUBREL; only the PUBCOMP is awaited.
	released bool
}

// inbound is a QoS 2 message received from the client.
type inbound struct {
	// msgID is its JetStream message id: a second publish with the same
	// id inside the stream's duplicate window is dropped by JetStream.
	msgID string
	// stored: JetStream acknowledged it and PUBREC was sent.
	stored bool
	// resumed: loaded from a saved session; whether JetStream has it is
	// unknown, so a retransmission is published again under msgID (which
	// JetStream drops if it was stored) before PUBREC.
	resumed bool
}

func newSession(clientID string) *session {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &session{clientID: clientID, nonce: hex.EncodeToString(b[:])}
}

// qos2MsgID returns the JetStream message id of the n-th QoS 2 message of
// session s, received with packet identifier id, for tenant.
//
// A QoS 2 message must be stored once even if the client sends it again
// (with DUP) before it saw the PUBREC — for example after the edge that
// stored it died. Within a connection the open exchanges (inflight) catch
// the copy; across edges the copy would be published again, and the id
// makes JetStream drop it. The id must name this one exchange and no
// other: packet identifiers are reused as soon as an exchange completes,
// and a client sending a QoS 2 message a second with one packet in flight
// reuses the same identifier every time, so tenant, client and packet
// identifier alone would make JetStream drop a new message as a duplicate
// of one sent seconds earlier (inside its two-minute window). The count n
// separates reuses of an identifier within a session, and the session's
// random nonce separates sessions, whose counts restart. When sessions
// persist, the inbound entry (and with it the id) is saved before the
// message is published, so a retransmission after a failure finds it.
func qos2MsgID(tenant string, s *session, id uint16, n uint64) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + s.clientID))
	return "mqtt2-" + hex.EncodeToString(sum[:8]) + "-" + s.nonce + "-" +
		strconv.FormatUint(uint64(id), 10) + "-" + strconv.FormatUint(n, 10)
}

// retransmissions returns, in the order first sent, what a resumed session
// owes its client [MQTT-4.4.0-1]: every outbound message not acknowledged,
// again with DUP set, and a PUBREL for every QoS 2 message already
// received by the client (released).
func (s *session) retransmissions() (publishes []delivery, pubrels []uint16) {
	pending := make([]*outbound, 0, len(s.outbound))
	for _, o := range s.outbound {
		pending = append(pending, o)
	}
	slices.SortFunc(pending, func(a, b *outbound) int { return cmp.Compare(a.order, b.order) })
	for _, o := range pending {
		if o.released {
			pubrels = append(pubrels, o.d.id)
			continue
		}
		d := o.d
		d.dup = true
		publishes = append(publishes, d)
	}
	return publishes, pubrels
}
