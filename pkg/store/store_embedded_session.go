package store

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// noDeadline is the stored deadline of a session that does not expire.
const noDeadline = math.MaxUint64

// storedSession is the value of a sessions/ entry.
func storedSession(rev uint64, deadline int64, body []byte) []byte {
	d := uint64(noDeadline)
	if deadline >= 0 {
		d = uint64(deadline)
	}
	return append(append(be(rev), be(d)...), body...)
}

func parseEmbeddedSession(clientID string, v []byte) (*Session, error) {
	if len(v) < 16 {
		return nil, fmt.Errorf("%w: session %q", ErrCorrupt, clientID)
	}
	return decodeSession(clientID, u64(v), v[16:])
}

// indexedSession reads the session an index entry (due or edge) names; ok
// is false when the entry outlived its session.
func indexedSession(sb *bolt.Bucket, id []byte) (s *Session, ok bool, err error) {
	v := sb.Get(id)
	if len(v) < 16 {
		return nil, false, nil
	}
	s, err = parseEmbeddedSession(string(id), v)
	return s, err == nil, err
}

// sessionBuckets returns the tenant's sessions/ and session_exp/ buckets in
// a read-only transaction, or nils if the tenant has none.
func sessionBuckets(tx *bolt.Tx, tenant string) (*bolt.Bucket, *bolt.Bucket) {
	tb := tx.Bucket([]byte(tenant))
	if tb == nil {
		return nil, nil
	}
	return tb.Bucket(keySessions), tb.Bucket(keySessionExp)
}

// LoadSession implements SessionStore.
func (e *Embedded) LoadSession(_ context.Context, tenant, clientID string) (*Session, error) {
	if err := checkClientID(tenant, clientID); err != nil {
		return nil, err
	}
	var s *Session
	err := e.db.View(func(tx *bolt.Tx) error {
		sb, _ := sessionBuckets(tx, tenant)
		if sb == nil {
			return ErrNoSession
		}
		v := sb.Get([]byte(clientID))
		if v == nil {
			return ErrNoSession
		}
		var err error
		s, err = parseEmbeddedSession(clientID, v)
		return err
	})
	return s, err
}

// unindexDue removes the due and edge index entries of a stored session
// (both are derived from its body, which is decoded for them).
func unindexDue(tb *bolt.Bucket, clientID string, stored []byte) error {
	old, err := parseEmbeddedSession(clientID, stored)
	if err != nil {
		return err
	}
	if db := tb.Bucket(keySessionDue); db != nil {
		if d := dueMillis(old); d >= 0 {
			if err := db.Delete(append(be(uint64(d)), clientID...)); err != nil {
				return err
			}
		}
	}
	if eb := tb.Bucket(keySessionEdge); eb != nil {
		if e := edgeIndex(old); e != "" {
			return eb.Delete(edgeEntry(e, clientID))
		}
	}
	return nil
}

// edgeEntry is the session_edge/ key of a session listed under edge.
func edgeEntry(edge, clientID string) []byte {
	return append(append([]byte(edge), 0), clientID...)
}

// removeSession deletes a stored session and its index entries.
func removeSession(tb, sb, xb *bolt.Bucket, clientID string, stored []byte) error {
	if d := u64(stored[8:16]); d != noDeadline {
		if err := xb.Delete(append(be(d), clientID...)); err != nil {
			return err
		}
	}
	if err := unindexDue(tb, clientID, stored); err != nil {
		return err
	}
	if err := sb.Delete([]byte(clientID)); err != nil {
		return err
	}
	return tb.Put(keySessionCount, be(u64(tb.Get(keySessionCount))-1))
}

