package backbone

import "strings"

// consumerSubjects turns a set of NATS subject filters into a set JetStream
// accepts for one consumer: it refuses overlapping filter subjects. Filters
// covered by another are dropped; if two still overlap, the whole tenant
// subject is used and callers filter on delivery (Range always does).
func consumerSubjects(all string, subjects []string) []string {
	subjects = dedupeStrings(subjects)
	var kept []string
	for i, s := range subjects {
		covered := false
		for j, t := range subjects {
			if i != j && covers(t, s) && (!covers(s, t) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			kept = append(kept, s)
		}
	}
	for i := range kept {
		for j := i + 1; j < len(kept); j++ {
			if intersects(kept[i], kept[j]) {
				return []string{all}
			}
		}
	}
	return kept
}

// covers reports whether every subject matched by b is matched by a.
func covers(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i, x := range at {
		if x == ">" {
			return len(bt) > i
		}
		if i >= len(bt) {
			return false
		}
		y := bt[i]
		switch {
		case x == "*":
			if y == ">" {
				return false
			}
		case x != y:
			return false
		}
	}
	return len(at) == len(bt)
}

// intersects reports whether some subject is matched by both a and b.
func intersects(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		if i == len(at) || i == len(bt) {
			return len(at) == len(bt)
		}
		x, y := at[i], bt[i]
		if x == ">" || y == ">" {
			return true
		}
		if x != "*" && y != "*" && x != y {
			return false
		}
	}
}
