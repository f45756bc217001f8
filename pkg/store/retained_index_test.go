package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// sliceSeeker is a sorted slice as the index walk reads it, counting the
// keys it hands out.
type sliceSeeker struct {
	keys [][]byte
	at   int
	read int
}

func (s *sliceSeeker) Seek(k []byte) []byte {
	s.at, _ = slices.BinarySearchFunc(s.keys, k, func(a, b []byte) int { return strings.Compare(string(a), string(b)) })
	return s.get()
}

func (s *sliceSeeker) Next() []byte { s.at++; return s.get() }

func (s *sliceSeeker) get() []byte {
	if s.at >= len(s.keys) {
		return nil
	}
	s.read++
	return s.keys[s.at]
}

// TestRetainedWalkReadsOnlyMatches ensures a wildcard read of 10 topics
// among 100,000 reads a few keys of the index per match, not the tenant:
// the work of issue 21's retained read target, counted rather than timed.
func TestRetainedWalkReadsOnlyMatches(t *testing.T) {
	var keys [][]byte
	for d := range 9999 {
		for j := range 10 {
			keys = append(keys, []byte(indexKey(fmt.Sprintf("dev/%d/state/%d", d, j))))
		}
	}
	for k := range 10 {
		keys = append(keys, []byte(indexKey(fmt.Sprintf("site/%d/alarm", k))))
	}
	slices.SortFunc(keys, func(a, b []byte) int { return strings.Compare(string(a), string(b)) })
	for _, tc := range []struct {
		filter   string
		matches  int
		mostRead int
	}{
		{"dev/4242/state/+", 10, 12},
		{"dev/4242/#", 10, 12},
		{"site/+/alarm", 10, 12},
		{"dev/42/state/7", 1, 1},
		// '+' over 9,999 children: one seek per child and one for its
		// match, nothing below it.
		{"dev/+/state/7", 9999, 3 * 9999},
	} {
		sk := &sliceSeeker{keys: keys}
		n := 0
		err := walkIndex(sk, strings.Split(tc.filter, "/"), func(k []byte) error { n++; return nil })
		if err != nil || n != tc.matches || sk.read > tc.mostRead {
			t.Errorf("%s: %d matches reading %d keys (%v), want %d reading at most %d", tc.filter, n, sk.read, err, tc.matches, tc.mostRead)
		}
	}
}