// SaveSession implements SessionStore.
func (e *Embedded) SaveSession(_ context.Context, tenant string, s *Session, lim Limits) error {
	if err := checkSession(tenant, s); err != nil {
		return err
	}
	if err := lim.Validate(); err != nil {
		return err
	}
	body, err := encodeSession(s)
	if err != nil {
		return err
	}
	max := lim.WithDefaults().Sessions
	var rev uint64
	err = e.db.Update(func(tx *bolt.Tx) error {
		tb, err := tenantBucket(tx, tenant)
		if err != nil {
			return err
		}
		sb, xb := tb.Bucket(keySessions), tb.Bucket(keySessionExp)
		old := sb.Get([]byte(s.ClientID))
		if old != nil && len(old) < 16 {
			return ErrCorrupt
		}
		switch {
		case old == nil && s.Revision != 0, old != nil && u64(old) != s.Revision:
			return ErrConflict
		case old == nil && u64(tb.Get(keySessionCount)) >= uint64(max):
			return ErrSessionLimit
		}
		count := u64(tb.Get(keySessionCount))
		if old != nil {
			if d := u64(old[8:16]); d != noDeadline {
				if err := xb.Delete(append(be(d), s.ClientID...)); err != nil {
					return err
				}
			}
			if err := unindexDue(tb, s.ClientID, old); err != nil {
				return err
			}
		} else {
			count++
		}
		if rev, err = sb.NextSequence(); err != nil {
			return err
		}
		deadline := deadlineMillis(s)
		if err := sb.Put([]byte(s.ClientID), storedSession(rev, deadline, body)); err != nil {
			return err
		}
		if deadline >= 0 {
			if err := xb.Put(append(be(uint64(deadline)), s.ClientID...), nil); err != nil {
				return err
			}
		}
		if due := dueMillis(s); due >= 0 {
			if err := tb.Bucket(keySessionDue).Put(append(be(uint64(due)), s.ClientID...), nil); err != nil {
				return err
			}
		}
		if edge := edgeIndex(s); edge != "" {
			if err := tb.Bucket(keySessionEdge).Put(edgeEntry(edge, s.ClientID), nil); err != nil {
				return err
			}
		}
		return tb.Put(keySessionCount, be(count))
	})
	if err != nil {
		return fmt.Errorf("store: save session %s: %w", tenant, err)
	}
	s.Revision = rev
	return nil
}

// DeleteSession implements SessionStore.
func (e *Embedded) DeleteSession(_ context.Context, tenant, clientID string, revision uint64) error {
	if err := checkClientID(tenant, clientID); err != nil {
		return err
	}
	err := e.db.Update(func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(tenant))
		if tb == nil || tb.Bucket(keySessions) == nil {
			return nil
		}
		sb, xb := tb.Bucket(keySessions), tb.Bucket(keySessionExp)
		old := sb.Get([]byte(clientID))
		switch {
		case old == nil:
			return nil
		case len(old) < 16:
			return ErrCorrupt
		case revision != 0 && u64(old) != revision:
			return ErrConflict
		}
		return removeSession(tb, sb, xb, clientID, old)
	})
	if err != nil {
		return fmt.Errorf("store: delete session %s: %w", tenant, err)
	}
	return nil
}

