package authz_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/topic"
)

// TestCovers ensures Covers accepts exactly the subscriptions inside the allowed filter, in a table of the cases that matter.
func TestCovers(t *testing.T) {
	for _, c := range []struct {
		allowed, requested string
		want               bool
	}{
		{"sensors/#", "sensors/#", true},
		{"sensors/#", "sensors/+", true},
		{"sensors/#", "sensors/a/b", true},
		{"sensors/#", "sensors", true},
		{"sensors/#", "#", false},
		{"sensors/#", "+/a", false},
		{"sensors/#", "+", false},
		{"sensors/+", "sensors/a", true},
		{"sensors/+", "sensors/+", true},
		{"sensors/+", "sensors/#", false},
		{"sensors/+", "sensors", false},
		{"sensors/+", "sensors/a/b", false},
		{"sensors/+/temp", "sensors/+/temp", true},
		{"sensors/+/temp", "sensors/+/+", false},
		{"sensors/a", "sensors/a", true},
		{"sensors/a", "sensors/b", false},
		{"sensors/a", "sensors/+", false},
		{"+/+", "a/b", true},
		{"+/+", "+/b", true},
		{"+/#", "a", true},
		{"+/#", "#", true}, // every name has a first level
		{"#", "#", true},
		{"#", "a/+/#", true},
		{"#", "$SYS/x", false},
		{"#", "$SYS/#", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/#", "#", false},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
		{"a/#", "a/", true},
		{"a/+", "a/", true},
		{"a", "a/#", false},
		{"a/+/#", "a/+", true},
	} {
		if got := authz.Covers(c.allowed, c.requested); got != c.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", c.allowed, c.requested, got, c.want)
		}
	}
}

// levels is the alphabet of the property test; "z" never appears in
// filters, so it witnesses what "+" and "#" match beyond the literals.
var (
	filterLevels = []string{"a", "b", "", "$s", "+", "#"}
	nameLevels   = []string{"a", "b", "", "$s", "z"}
)

func randomFilter(r *rand.Rand) string {
	n := 1 + r.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = filterLevels[r.IntN(len(filterLevels))]
		if parts[i] == "#" {
			return strings.Join(parts[:i+1], "/")
		}
	}
	return strings.Join(parts, "/")
}

// names lists every topic name of 1 to depth levels over nameLevels.
func names(depth int) []string {
	out := []string{}
	cur := []string{""}
	for d := 1; d <= depth; d++ {
		var next []string
		for _, prefix := range cur {
			for _, l := range nameLevels {
				n := l
				if d > 1 {
					n = prefix + "/" + l
				}
				next = append(next, n)
			}
		}
		out = append(out, next...)
		cur = next
	}
	return out
}

// TestCoversProperty ensures Covers(a, r) holds exactly when every name r matches is matched by a, over all names of up to 6 levels.
func TestCoversProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	all := names(6) // filters have <= 4 levels; deeper names witness "#"
	for i := 0; i < 3000; i++ {
		a, q := randomFilter(r), randomFilter(r)
		if topic.ValidateFilter(a, topic.Limits{}) != nil || topic.ValidateFilter(q, topic.Limits{}) != nil {
			continue // "" alone is not a filter
		}
		subset := true
		var witness string
		for _, n := range all {
			if topic.Match(q, n) && !topic.Match(a, n) {
				subset, witness = false, n
				break
			}
		}
		if got := authz.Covers(a, q); got != subset {
			t.Fatalf("Covers(%q, %q) = %v, but subset = %v (witness %q)", a, q, got, subset, witness)
		}
		if !authz.Covers(q, q) {
			t.Fatalf("Covers(%q, %q) = false: not reflexive", q, q)
		}
	}
}

// FuzzCovers ensures Covers never allows a subscription that would receive a name the allowed filter does not match.
func FuzzCovers(f *testing.F) {
	f.Add("sensors/#", "sensors/+", "sensors/x")
	f.Add("#", "$SYS/#", "$SYS/a")
	f.Fuzz(func(t *testing.T, a, q, name string) {
		if topic.ValidateFilter(a, topic.Limits{}) != nil || topic.ValidateFilter(q, topic.Limits{}) != nil || topic.ValidateName(name, topic.Limits{}) != nil {
			return
		}
		if authz.Covers(a, q) && topic.Match(q, name) && !topic.Match(a, name) {
			t.Fatalf("Covers(%q, %q) but %q matches only the request", a, q, name)
		}
	})
}
