package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/record"
	"github.com/heraldmq/herald/pkg/topic"
)

// The session record's types and functions are package record's; these
// aliases keep the store's API whole.
type (
	// Session is record.Session.
	Session = record.Session
	// Subscription is record.Subscription.
	Subscription = record.Subscription
	// Will is record.Will.
	Will = record.Will
	// InflightPhase is record.InflightPhase.
	InflightPhase = record.InflightPhase
	// Inflight is record.Inflight.
	Inflight = record.Inflight
)

// Record constants, as package record names them.
const (
	NeverExpires = record.NeverExpires
	AwaitPuback  = record.AwaitPuback
	AwaitPubrec  = record.AwaitPubrec
	AwaitPubcomp = record.AwaitPubcomp
	AwaitPubrel  = record.AwaitPubrel
	Completed    = record.Completed
)

// WillOf is record.WillOf.
func WillOf(m *message.Message, delay, expiry time.Duration) *Will {
	return record.WillOf(m, delay, expiry)
}

// WillMsgID is record.WillMsgID.
func WillMsgID(tenant string, s *Session) string { return record.WillMsgID(tenant, s) }

// edgeIndex is the edge under which the store lists the session
// (EdgeSessions): its Edge while connected, else none.
func edgeIndex(s *Session) string {
	if s.DisconnectedAt.IsZero() {
		return s.Edge
	}
	return ""
}

// dueMillis is Due in Unix milliseconds, or -1 for never.
func dueMillis(s *Session) int64 {
	t, ok := s.Due()
	if !ok {
		return -1
	}
	return max(t.UnixMilli(), 0)
}

// deadlineMillis is ExpiresAt in Unix milliseconds, or -1 for never.
func deadlineMillis(s *Session) int64 {
	t, ok := s.ExpiresAt()
	if !ok {
		return -1
	}
	return t.UnixMilli()
}

// maxClientID bounds client ids (MQTT strings are at most 65535 bytes).
const maxClientID = 65535

func checkClientID(tenant, clientID string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if clientID == "" || len(clientID) > maxClientID {
		return fmt.Errorf("%w: client id of %d bytes", ErrBadSession, len(clientID))
	}
	return nil
}

func checkEdge(edge string) error {
	if edge == "" || strings.ContainsRune(edge, 0) {
		return fmt.Errorf("%w: %q", ErrBadEdge, edge)
	}
	return nil
}

func checkSession(tenant string, s *Session) error {
	if s == nil {
		return ErrBadSession
	}
	if err := checkClientID(tenant, s.ClientID); err != nil {
		return err
	}
	if strings.ContainsRune(s.Edge, 0) {
		return fmt.Errorf("%w: edge name %q", ErrBadSession, s.Edge)
	}
	for f := range s.Subscriptions {
		name := f
		if rest, ok := strings.CutPrefix(f, "$share/"); ok {
			_, name, ok = strings.Cut(rest, "/")
			if !ok {
				return fmt.Errorf("%w: shared subscription %q", ErrBadSession, f)
			}
		}
		if err := topic.ValidateFilter(name, topic.Limits{}); err != nil {
			return fmt.Errorf("%w: filter %q: %w", ErrBadSession, f, err)
		}
	}
	return nil
}

func encodeSession(s *Session) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("store: encode session: %w", err)
	}
	return b, nil
}

func decodeSession(clientID string, rev uint64, b []byte) (*Session, error) {
	s := &Session{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%w: session %q: %w", ErrCorrupt, clientID, err)
	}
	s.ClientID, s.Revision = clientID, rev
	return s, nil
}
