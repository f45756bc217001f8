// Package topic validates MQTT topic names and filters, matches filters
// against names, and maps both onto NATS subjects reversibly.
//
// Herald speaks MQTT topics on every transport (MQTT, SSE, WebSocket, HTTP),
// so these rules are the one definition of what a topic is. The mapping onto
// NATS subjects lives here too because the edge (publishing and taking live
// interest) and the session service (consuming) must agree on it byte for byte.
package topic

import (
	"strings"
	"unicode/utf8"

	"github.com/heraldmq/herald/pkg/fault"
)

// Sentinel errors returned by ValidateName and ValidateFilter. They are mapped
// to protocol reason codes in one place by each transport.
var (
	// ErrEmpty is returned for a zero-length topic name or filter [MQTT-4.7.3-1].
	ErrEmpty = fault.New(fault.InvalidFilter, "topic: empty")
	// ErrTooLong is returned when a topic exceeds the configured maximum length.
	ErrTooLong = fault.New(fault.InvalidFilter, "topic: too long")
	// ErrTooDeep is returned when a topic has more levels than allowed.
	ErrTooDeep = fault.New(fault.InvalidFilter, "topic: too many levels")
	// ErrInvalidUTF8 is returned for malformed UTF-8 or a U+0000 character [MQTT-4.7.3-2].
	ErrInvalidUTF8 = fault.New(fault.InvalidFilter, "topic: invalid UTF-8")
	// ErrWildcardInName is returned when a topic name (not a filter) contains + or # [MQTT-3.3.2-2].
	ErrWildcardInName = fault.New(fault.InvalidFilter, "topic: wildcard in topic name")
	// ErrBadWildcard is returned when + or # do not occupy a whole level, or # is not last [MQTT-4.7.1-1, MQTT-4.7.1-2].
	ErrBadWildcard = fault.New(fault.InvalidFilter, "topic: misplaced wildcard")
)

// Limits bound the size of names and filters. Zero values take the defaults.
type Limits struct {
	// MaxLength is the maximum length in bytes; default 1024. NATS control
	// lines cap subjects at a few KiB, and escaping can triple a byte.
	MaxLength int
	// MaxLevels is the maximum number of levels; default 32.
	MaxLevels int
}

// DefaultLimits are used when a zero Limits is given.
var DefaultLimits = Limits{MaxLength: 1024, MaxLevels: 32}

func (l Limits) withDefaults() Limits {
	if l.MaxLength <= 0 {
		l.MaxLength = DefaultLimits.MaxLength
	}
	if l.MaxLevels <= 0 {
		l.MaxLevels = DefaultLimits.MaxLevels
	}
	return l
}

func validateCommon(s string, l Limits) error {
	l = l.withDefaults()
	if s == "" {
		return ErrEmpty
	}
	if len(s) > l.MaxLength {
		return ErrTooLong
	}
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return ErrInvalidUTF8
	}
	if strings.Count(s, "/")+1 > l.MaxLevels {
		return ErrTooDeep
	}
	return nil
}

// ValidateName checks a topic name used in a publish.
func ValidateName(name string, l Limits) error {
	if err := validateCommon(name, l); err != nil {
		return err
	}
	if strings.ContainsAny(name, "+#") {
		return ErrWildcardInName
	}
	return nil
}

// ValidateFilter checks a topic filter used in a subscription.
func ValidateFilter(filter string, l Limits) error {
	if err := validateCommon(filter, l); err != nil {
		return err
	}
	levels := strings.Split(filter, "/")
	for i, lv := range levels {
		switch {
		case lv == "#":
			if i != len(levels)-1 {
				return ErrBadWildcard
			}
		case lv == "+":
		case strings.ContainsAny(lv, "+#"):
			return ErrBadWildcard
		}
	}
	return nil
}

// IsWildcard reports whether filter contains a wildcard level.
func IsWildcard(filter string) bool {
	return strings.ContainsAny(filter, "+#")
}

// Match reports whether the topic name matches the filter. Both must be
// valid. A filter starting with a wildcard never matches a name starting with
// '$' [MQTT-4.7.2-1].
func Match(filter, name string) bool {
	if name != "" && name[0] == '$' && filter != "" && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		nl, nrest, nmore := strings.Cut(name, "/")
		if fl != "+" && fl != nl {
			return false
		}
		switch {
		case !fmore && !nmore:
			return true
		case !nmore:
			// "a/#" matches "a": the multi-level wildcard includes the parent.
			return frest == "#"
		case !fmore:
			return false
		}
		filter, name = frest, nrest
	}
}
