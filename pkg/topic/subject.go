package topic

import (
	"errors"
	"strings"
)

// Topic levels become NATS subject tokens. NATS reserves '.', '*', '>' and
// whitespace, and forbids empty tokens, while MQTT allows all of them inside a
// level (and empty levels, as in "a//b" or "/a"). Each level is therefore
// escaped reversibly: a reserved byte, '%' itself and any control byte become
// "%XX" (upper-case hex), and an empty level becomes the lone token "%", which
// no escaped level can produce. Everything else, including non-ASCII UTF-8,
// passes through unchanged, so common topics map to readable subjects.

// ErrBadSubject is returned when a subject does not decode to a topic.
var ErrBadSubject = errors.New("topic: subject is not an escaped topic")

const hexDigits = "0123456789ABCDEF"

func needsEscape(c byte) bool {
	return c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>' || c == '%'
}

// appendLevel appends the escaped form of one topic level.
func appendLevel(b []byte, level string) []byte {
	if level == "" {
		return append(b, '%')
	}
	for i := 0; i < len(level); i++ {
		c := level[i]
		if needsEscape(c) {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

// AppendSubject appends the subject tokens for topic name (without prefix).
func AppendSubject(b []byte, name string) []byte {
	for i := 0; ; i++ {
		lv, rest, more := strings.Cut(name, "/")
		if i > 0 {
			b = append(b, '.')
		}
		b = appendLevel(b, lv)
		if !more {
			return b
		}
		name = rest
	}
}

// ToSubject returns prefix + "." + the escaped topic name.
func ToSubject(prefix, name string) string {
	b := make([]byte, 0, len(prefix)+1+len(name)+8)
	b = append(b, prefix...)
	b = append(b, '.')
	return string(AppendSubject(b, name))
}

// FilterSubjects returns the NATS subject filters (with prefix) that together
// cover the MQTT filter. "+" becomes "*"; a trailing "#" becomes ">" and, since
// "a/#" also matches "a", the parent subject as well. The subjects may match
// more than the filter ('$' topics under a leading wildcard); callers that need
// exact semantics check Match on delivery.
func FilterSubjects(prefix, filter string) []string {
	if filter == "#" {
		return []string{prefix + ".>"}
	}
	var b []byte
	b = append(b, prefix...)
	levels := strings.Split(filter, "/")
	for i, lv := range levels {
		if lv == "#" && i == len(levels)-1 {
			parent := string(b)
			return []string{parent, parent + ".>"}
		}
		b = append(b, '.')
		if lv == "+" {
			b = append(b, '*')
			continue
		}
		b = appendLevel(b, lv)
	}
	return []string{string(b)}
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// FromSubject decodes the tokens of a subject (prefix already removed) back
// into a topic name. Only the canonical encoding produced by AppendSubject is
// accepted, so every subject decodes to at most one topic and back.
func FromSubject(tokens string) (string, error) {
	if tokens == "" {
		return "", ErrBadSubject
	}
	var b strings.Builder
	b.Grow(len(tokens))
	for i := 0; ; i++ {
		tok, rest, more := strings.Cut(tokens, ".")
		if i > 0 {
			b.WriteByte('/')
		}
		switch {
		case tok == "%":
		case tok == "":
			return "", ErrBadSubject
		default:
			for j := 0; j < len(tok); j++ {
				c := tok[j]
				if c != '%' {
					if needsEscape(c) || c == '/' {
						return "", ErrBadSubject
					}
					b.WriteByte(c)
					continue
				}
				if j+2 >= len(tok) {
					return "", ErrBadSubject
				}
				hi, ok1 := unhex(tok[j+1])
				lo, ok2 := unhex(tok[j+2])
				if !ok1 || !ok2 || !needsEscape(hi<<4|lo) {
					return "", ErrBadSubject
				}
				b.WriteByte(hi<<4 | lo)
				j += 2
			}
		}
		if !more {
			return b.String(), nil
		}
		tokens = rest
	}
}
