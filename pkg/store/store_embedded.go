package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
//	epoch          the stream epoch
//	applied        Seq of the last applied message (8 bytes, big endian)
//	trimmed        highest Seq trimmed (8 bytes)
//	count          messages in the replay buffer (8 bytes)
//	fence          the highest fence token issued or seen (8 bytes)
//	retained_bytes total size of the encoded retained messages (8 bytes)
//	retained_count retained messages held (8 bytes)
//	session_count  sessions held (8 bytes)
//	replay/        bucket: Seq (8 bytes) -> age in Unix ms (8 bytes) + encoded message
//	retained/      bucket: topic -> Seq (8 bytes) + encoded message
//	retained_tree/ bucket: indexKey(topic) -> empty, for each retained topic
//	               (the topic index wildcard reads walk, retained_index.go)
//	retained_exp/  bucket: expiry Unix ms (8 bytes) + topic -> empty
//	sessions/      bucket: client id -> revision (8) + deadline Unix ms (8, all ones for none) + JSON;
//	               its sequence issues revisions
//	session_exp/   bucket: deadline Unix ms (8 bytes) + client id -> empty
//	session_due/   bucket: Session.Due Unix ms (8 bytes) + client id -> empty
//	session_edge/  bucket: Session.Edge + NUL + client id -> empty (connected sessions)
//
// and one more top-level bucket, "{edge_leases}" (no tenant id holds a
// brace): edge -> end of its lease, Unix ms (8 bytes).
//
// Every write is one read-write transaction and readers use read-only ones,
// so readers always see whole writes.
type Embedded struct {
	db *bolt.DB
}

