package topic

import (
	"errors"
	"strings"
	"testing"
	"testing/quick"
)

// TestMatch ensures filter matching follows MQTT 3.1.1/5.0 section 4.7.
func TestMatch(t *testing.T) {
	cases := []struct {
		filter, name string
		want         bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a/", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"#", "a/b", true},
		{"#", "/a", true},
		{"+/+", "/a", true},
		{"+", "/a", false},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/+", "$SYS/x", true},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"a/b/c", "a/b", false},
		{"a/b", "a/b/c", false},
		{"+/#", "a", true},
	}
	for _, c := range cases {
		if got := Match(c.filter, c.name); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.filter, c.name, got, c.want)
		}
	}
}

// TestValidate ensures names and filters are checked against the MQTT rules and limits.
func TestValidate(t *testing.T) {
	names := []struct {
		in  string
		err error
	}{
		{"a/b", nil},
		{"", ErrEmpty},
		{"a/+", ErrWildcardInName},
		{"a/#", ErrWildcardInName},
		{"a\x00b", ErrInvalidUTF8},
		{"a\xffb", ErrInvalidUTF8},
		{strings.Repeat("x", 1025), ErrTooLong},
		{strings.Repeat("a/", 32) + "a", ErrTooDeep},
	}
	for _, c := range names {
		if err := ValidateName(c.in, Limits{}); !errors.Is(err, c.err) {
			t.Errorf("ValidateName(%q) = %v, want %v", c.in, err, c.err)
		}
	}
	filters := []struct {
		in  string
		err error
	}{
		{"a/+/#", nil},
		{"#", nil},
		{"+", nil},
		{"a/#/b", ErrBadWildcard},
		{"a+/b", ErrBadWildcard},
		{"a/b#", ErrBadWildcard},
		{"", ErrEmpty},
	}
	for _, c := range filters {
		if err := ValidateFilter(c.in, Limits{}); !errors.Is(err, c.err) {
			t.Errorf("ValidateFilter(%q) = %v, want %v", c.in, err, c.err)
		}
	}
}

// TestSubjectRoundTrip ensures every valid topic name survives the mapping to
// a NATS subject and back, and that the subject has no empty or reserved token.
func TestSubjectRoundTrip(t *testing.T) {
	check := func(name string) bool {
		if ValidateName(name, Limits{MaxLength: 1 << 20, MaxLevels: 1 << 20}) != nil {
			return true
		}
		subj := string(AppendSubject(nil, name))
		for _, tok := range strings.Split(subj, ".") {
			if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n*>") {
				t.Errorf("name %q: bad token %q in %q", name, tok, subj)
				return false
			}
		}
		back, err := FromSubject(subj)
		if err != nil || back != name {
			t.Errorf("name %q -> %q -> %q, %v", name, subj, back, err)
			return false
		}
		return true
	}
	for _, n := range []string{"a", "/", "//", "a/b", "/a/", "a.b/c*d/>", "%", "%%/%41", "sp ace/t\tab", "ünï/кириллица", "$SYS/x"} {
		check(n)
	}
	if err := quick.Check(check, &quick.Config{MaxCount: 5000}); err != nil {
		t.Fatal(err)
	}
}

// TestFilterSubjectsCover ensures the NATS subjects derived from a filter
// cover every topic the filter matches (property test over generated topics).
func TestFilterSubjectsCover(t *testing.T) {
	filters := []string{"#", "a/#", "a/+", "+/b", "a/+/#", "/#", "+", "a/b"}
	alphabet := []string{"a", "b", "", "$x", "a.b", "*"}
	var names []string
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		if depth == 0 {
			return
		}
		for _, l := range alphabet {
			n := l
			if prefix != "" || depth < 3 {
				n = prefix + "/" + l
			}
			if depth == 3 {
				n = l
			}
			names = append(names, n)
			gen(n, depth-1)
		}
	}
	gen("", 3)
	for _, f := range filters {
		subs := FilterSubjects("p", f)
		for _, n := range names {
			if n == "" || !Match(f, n) {
				continue
			}
			subj := ToSubject("p", n)
			ok := false
			for _, s := range subs {
				if subjectMatch(s, subj) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("filter %q (subjects %v) does not cover %q (%q)", f, subs, n, subj)
			}
		}
	}
}

// subjectMatch is NATS subject matching, for the property test only.
func subjectMatch(filter, subj string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subj, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// FuzzFromSubject ensures decoding arbitrary subjects never panics and that
// whatever decodes re-encodes to the same subject.
func FuzzFromSubject(f *testing.F) {
	for _, s := range []string{"a.b", "%", "%2E.x", "%4", "a..b", "%ZZ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := FromSubject(s)
		if err != nil {
			return
		}
		if ValidateName(name, Limits{MaxLength: 1 << 20, MaxLevels: 1 << 20}) != nil {
			return
		}
		if got := string(AppendSubject(nil, name)); got != s {
			t.Fatalf("%q -> %q -> %q", s, name, got)
		}
	})
}
