package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/topic"
)

// The retained topic index: wildcard reads walk it instead of the
// tenant's retained messages, so every write must keep it exact and every
// walk must find exactly what topic.Match finds.

// verifyIndex fails the test unless the store's retained index of tenant
// lists exactly its retained topics.
func verifyIndex(t *testing.T, s store.Store, tenant string) {
	t.Helper()
	v, ok := s.(store.RetainedIndexVerifier)
	if !ok {
		t.Fatalf("%T keeps no retained index (store.RetainedIndexVerifier)", s)
	}
	if err := v.VerifyRetainedIndex(context.Background(), tenant); err != nil {
		t.Fatal(err)
	}
}

// matching is what a filter must read: the topics of names it matches,
// sorted.
func matching(filter string, names []string) []string {
	out := []string{}
	for _, n := range names {
		if topic.Match(filter, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// wantRetained checks that tenant holds exactly the retained topics names
// (index included) and that each filter reads exactly its matches.
func wantRetained(t *testing.T, s store.Store, tenant string, names []string, filters ...string) {
	t.Helper()
	verifyIndex(t, s, tenant)
	for _, f := range append([]string{"#"}, filters...) {
		if got, want := retainedTopics(t, s, tenant, f), matching(f, names); !slices.Equal(got, want) {
			t.Errorf("Retained(%q) = %d topics %q, want %d %q", f, len(got), got[:min(len(got), 10)], len(want), want[:min(len(want), 10)])
		}
	}
}

// indexTopics is a retained set that puts the walk's edges side by side:
// levels that are prefixes of others, characters sorting below and above
// '/', empty levels, $-topics, deep topics, and one level with more
// children than one Redis call of the walk takes (wide/...).
func indexTopics(rng *rand.Rand) []string {
	names := []string{
		"a", "a/b", "a/b/c", "a/b/c/d", "ab", "ab/c", "a!", "a!/b", "a.", "a0/b", "a/b!", "a/b!/c", "a/bb",
		"/", "//", "/a", "a//b", "a/", "a/b/", "$SYS", "$SYS/x", "$SYS/x/y", "$share", "é/ü", "x/+y", "x/y#",
	}
	for i := range 3000 {
		names = append(names, fmt.Sprintf("wide/%d", i))
		if i%100 == 0 {
			names = append(names, fmt.Sprintf("wide/%d/x", i))
		}
	}
	alphabet := []string{"a", "b", "ab", "", "a!", "z"}
	for range 300 {
		n := 1 + rng.IntN(5)
		levels := make([]string, n)
		for i := range levels {
			levels[i] = alphabet[rng.IntN(len(alphabet))]
		}
		names = append(names, "r/"+strings.Join(levels, "/"))
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// indexFilters are the filters read: fixed ones, and for sampled topics
// filters made from them with '+' levels and a '#' tail.
func indexFilters(rng *rand.Rand, names []string) []string {
	filters := []string{
		"+", "+/+", "+/+/+", "+/#", "/+", "/#", "+//+", "a/#", "a/+", "a/+/c", "a/b/#", "a/b/+", "+/b", "+/b/#",
		"a!/#", "ab/+", "wide/+", "wide/+/x", "wide/#", "+/+/x", "$SYS/#", "$SYS/+", "+/x/y", "r/+/+/#", "nope/#",
		"a/b/c/d/#", "a/b/c/d/+", "é/+",
	}
	for range 60 {
		levels := strings.Split(names[rng.IntN(len(names))], "/")
		for i := range levels {
			if rng.IntN(3) == 0 {
				levels[i] = "+"
			}
		}
		if n := rng.IntN(len(levels) + 1); n < len(levels) {
			levels = append(levels[:n], "#")
		}
		filters = append(filters, strings.Join(levels, "/"))
	}
	return filters
}

// testRetainedIndexMatches ensures a wildcard read finds exactly the
// retained topics topic.Match finds, for literal prefixes, '+' and '#' in
// every position, over topics chosen to sit next to each other in the
// index, including reads that match or enumerate more than one index
// walk takes at a time.
func testRetainedIndexMatches(t *testing.T, s store.Store) {
	rng := rand.New(rand.NewPCG(21, 5))
	names := indexTopics(rng)
	var msgs []*message.Message
	for i, n := range names {
		msgs = append(msgs, retained(uint64(i+1), n, "p-"+n))
	}
	applyBatch(t, s, "t1", store.Batch{Messages: msgs})
	wantRetained(t, s, "t1", names, indexFilters(rng, names)...)
}

// testRetainedIndexLifecycle ensures every write keeps the retained index
// exact: a set, a replacement, a delete by empty payload, a message
// refused by the limits, an expiry sweep, a new stream epoch and the
// deletion of the tenant (and its re-creation, which must not find what
// was deleted).
func testRetainedIndexLifecycle(t *testing.T, s store.Store) {
	ctx := context.Background()
	filters := []string{"a/+", "+/+", "a/#", "+"}
	lim := store.Limits{RetainedMessages: 3}
	set := func(b store.Batch, names ...string) {
		t.Helper()
		if b.Limits == (store.Limits{}) {
			b.Limits = lim
		}
		applyBatch(t, s, "t1", b)
		wantRetained(t, s, "t1", names, filters...)
	}
	set(store.Batch{Messages: []*message.Message{retained(1, "a/x", "1"), retained(2, "a/y", "2"), retained(3, "b", "3")}},
		"a/x", "a/y", "b")
	set(store.Batch{Messages: []*message.Message{retained(4, "a/x", "1b")}}, "a/x", "a/y", "b")
	set(store.Batch{Messages: []*message.Message{retained(5, "a/y", "")}}, "a/x", "b")
	// Refused by the count limit: c/1 fits, c/2 and a do not.
	set(store.Batch{Messages: []*message.Message{retained(6, "c/1", "v"), retained(7, "c/2", "v"), retained(8, "a", "v")}},
		"a/x", "b", "c/1")
	// A replacement refused by the byte limit takes the old value with it.
	set(store.Batch{Messages: []*message.Message{retained(9, "b", string(make([]byte, 2000)))}, Limits: store.Limits{RetainedBytes: 1000}},
		"a/x", "c/1")
	// Expiry: swept by a later batch, index entry and all. A second of
	// life, so that the read just after the write still sees it on a loaded
	// machine (50 ms was too short under make test's load: a read after it
	// ended found it gone, as reads should).
	short := retained(10, "a/short", "x")
	short.ExpiresAt = time.Now().Add(time.Second)
	set(store.Batch{Messages: []*message.Message{short}}, "a/short", "a/x", "c/1")
	deadline := time.Now().Add(15 * time.Second)
	for swept := 0; swept < 1; {
		swept += applyBatch(t, s, "t1", store.Batch{Limits: lim}).RetainedExpired
		if time.Now().After(deadline) {
			t.Fatal("expired retained a/short never swept")
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantRetained(t, s, "t1", []string{"a/x", "c/1"}, filters...)
	// A new epoch clears the retained set, its index with it.
	applyBatch(t, s, "t1", store.Batch{Epoch: "e2", Messages: []*message.Message{retained(1, "a/new", "v")}})
	wantRetained(t, s, "t1", []string{"a/new"}, filters...)
	// Deleting the tenant deletes its index; the tenant created again holds
	// only what it is given.
	if err := s.DeleteTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	wantRetained(t, s, "t1", nil, filters...)
	fence, err := s.Fence(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	applyBatch(t, s, "t1", store.Batch{Epoch: "e2", Fence: fence, Messages: []*message.Message{retained(2, "a/z", "v")}})
	wantRetained(t, s, "t1", []string{"a/z"}, filters...)
}
