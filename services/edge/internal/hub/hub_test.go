package hub

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
)

// countingInterest is a fake backbone interest that counts references.
type countingInterest struct{ refs map[string]int }

func (c *countingInterest) Watch(tenant, filter string) (func(), error) {
	k := tenant + " " + filter
	c.refs[k]++
	return func() { c.refs[k]-- }, nil
}
func (c *countingInterest) Flush(context.Context) error { return nil }

type recorder struct {
	origin string
	got    []string
}

func (r *recorder) Deliver(m *message.Message, subs []*Subscription) {
	ids := make([]string, len(subs))
	for i, s := range subs {
		ids[i] = s.Filter
	}
	sort.Strings(ids)
	r.got = append(r.got, fmt.Sprintf("%s:%s%v", m.Tenant, m.Topic, ids))
}
func (r *recorder) Origin() string { return r.origin }

// TestTrieMatchesLikeTopicMatch ensures the trie finds exactly the filters
// that topic.Match accepts, for a grid of filters and names.
func TestTrieMatchesLikeTopicMatch(t *testing.T) {
	filters := []string{"#", "+", "a", "a/#", "a/+", "+/b", "a/b", "/#", "+/+", "$SYS/#", "$SYS/+", "+/#", "a/+/c", "a//c", "a/+/#"}
	names := []string{"a", "a/b", "a/b/c", "a//c", "/b", "/", "$SYS/x", "$SYS", "b", "a/x/c/d"}
	tr := &trie{}
	subs := map[string]*Subscription{}
	for _, f := range filters {
		s := &Subscription{Filter: f}
		subs[f] = s
		tr.add(s)
	}
	for _, n := range names {
		got := map[string]bool{}
		tr.match(n, func(s *Subscription) { got[s.Filter] = true })
		for _, f := range filters {
			if want := topic.Match(f, n); got[f] != want {
				t.Errorf("name %q filter %q: trie %v, Match %v", n, f, got[f], want)
			}
		}
	}
	for _, f := range filters {
		if !tr.remove(subs[f]) {
			t.Errorf("remove %q failed", f)
		}
	}
	if !tr.root.empty() {
		t.Errorf("trie not pruned: %+v", tr.root)
	}
}

// TestDispatchGroupsAndIsolates ensures one delivery per subscriber with all
// its matching subscriptions, no-local filtering, tenant isolation and
// ref-counted interest release, and whether another tenant shares the hub
// (Crowded).
func TestDispatchGroupsAndIsolates(t *testing.T) {
	in := &countingInterest{refs: map[string]int{}}
	h := New(in)
	ctx := context.Background()
	a, b := &recorder{origin: "e/a"}, &recorder{origin: "e/b"}
	sa1 := &Subscription{Tenant: "t1", Filter: "x/#", Subscriber: a}
	sa2 := &Subscription{Tenant: "t1", Filter: "x/+", Subscriber: a}
	sb := &Subscription{Tenant: "t1", Filter: "x/+", Subscriber: b, NoLocal: true}
	sOther := &Subscription{Tenant: "t2", Filter: "#", Subscriber: b}
	for _, s := range []*Subscription{sa1, sa2, sb, sOther} {
		if err := h.Subscribe(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Subscribe(ctx, &Subscription{Tenant: "t1", Filter: "a/#/b", Subscriber: a}); err != ErrInvalidFilter {
		t.Fatalf("bad filter: %v", err)
	}
	if !h.Crowded("t1") || !h.Crowded("t3") {
		t.Error("t1 and t3 not crowded beside t2")
	}
	h.Dispatch(&message.Message{Tenant: "t1", Topic: "x/y", Origin: "e/b"})
	h.Dispatch(&message.Message{Tenant: "t1", Topic: "x/y/z"})
	h.Dispatch(&message.Message{Tenant: "t3", Topic: "x/y"})
	if fmt.Sprint(a.got) != "[t1:x/y[x/# x/+] t1:x/y/z[x/#]]" {
		t.Errorf("a got %v", a.got)
	}
	if len(b.got) != 0 {
		t.Errorf("b (no-local, other tenant) got %v", b.got)
	}
	if in.refs["t1 x/+"] != 2 {
		t.Errorf("refs %v", in.refs)
	}
	h.Unsubscribe(sa2)
	h.Unsubscribe(sa2)
	if in.refs["t1 x/+"] != 1 || h.Len() != 3 {
		t.Errorf("after unsubscribe: refs %v len %d", in.refs, h.Len())
	}
	h.Unsubscribe(sOther)
	if h.Crowded("t1") || !h.Crowded("t2") {
		t.Error("t1 crowded alone, or t2 not beside t1")
	}
}
