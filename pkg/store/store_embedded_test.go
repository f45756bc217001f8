package store_test

import (
	"path/filepath"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/store/storetest"
	bolt "go.etcd.io/bbolt"
)

// TestEmbedded ensures the bbolt store meets the Store contract.
func TestEmbedded(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "data", "store.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestEmbeddedRetainedIndexBuilt ensures a store file written before the
// retained topic index existed gets it when opened: wildcard reads find
// the retained messages it held.
func TestEmbeddedRetainedIndexBuilt(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := store.OpenEmbedded(path)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*message.Message
	for i, tp := range []string{"a/x", "a/y", "b/x", "c"} {
		msgs = append(msgs, &message.Message{Seq: uint64(i + 1), Topic: tp, Payload: []byte("v"), Retain: true})
	}
	if err := s.Apply(ctx, "t1", "e1", msgs, store.ReplayLimits{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What a store without the index left behind.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("t1")).DeleteBucket([]byte("retained_tree")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = store.OpenEmbedded(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, err := s.Retained(ctx, "t1", "a/+")
	if err != nil || len(ms) != 2 || ms[0].Topic != "a/x" || ms[1].Topic != "a/y" {
		t.Fatalf("Retained(a/+) = %v, %v; want a/x and a/y", ms, err)
	}
	if err := s.VerifyRetainedIndex(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
}
