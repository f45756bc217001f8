package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
	bolt "go.etcd.io/bbolt"
)

// Embedded is a Store in a local bbolt file, for the single-binary
// deployment where the session service and the edges share one process.
// bbolt locks the file: only one process may open it.
//
// Layout: one top-level bucket per tenant, named by the tenant id, holding
//
//	epoch     the stream epoch
//	applied   Seq of the last applied message (8 bytes, big endian)
//	trimmed   highest Seq trimmed (8 bytes)
//	count     messages in the replay buffer (8 bytes)
//	replay/   bucket: Seq (8 bytes) -> age in Unix ms (8 bytes) + encoded message
//	retained/ bucket: topic -> Seq (8 bytes) + encoded message
//
// Apply is one read-write transaction and readers use read-only ones, so
// readers always see whole Applies.
type Embedded struct {
	db *bolt.DB
}

var (
	keyEpoch    = []byte("epoch")
	keyApplied  = []byte("applied")
	keyTrimmed  = []byte("trimmed")
	keyCount    = []byte("count")
	keyReplay   = []byte("replay")
	keyRetained = []byte("retained")
)

// OpenEmbedded opens (creating if needed, with its directory) the store file
// at path. It fails after a second if another process holds the file.
func OpenEmbedded(path string) (*Embedded, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &Embedded{db: db}, nil
}

func u64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func be(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// Apply implements Store.
func (e *Embedded) Apply(_ context.Context, tenant, epoch string, msgs []*message.Message, lim ReplayLimits) error {
	if err := checkBatch(tenant, epoch, msgs, lim); err != nil {
		return err
	}
	lim = lim.WithDefaults()
	cutoff := time.Now().UnixMilli() - lim.MaxAge.Milliseconds()
	name := []byte(tenant)
	err := e.db.Update(func(tx *bolt.Tx) error {
		tb := tx.Bucket(name)
		if tb != nil && string(tb.Get(keyEpoch)) != epoch {
			// The stream was recreated: its sequences start again.
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			tb = nil
		}
		if tb == nil {
			var err error
			if tb, err = tx.CreateBucket(name); err != nil {
				return err
			}
			if err := tb.Put(keyEpoch, []byte(epoch)); err != nil {
				return err
			}
			if _, err := tb.CreateBucket(keyReplay); err != nil {
				return err
			}
			if _, err := tb.CreateBucket(keyRetained); err != nil {
				return err
			}
		}
		replay, retained := tb.Bucket(keyReplay), tb.Bucket(keyRetained)
		applied, count := u64(tb.Get(keyApplied)), u64(tb.Get(keyCount))
		for _, m := range msgs {
			if m.Seq <= applied {
				continue
			}
			enc, err := message.Marshal(m)
			if err != nil {
				return fmt.Errorf("encode seq %d: %w", m.Seq, err)
			}
			if err := replay.Put(be(m.Seq), append(be(uint64(ageMillis(m))), enc...)); err != nil {
				return err
			}
			count++
			if a := retainOf(m); a != retainNone {
				if old := retained.Get([]byte(m.Topic)); old == nil || u64(old) < m.Seq {
					if a == retainSet {
						err = retained.Put([]byte(m.Topic), append(be(m.Seq), enc...))
					} else {
						err = retained.Delete([]byte(m.Topic))
					}
					if err != nil {
						return err
					}
				}
			}
			applied = m.Seq
		}
		// Trim a prefix: to the count limit, then every leading message
		// older than the age limit. A fresh cursor per step, since deleting
		// under a cursor may make it skip an entry.
		trimmed := u64(tb.Get(keyTrimmed))
		for {
			k, v := replay.Cursor().First()
			if k == nil || (count <= uint64(lim.MaxMessages) && int64(u64(v)) >= cutoff) {
				break
			}
			trimmed = u64(k)
			if err := replay.Delete(k); err != nil {
				return err
			}
			count--
		}
		for k, v := range map[string]uint64{"applied": applied, "count": count, "trimmed": trimmed} {
			if err := tb.Put([]byte(k), be(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: apply %s: %w", tenant, err)
	}
	return nil
}

// Retained implements Store. A wildcard filter walks the tenant's retained
// messages (a topic index comes later).
func (e *Embedded) Retained(_ context.Context, tenant, filter string) ([]*message.Message, error) {
	if err := checkFilter(tenant, filter); err != nil {
		return nil, err
	}
	var out []*message.Message
	err := e.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(tenant))
		if tb == nil {
			return nil
		}
		retained := tb.Bucket(keyRetained)
		add := func(v []byte) error {
			if len(v) < 8 {
				return ErrCorrupt
			}
			m, err := decode(tenant, v[8:])
			if err == nil {
				out = append(out, m)
			}
			return err
		}
		if !topic.IsWildcard(filter) {
			if v := retained.Get([]byte(filter)); v != nil {
				return add(v)
			}
			return nil
		}
		return retained.ForEach(func(k, v []byte) error {
			if !topic.Match(filter, string(k)) {
				return nil
			}
			return add(v)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: retained %s: %w", tenant, err)
	}
	return keepRetained(filter, out, time.Now()), nil
}

// Replay implements Store.
func (e *Embedded) Replay(_ context.Context, tenant string, after uint64, max int) (ReplayPage, error) {
	if err := checkTenant(tenant); err != nil {
		return ReplayPage{}, err
	}
	if max <= 0 {
		max = DefaultReplayPage
	}
	var page ReplayPage
	err := e.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(tenant))
		if tb == nil {
			return nil
		}
		page.ReplayState = stateOf(tb)
		c := tb.Bucket(keyReplay).Cursor()
		for k, v := c.Seek(be(after + 1)); k != nil && len(page.Messages) < max; k, v = c.Next() {
			if len(v) < 8 {
				return ErrCorrupt
			}
			m, err := decode(tenant, v[8:])
			if err != nil {
				return err
			}
			page.Messages = append(page.Messages, m)
		}
		return nil
	})
	if err != nil {
		return ReplayPage{}, fmt.Errorf("store: replay %s: %w", tenant, err)
	}
	return page, nil
}

// State implements Store.
func (e *Embedded) State(_ context.Context, tenant string) (ReplayState, error) {
	if err := checkTenant(tenant); err != nil {
		return ReplayState{}, err
	}
	var st ReplayState
	err := e.db.View(func(tx *bolt.Tx) error {
		if tb := tx.Bucket([]byte(tenant)); tb != nil {
			st = stateOf(tb)
		}
		return nil
	})
	return st, err
}

func stateOf(tb *bolt.Bucket) ReplayState {
	return ReplayState{Epoch: string(tb.Get(keyEpoch)), Applied: u64(tb.Get(keyApplied)), TrimmedThrough: u64(tb.Get(keyTrimmed))}
}

// DeleteTenant implements Store.
func (e *Embedded) DeleteTenant(_ context.Context, tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	return e.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(tenant)) == nil {
			return nil
		}
		return tx.DeleteBucket([]byte(tenant))
	})
}

// Close implements Store.
func (e *Embedded) Close() error { return e.db.Close() }

var _ Store = (*Embedded)(nil)
