// Package authz is Herald's access-control decision logic, free of I/O so
// that every edge and the admin API decide alike: capabilities (which topic
// filters a client may publish to, subscribe to or read the history of),
// API-key tokens and their argon2id hashes, and JWT verification.
//
// The data the decisions run on (keys, JWT verification keys, capabilities,
// limits) is stored by package tenant and held in memory by
// tenant.Directory; this package only decides.
package authz

import (
	"fmt"
	"slices"
	"strings"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/heraldmq/herald/pkg/topic"
)

// Sentinel errors. Edges map them to protocol refusals in one place (MQTT
// CONNACK 0x86/0x87, SUBACK/PUBACK 0x87, HTTP 401/403, WebSocket close
// 1008); the admin API maps ErrInvalidCapability to INVALID_ARGUMENT.
var (
	// ErrInvalidCapability is returned for a capability whose filter is not
	// a valid MQTT topic filter or which names no or unknown actions.
	ErrInvalidCapability = fault.New(fault.Invalid, "authz: invalid capability")
	// ErrBadToken is returned for a credential that is malformed: not an
	// API-key token, or a JWT that does not parse.
	ErrBadToken = fault.New(fault.Unauthenticated, "authz: malformed token")
	// ErrBadSecret is returned when a secret does not match its hash, or a
	// JWT's signature does not verify with any candidate key.
	ErrBadSecret = fault.New(fault.Unauthenticated, "authz: secret does not match")
	// ErrExpired is returned for a credential used outside its validity
	// period (JWT exp/nbf/iat, or a key's expiry).
	ErrExpired = fault.New(fault.Unauthenticated, "authz: credential expired or not yet valid")
	// ErrClaims is returned for a JWT whose issuer, audience, tenant or
	// capabilities claim is wrong or missing.
	ErrClaims = fault.New(fault.Unauthenticated, "authz: token claims rejected")
)

// Action is something a client does to a topic. Actions combine as a bit
// set.
type Action uint8

// Actions.
const (
	// Publish sends a message to a topic name.
	Publish Action = 1 << iota
	// Subscribe receives live messages matching a topic filter, and the
	// retained messages matching it.
	Subscribe
	// History reads the stored messages of a topic filter: resuming an SSE
	// or WebSocket stream from a position, or replay.
	History
)

// AllActions is every action.
const AllActions = Publish | Subscribe | History

// actionNames are the names actions have in capability strings and JSON.
var actionNames = []struct {
	a    Action
	name string
}{{Publish, "publish"}, {Subscribe, "subscribe"}, {History, "history"}}

// String returns the actions as a comma-separated list, such as
// "publish,subscribe".
func (a Action) String() string {
	var names []string
	for _, n := range actionNames {
		if a&n.a != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// ParseAction parses one action name: publish, subscribe or history (also
// pub, sub, hist), or all.
func ParseAction(s string) (Action, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "publish", "pub":
		return Publish, nil
	case "subscribe", "sub":
		return Subscribe, nil
	case "history", "hist":
		return History, nil
	case "all", "*":
		return AllActions, nil
	}
	return 0, fmt.Errorf("%w: unknown action %q", ErrInvalidCapability, s)
}

// Capability grants Actions on the topics matched by Filter, an MQTT topic
// filter within the client's tenant. As text (and so in JSON) it is its
// String form, "publish,subscribe:sensors/#".
type Capability struct {
	// Filter is an MQTT topic filter: "sensors/#", "devices/+/state", or a
	// plain topic name.
	Filter string
	// Actions granted on it.
	Actions Action
}

// MarshalText implements encoding.TextMarshaler.
func (c Capability) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it validates.
func (c *Capability) UnmarshalText(b []byte) error {
	p, err := ParseCapability(string(b))
	if err != nil {
		return err
	}
	*c = p
	return nil
}

// Validate reports whether c has a valid filter and at least one known
// action.
func (c Capability) Validate() error {
	if c.Actions == 0 || c.Actions&^AllActions != 0 {
		return fmt.Errorf("%w: %q grants no known action", ErrInvalidCapability, c.Filter)
	}
	if err := topic.ValidateFilter(c.Filter, topic.Limits{}); err != nil {
		return fmt.Errorf("%w: filter %q: %w", ErrInvalidCapability, c.Filter, err)
	}
	return nil
}

// String formats c as ParseCapability reads it: "publish,subscribe:a/#".
func (c Capability) String() string { return c.Actions.String() + ":" + c.Filter }

// ParseCapability parses "<actions>:<filter>", the form used on the command
// line and in JWT claims: actions are comma-separated names (see
// ParseAction), the filter is everything after the first colon, so it may
// itself contain colons. Example: "publish,subscribe:sensors/#".
func ParseCapability(s string) (Capability, error) {
	actions, filter, ok := strings.Cut(s, ":")
	if !ok {
		return Capability{}, fmt.Errorf("%w: %q is not <actions>:<filter>", ErrInvalidCapability, s)
	}
	var c Capability
	for name := range strings.SplitSeq(actions, ",") {
		a, err := ParseAction(name)
		if err != nil {
			return Capability{}, err
		}
		c.Actions |= a
	}
	c.Filter = filter
	return c, c.Validate()
}

// Capabilities is the set of grants a client holds. The zero value grants
// nothing: access is denied unless a capability allows it.
type Capabilities []Capability

// Validate reports the first invalid capability.
func (cs Capabilities) Validate() error {
	for _, c := range cs {
		if err := c.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// CanPublish reports whether some capability with Publish matches the topic
// name (which the caller has validated).
func (cs Capabilities) CanPublish(name string) bool {
	return slices.ContainsFunc(cs, func(c Capability) bool {
		return c.Actions&Publish != 0 && topic.Match(c.Filter, name)
	})
}

// CanSubscribe reports whether one capability with Subscribe covers the
// whole of the requested filter (see Covers): "sensors/#" allows
// subscribing to "sensors/+" but not to "#". Shared-subscription prefixes
// ($share/<group>/) must be stripped by the caller first.
func (cs Capabilities) CanSubscribe(filter string) bool {
	return cs.covers(Subscribe, filter)
}

// CanReadHistory reports whether one capability with History covers the
// requested filter, as CanSubscribe does for Subscribe.
func (cs Capabilities) CanReadHistory(filter string) bool {
	return cs.covers(History, filter)
}

// Allows reports whether cs allows action on t: a topic name for Publish, a
// filter for Subscribe and History. An action of several bits needs them
// all.
func (cs Capabilities) Allows(action Action, t string) bool {
	if action == 0 || action&^AllActions != 0 {
		return false
	}
	if action&Publish != 0 && !cs.CanPublish(t) {
		return false
	}
	if action&Subscribe != 0 && !cs.CanSubscribe(t) {
		return false
	}
	if action&History != 0 && !cs.CanReadHistory(t) {
		return false
	}
	return true
}

func (cs Capabilities) covers(a Action, filter string) bool {
	return slices.ContainsFunc(cs, func(c Capability) bool {
		return c.Actions&a != 0 && Covers(c.Filter, filter)
	})
}

// ParseCapabilities parses each string with ParseCapability.
func ParseCapabilities(ss []string) (Capabilities, error) {
	cs := make(Capabilities, 0, len(ss))
	for _, s := range ss {
		c, err := ParseCapability(s)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}
