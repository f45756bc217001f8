package store_test

import (
	"path/filepath"
	"testing"

	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/store/storetest"
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
