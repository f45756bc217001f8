package authz

import "strings"

// Covers reports whether every topic name that the MQTT filter requested
// matches is also matched by the filter allowed — whether requested is a
// subset of allowed. Both must be valid filters (topic.ValidateFilter).
//
// It decides subscriptions: a client allowed "sensors/#" may subscribe to
// "sensors/+/temp" or "sensors/#", but not to "#" or "+/temp", which would
// also deliver topics outside sensors/. Like topic.Match it honours
// [MQTT-4.7.2-1]: a filter starting with a wildcard matches no name starting
// with '$', so "#" does not cover "$SYS/x".
//
// Covers is exact for single filters; a request covered only by the union of
// several allowed filters (allowed "a/b" and "a/c", requested "a/+") is not
// covered, which errs on the side of refusing.
func Covers(allowed, requested string) bool {
	// A leading wildcard in allowed excludes '$' names, which a requested
	// filter starting with a literal "$..." level consists of entirely.
	if allowed != "" && (allowed[0] == '+' || allowed[0] == '#') && requested != "" && requested[0] == '$' {
		return false
	}
	if requested == "#" && allowed == "+/#" {
		// Every name has a first level, so "+/#" (the first level and,
		// through the parent rule, everything below) equals "#". Below the
		// top, "x/+/#" does not match "x", so this holds only here.
		return true
	}
	for {
		al, arest, amore := strings.Cut(allowed, "/")
		if al == "#" {
			// Matches the parent level and everything below it.
			return true
		}
		rl, rrest, rmore := strings.Cut(requested, "/")
		switch {
		case rl == "#":
			// requested matches arbitrarily deep names (and the parent);
			// only "#" at the same level, handled above, covers that.
			return false
		case rl == "+":
			if al != "+" {
				return false
			}
		case al != "+" && al != rl:
			return false
		}
		switch {
		case !amore && !rmore:
			return true
		case !rmore:
			// requested ends here; allowed continues. Only a trailing "#"
			// ("a/#" matches "a") still matches the name that ends here.
			return arest == "#"
		case !amore:
			// allowed ends here; requested demands deeper levels.
			return false
		}
		allowed, requested = arest, rrest
	}
}