// Sessions implements SessionStore.
func (e *Embedded) Sessions(_ context.Context, tenant, after string, max int) ([]*Session, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultSessionPage
	}
	var out []*Session
	err := e.db.View(func(tx *bolt.Tx) error {
		sb, _ := sessionBuckets(tx, tenant)
		if sb == nil {
			return nil
		}
		c := sb.Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil && len(out) < max; k, v = c.Next() {
			s, err := parseEmbeddedSession(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: sessions %s: %w", tenant, err)
	}
	return out, nil
}

// CountSessions implements SessionStore.
func (e *Embedded) CountSessions(_ context.Context, tenant string) (int, error) {
	if err := checkTenant(tenant); err != nil {
		return 0, err
	}
	var n uint64
	err := e.db.View(func(tx *bolt.Tx) error {
		if tb := tx.Bucket([]byte(tenant)); tb != nil {
			n = u64(tb.Get(keySessionCount))
		}
		return nil
	})
	return int(n), err
}

// ExpireSessions implements SessionStore.
func (e *Embedded) ExpireSessions(_ context.Context, tenant string, now time.Time, max int) ([]*Session, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultSessionPage
	}
	var out []*Session
	err := e.db.Update(func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(tenant))
		if tb == nil || tb.Bucket(keySessionExp) == nil {
			return nil
		}
		sb, xb := tb.Bucket(keySessions), tb.Bucket(keySessionExp)
		var due [][]byte
		c := xb.Cursor()
		for k, _ := c.First(); k != nil && int64(u64(k)) <= now.UnixMilli() && len(due) < max; k, _ = c.Next() {
			due = append(due, append([]byte(nil), k...))
		}
		for _, k := range due {
			id := string(k[8:])
			v := sb.Get(k[8:])
			if len(v) < 16 {
				if err := xb.Delete(k); err != nil {
					return err
				}
				continue
			}
			s, err := parseEmbeddedSession(id, v)
			if err != nil {
				return err
			}
			out = append(out, s)
			if err := removeSession(tb, sb, xb, id, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: expire sessions %s: %w", tenant, err)
	}
	return out, nil
}

// DueSessions implements SessionStore.
func (e *Embedded) DueSessions(_ context.Context, tenant string, now time.Time, max int) ([]*Session, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultSessionPage
	}
	var out []*Session
	err := e.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(tenant))
		if tb == nil || tb.Bucket(keySessionDue) == nil {
			return nil
		}
		sb := tb.Bucket(keySessions)
		c := tb.Bucket(keySessionDue).Cursor()
		for k, _ := c.First(); k != nil && int64(u64(k)) <= now.UnixMilli() && len(out) < max; k, _ = c.Next() {
			s, ok, err := indexedSession(sb, k[8:])
			if err != nil {
				return err
			}
			if ok {
				out = append(out, s)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: due sessions %s: %w", tenant, err)
	}
	return out, nil
}

// SessionEdges implements SessionStore: it seeks from edge to edge past
// each one's entries.
func (e *Embedded) SessionEdges(_ context.Context, tenant string) ([]string, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	var edges []string
	err := e.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(tenant))
		if tb == nil || tb.Bucket(keySessionEdge) == nil {
			return nil
		}
		c := tb.Bucket(keySessionEdge).Cursor()
		for k, _ := c.First(); k != nil; {
			edge, _, _ := bytes.Cut(k, []byte{0})
			edges = append(edges, string(edge))
			k, _ = c.Seek(append(append([]byte(nil), edge...), 1))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: session edges %s: %w", tenant, err)
	}
	return edges, nil
}

// EdgeSessions implements SessionStore.
func (e *Embedded) EdgeSessions(_ context.Context, tenant, edge, after string, max int) ([]*Session, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if err := checkEdge(edge); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultSessionPage
	}
	var out []*Session
	err := e.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(tenant))
		if tb == nil || tb.Bucket(keySessionEdge) == nil {
			return nil
		}
		sb := tb.Bucket(keySessions)
		prefix := edgeEntry(edge, "")
		c := tb.Bucket(keySessionEdge).Cursor()
		k, _ := c.Seek(edgeEntry(edge, after))
		if k != nil && after != "" && string(k[len(prefix):]) == after {
			k, _ = c.Next()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < max; k, _ = c.Next() {
			s, ok, err := indexedSession(sb, k[len(prefix):])
			if err != nil {
				return err
			}
			if ok {
				out = append(out, s)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: edge sessions %s: %w", tenant, err)
	}
	return out, nil
}

// RenewEdgeLease implements EdgeLeaseStore.
func (e *Embedded) RenewEdgeLease(_ context.Context, edge string, until time.Time) error {
	if err := checkEdge(edge); err != nil {
		return err
	}
	err := e.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(keyEdgeLeases)
		if err != nil {
			return err
		}
		return b.Put([]byte(edge), be(uint64(max(until.UnixMilli(), 0))))
	})
	if err != nil {
		return fmt.Errorf("store: renew edge lease %s: %w", edge, err)
	}
	return nil
}

// EdgeLeases implements EdgeLeaseStore.
func (e *Embedded) EdgeLeases(_ context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := e.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(keyEdgeLeases)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = time.UnixMilli(int64(u64(v)))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: edge leases: %w", err)
	}
	return out, nil
}

// DeleteEdgeLease implements EdgeLeaseStore.
func (e *Embedded) DeleteEdgeLease(_ context.Context, edge string) error {
	if err := checkEdge(edge); err != nil {
		return err
	}
	err := e.db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(keyEdgeLeases); b != nil {
			return b.Delete([]byte(edge))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete edge lease %s: %w", edge, err)
	}
	return nil
}