var (
	keyEpoch         = []byte("epoch")
	keyApplied       = []byte("applied")
	keyTrimmed       = []byte("trimmed")
	keyCount         = []byte("count")
	keyFence         = []byte("fence")
	keyRetainedBytes = []byte("retained_bytes")
	keyRetainedCount = []byte("retained_count")
	keySessionCount  = []byte("session_count")
	keyReplay        = []byte("replay")
	keyRetained      = []byte("retained")
	keyRetainedExp   = []byte("retained_exp")
	keyRetainedTree  = []byte("retained_tree")
	keySessions      = []byte("sessions")
	keySessionExp    = []byte("session_exp")
	keySessionDue    = []byte("session_due")
	keySessionEdge   = []byte("session_edge")
	keyEdgeLeases    = []byte("{edge_leases}")
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
	// Tenants written before a sub-bucket existed get it now (the retained
	// index built from their retained messages), so that readers, which
	// cannot create buckets, find every one.
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			if bytes.Equal(name, keyEdgeLeases) {
				return nil
			}
			_, err := tenantBucket(tx, string(name))
			return err
		})
	})
	if err != nil {
		db.Close()
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

// tenantBucket returns the tenant's bucket with its sub-buckets, creating
// what is missing (files written before a sub-bucket existed lack it).
func tenantBucket(tx *bolt.Tx, tenant string) (*bolt.Bucket, error) {
	tb, err := tx.CreateBucketIfNotExists([]byte(tenant))
	if err != nil {
		return nil, err
	}
	noTree := tb.Bucket(keyRetainedTree) == nil
	for _, k := range [][]byte{keyReplay, keyRetained, keyRetainedExp, keyRetainedTree, keySessions, keySessionExp, keySessionDue, keySessionEdge} {
		if _, err := tb.CreateBucketIfNotExists(k); err != nil {
			return nil, err
		}
	}
	if noTree {
		tree := tb.Bucket(keyRetainedTree)
		err := tb.Bucket(keyRetained).ForEach(func(k, _ []byte) error {
			return tree.Put([]byte(indexKey(string(k))), nil)
		})
		if err != nil {
			return nil, err
		}
	}
	return tb, nil
}

// putU64s writes counters into b.
func putU64s(b *bolt.Bucket, vals map[string]uint64) error {
	for k, v := range vals {
		if err := b.Put([]byte(k), be(v)); err != nil {
			return err
		}
	}
	return nil
}

// Apply implements Store.
func (e *Embedded) Apply(ctx context.Context, tenant, epoch string, msgs []*message.Message, lim ReplayLimits) error {
	_, err := e.ApplyBatch(ctx, tenant, Batch{Epoch: epoch, Messages: msgs, Limits: Limits{Replay: lim}})
	return err
}

// ApplyBatch implements Store.
func (e *Embedded) ApplyBatch(_ context.Context, tenant string, b Batch) (ApplyResult, error) {
	if err := checkBatch(tenant, b); err != nil {
		return ApplyResult{}, err
	}
	lim := b.Limits.WithDefaults()
	now := time.Now().UnixMilli()
	cutoff := now - lim.Replay.MaxAge.Milliseconds()
	var res ApplyResult
	err := e.db.Update(func(tx *bolt.Tx) error {
		tb, err := tenantBucket(tx, tenant)
		if err != nil {
			return err
		}
		stored := u64(tb.Get(keyFence))
		if b.Fence < stored {
			return ErrFenced
		}
		same := string(tb.Get(keyEpoch)) == b.Epoch
		var applied uint64
		if same {
			applied = u64(tb.Get(keyApplied))
		}
		if b.Expect > 0 && (!same || applied < b.Expect) {
			return ErrStateLost
		}
		if b.Fence > stored {
			if err := tb.Put(keyFence, be(b.Fence)); err != nil {
				return err
			}
		}
		if !same {
			// The stream was recreated: its sequences start again. Sessions
			// and the fence stay.
			for _, k := range [][]byte{keyReplay, keyRetained, keyRetainedExp, keyRetainedTree} {
				if err := tb.DeleteBucket(k); err != nil {
					return err
				}
				if _, err := tb.CreateBucket(k); err != nil {
					return err
				}
			}
			for _, k := range [][]byte{keyApplied, keyTrimmed, keyCount, keyRetainedBytes, keyRetainedCount} {
				if err := tb.Delete(k); err != nil {
					return err
				}
			}
			if err := tb.Put(keyEpoch, []byte(b.Epoch)); err != nil {
				return err
			}
		}
		replay, retained, retainedExp := tb.Bucket(keyReplay), tb.Bucket(keyRetained), tb.Bucket(keyRetainedExp)
		tree := tb.Bucket(keyRetainedTree)
		count, trimmed, bytes := u64(tb.Get(keyCount)), u64(tb.Get(keyTrimmed)), int64(u64(tb.Get(keyRetainedBytes)))
		if b.SkipThrough > applied {
			// The stream lost these: drop the buffer through them.
			if count, err = deletePrefix(replay, b.SkipThrough, count); err != nil {
				return err
			}
			applied, trimmed = b.SkipThrough, b.SkipThrough
		}
		nRetained := int(u64(tb.Get(keyRetainedCount)))
		if tb.Get(keyRetainedCount) == nil {
			// A file written before the counter existed: count once.
			nRetained = retained.Stats().KeyN
		}
		for _, m := range b.Messages {
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
			applied = m.Seq
			a := retainOf(m)
			if a == retainNone {
				continue
			}
			old := retained.Get([]byte(m.Topic))
			if old != nil && u64(old) >= m.Seq {
				continue
			}
			var oldLen int64
			if old != nil {
				oldLen = int64(len(old) - 8)
				if err := unindexRetained(tenant, retainedExp, m.Topic, old); err != nil {
					return err
				}
			}
			if a == retainSet && ((old == nil && nRetained >= lim.RetainedMessages) || bytes-oldLen+int64(len(enc)) > lim.RetainedBytes) {
				a = retainDelete
				res.RetainedDropped++
			}
			switch {
			case a == retainSet:
				if err := retained.Put([]byte(m.Topic), append(be(m.Seq), enc...)); err != nil {
					return err
				}
				if err := tree.Put([]byte(indexKey(m.Topic)), nil); err != nil {
					return err
				}
				if x := expiryMillis(m); x != 0 {
					if err := retainedExp.Put(append(be(uint64(x)), m.Topic...), nil); err != nil {
						return err
					}
				}
				bytes += int64(len(enc)) - oldLen
				if old == nil {
					nRetained++
				}
			case old != nil:
				if err := retained.Delete([]byte(m.Topic)); err != nil {
					return err
				}
				if err := tree.Delete([]byte(indexKey(m.Topic))); err != nil {
					return err
				}
				bytes -= oldLen
				nRetained--
			}
		}
		// Sweep expired retained messages, a bounded number per call.
		c := retainedExp.Cursor()
		var expired [][]byte
		for k, _ := c.First(); k != nil && int64(u64(k)) <= now && len(expired) < sweepMax; k, _ = c.Next() {
			expired = append(expired, append([]byte(nil), k...))
		}
		for _, k := range expired {
			if v := retained.Get(k[8:]); v != nil {
				bytes -= int64(len(v) - 8)
				nRetained--
				if err := retained.Delete(k[8:]); err != nil {
					return err
				}
				if err := tree.Delete([]byte(indexKey(string(k[8:])))); err != nil {
					return err
				}
			}
			if err := retainedExp.Delete(k); err != nil {
				return err
			}
		}
		res.RetainedExpired = len(expired)
		// Trim a prefix: to the count limit, then every leading message
		// older than the age limit. One walk finds them, then they go:
		// deleting under a cursor may make it skip an entry.
		var drop [][]byte
		c = replay.Cursor()
		for k, v := c.First(); k != nil && (count > uint64(lim.Replay.MaxMessages) || int64(u64(v)) < cutoff); k, v = c.Next() {
			drop = append(drop, append([]byte(nil), k...))
			count--
		}
		for _, k := range drop {
			if err := replay.Delete(k); err != nil {
				return err
			}
			trimmed = u64(k)
		}
		res.Applied = applied
		res.RetainedMessages, res.RetainedBytes = nRetained, bytes
		return putU64s(tb, map[string]uint64{"applied": applied, "count": count, "trimmed": trimmed,
			"retained_bytes": uint64(bytes), "retained_count": uint64(nRetained)})
	})
	if err != nil {
		return ApplyResult{}, fmt.Errorf("store: apply %s: %w", tenant, err)
	}
	return res, nil
}

// deletePrefix deletes the buffer's messages with Seq <= through and
// returns the new count.
func deletePrefix(replay *bolt.Bucket, through, count uint64) (uint64, error) {
	for {
		k, _ := replay.Cursor().First()
		if k == nil || u64(k) > through {
			return count, nil
		}
		if err := replay.Delete(k); err != nil {
			return 0, err
		}
		count--
	}
}

// unindexRetained removes a stored retained message's expiry index entry.
func unindexRetained(tenant string, idx *bolt.Bucket, name string, stored []byte) error {
	if len(stored) < 8 {
		return ErrCorrupt
	}
	m, err := decode(tenant, stored[8:])
	if err != nil {
		return err
	}
	if x := expiryMillis(m); x != 0 {
		return idx.Delete(append(be(uint64(x)), name...))
	}
	return nil
}

// Fence implements Store.
func (e *Embedded) Fence(_ context.Context, tenant string) (uint64, error) {
	if err := checkTenant(tenant); err != nil {
		return 0, err
	}
	var n uint64
	err := e.db.Update(func(tx *bolt.Tx) error {
		tb, err := tenantBucket(tx, tenant)
		if err != nil {
			return err
		}
		n = u64(tb.Get(keyFence)) + 1
		return tb.Put(keyFence, be(n))
	})
	if err != nil {
		return 0, fmt.Errorf("store: fence %s: %w", tenant, err)
	}
	return n, nil
}

// Retained implements Store. A wildcard filter walks the retained topic
// index (retained_index.go) and reads only the matching messages.
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
		tree := tb.Bucket(keyRetainedTree)
		if tree == nil {
			return fmt.Errorf("%w: no retained index", ErrCorrupt)
		}
		return walkIndex(boltSeeker{tree.Cursor()}, strings.Split(filter, "/"), func(k []byte) error {
			v := retained.Get([]byte(topicOfKey(k)))
			if v == nil {
				return fmt.Errorf("%w: retained index lists %q, which holds nothing", ErrCorrupt, topicOfKey(k))
			}
			return add(v)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: retained %s: %w", tenant, err)
	}
	return keepRetained(filter, out, time.Now()), nil
}

// boltSeeker is a bbolt cursor as the index walk reads it.
type boltSeeker struct{ c *bolt.Cursor }

func (b boltSeeker) Seek(k []byte) []byte { k, _ = b.c.Seek(k); return k }
func (b boltSeeker) Next() []byte         { k, _ := b.c.Next(); return k }

// VerifyRetainedIndex implements RetainedIndexVerifier.
func (e *Embedded) VerifyRetainedIndex(_ context.Context, tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	var stored, indexed []string
	err := e.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(tenant))
		if tb == nil {
			return nil
		}
		if err := tb.Bucket(keyRetained).ForEach(func(k, _ []byte) error {
			stored = append(stored, string(k))
			return nil
		}); err != nil {
			return err
		}
		return tb.Bucket(keyRetainedTree).ForEach(func(k, _ []byte) error {
			indexed = append(indexed, topicOfKey(k))
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store: verify %s: %w", tenant, err)
	}
	return diffIndex(tenant, stored, indexed)
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

// DeleteTenant implements Store: in one transaction the tenant's bucket
// goes and a new, empty one holds only the raised fence.
func (e *Embedded) DeleteTenant(_ context.Context, tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	return e.db.Update(func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(tenant))
		if tb == nil {
			return nil
		}
		fence := u64(tb.Get(keyFence)) + 1
		if err := tx.DeleteBucket([]byte(tenant)); err != nil {
			return err
		}
		nb, err := tenantBucket(tx, tenant)
		if err != nil {
			return err
		}
		return nb.Put(keyFence, be(fence))
	})
}

// Close implements Store.
func (e *Embedded) Close() error { return e.db.Close() }

var (
	_ Store                 = (*Embedded)(nil)
	_ RetainedIndexVerifier = (*Embedded)(nil)
)
