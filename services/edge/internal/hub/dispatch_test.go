package hub

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
)

// orderRecorder records, per delivery, which subscriber got which filters.
type orderRecorder struct {
	name string
	log  *[]string
}

func (r *orderRecorder) Deliver(m *message.Message, subs []*Subscription) {
	filters := make([]string, len(subs))
	for i, x := range subs {
		filters[i] = x.Filter
	}
	sort.Strings(filters)
	*r.log = append(*r.log, r.name+": "+strings.Join(filters, " "))
}
func (r *orderRecorder) Origin() string { return "" }

// TestDispatchGroupsBySubscriber checks that each subscriber receives a
// message once, with every subscription it matched, on the in-place path
// (few matches) and the map path (many).
func TestDispatchGroupsBySubscriber(t *testing.T) {
	cases := []struct {
		name string
		subs []string // "<subscriber> <filter>", in subscription order
		want []string
	}{
		{"one", []string{"a x/y"}, []string{"a: x/y"}},
		{"two subscribers", []string{"a x/y", "b x/+"}, []string{"a: x/y", "b: x/+"}},
		{"interleaved", []string{"a x/y", "b x/+", "a x/#", "c #", "b +/y"},
			[]string{"a: x/# x/y", "b: +/y x/+", "c: #"}},
	}
	var many []string
	var manyWant []string
	for i := range smallGroup + 4 {
		many = append(many, "s"+strconv.Itoa(i)+" x/y")
		manyWant = append(manyWant, "s"+strconv.Itoa(i)+": x/# x/y")
	}
	for i := range smallGroup + 4 {
		many = append(many, "s"+strconv.Itoa(i)+" x/#")
	}
	cases = append(cases, struct {
		name string
		subs []string
		want []string
	}{"many", many, manyWant})
	var distinct, distinctWant []string
	for i := range smallGroup + 4 {
		distinct = append(distinct, "d"+strconv.Itoa(i)+" x/+")
		distinctWant = append(distinctWant, "d"+strconv.Itoa(i)+": x/+")
	}
	cases = append(cases, struct {
		name string
		subs []string
		want []string
	}{"many distinct", distinct, distinctWant})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := New(&countingInterest{refs: map[string]int{}})
			var log []string
			recs := map[string]*orderRecorder{}
			for _, s := range tc.subs {
				var who, filter string
				fmt.Sscan(s, &who, &filter)
				if recs[who] == nil {
					recs[who] = &orderRecorder{name: who, log: &log}
				}
				if err := h.Subscribe(context.Background(), &Subscription{Tenant: "t", Filter: filter, Subscriber: recs[who]}); err != nil {
					t.Fatal(err)
				}
			}
			n := h.Dispatch(&message.Message{Tenant: "t", Topic: "x/y"})
			// The trie's match order is by level, not subscription order:
			// compare the deliveries as a set.
			if n != len(tc.want) || !sameSet(log, tc.want) {
				t.Fatalf("delivered to %d: %q, want %q", n, log, tc.want)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		if seen[s]--; seen[s] < 0 {
			return false
		}
	}
	return true
}

// nopSubscriber has a field: pointers to distinct zero-size values may be
// equal, which would make every subscriber of a benchmark the same one.
type nopSubscriber struct{ _ int }

func (nopSubscriber) Deliver(*message.Message, []*Subscription) {}
func (nopSubscriber) Origin() string                            { return "" }

// BenchmarkDispatchFanOut measures one message dispatched to N
// subscribers of its topic.
func BenchmarkDispatchFanOut(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := New(&countingInterest{refs: map[string]int{}})
			for range n {
				if err := h.Subscribe(context.Background(), &Subscription{Tenant: "t", Filter: "sensors/+/temp", Subscriber: &nopSubscriber{}}); err != nil {
					b.Fatal(err)
				}
			}
			m := &message.Message{Tenant: "t", Topic: "sensors/kitchen/temp"}
			b.ReportAllocs()
			for b.Loop() {
				h.Dispatch(m)
			}
		})
	}
}

// BenchmarkTrieMatch measures matching a topic among 10,000 filters of
// one tenant (exact, "+" and "#" ones), of which a handful match.
func BenchmarkTrieMatch(b *testing.B) {
	var tr trie
	for i := range 10000 {
		var f string
		switch i % 3 {
		case 0:
			f = fmt.Sprintf("sensors/room%d/temp", i)
		case 1:
			f = fmt.Sprintf("sensors/+/device%d", i)
		default:
			f = fmt.Sprintf("site%d/#", i)
		}
		tr.add(&Subscription{Filter: f, Subscriber: nopSubscriber{}})
	}
	tr.add(&Subscription{Filter: "sensors/#", Subscriber: nopSubscriber{}})
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		tr.match("sensors/room3/temp", func(*Subscription) { n++ })
	}
	if n == 0 {
		b.Fatal("no match")
	}
}
