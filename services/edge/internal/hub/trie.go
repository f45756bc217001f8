package hub

import (
	"strings"
	"sync/atomic"
)

// trie indexes one tenant's subscriptions by topic filter so a delivery costs
// the depth of the topic, not the number of subscriptions.
type trie struct {
	root node
	// lastMatch is the number of subscriptions the tenant's previous
	// message matched: the next match starts with that capacity, instead
	// of growing its slice one doubling at a time (8 allocations for a
	// 1→100 fan-out).
	lastMatch atomic.Int32
}

type node struct {
	children map[string]*node
	plus     *node
	hash     []*Subscription // subscriptions whose filter ends in "#" here
	subs     []*Subscription // subscriptions whose filter ends exactly here
}

func (n *node) child(level string, create bool) *node {
	if level == "+" {
		if n.plus == nil && create {
			n.plus = &node{}
		}
		return n.plus
	}
	c := n.children[level]
	if c == nil && create {
		if n.children == nil {
			n.children = map[string]*node{}
		}
		c = &node{}
		n.children[level] = c
	}
	return c
}

func (n *node) empty() bool {
	return len(n.children) == 0 && n.plus == nil && len(n.hash) == 0 && len(n.subs) == 0
}

func (t *trie) add(s *Subscription) {
	n := &t.root
	levels := strings.Split(s.Filter, "/")
	for i, lv := range levels {
		if lv == "#" && i == len(levels)-1 {
			n.hash = append(n.hash, s)
			return
		}
		n = n.child(lv, true)
	}
	n.subs = append(n.subs, s)
}

// remove deletes s and prunes empty nodes; it reports whether s was present.
func (t *trie) remove(s *Subscription) bool {
	return removeAt(&t.root, strings.Split(s.Filter, "/"), s)
}

func removeAt(n *node, levels []string, s *Subscription) bool {
	if len(levels) == 1 && levels[0] == "#" {
		var ok bool
		n.hash, ok = without(n.hash, s)
		return ok
	}
	if len(levels) == 0 {
		var ok bool
		n.subs, ok = without(n.subs, s)
		return ok
	}
	c := n.child(levels[0], false)
	if c == nil {
		return false
	}
	ok := removeAt(c, levels[1:], s)
	if c.empty() {
		if levels[0] == "+" {
			n.plus = nil
		} else {
			delete(n.children, levels[0])
		}
	}
	return ok
}

func without(list []*Subscription, s *Subscription) ([]*Subscription, bool) {
	for i, x := range list {
		if x == s {
			last := len(list) - 1
			list[i] = list[last]
			list[last] = nil
			return list[:last], true
		}
	}
	return list, false
}

// match calls fn for every subscription whose filter matches the topic name.
// Filters starting with a wildcard do not match '$' topics [MQTT-4.7.2-1].
func (t *trie) match(name string, fn func(*Subscription)) {
	dollar := strings.HasPrefix(name, "$")
	matchAt(&t.root, name, true, dollar, fn)
}

func matchAt(n *node, rest string, first, dollar bool, fn func(*Subscription)) {
	wild := !(first && dollar)
	if wild {
		for _, s := range n.hash {
			fn(s)
		}
	}
	level, tail, more := strings.Cut(rest, "/")
	if c := n.children[level]; c != nil {
		matchLeaf(c, tail, more, dollar, fn)
	}
	if wild && n.plus != nil {
		matchLeaf(n.plus, tail, more, dollar, fn)
	}
}

func matchLeaf(c *node, tail string, more, dollar bool, fn func(*Subscription)) {
	if more {
		matchAt(c, tail, false, dollar, fn)
		return
	}
	for _, s := range c.subs {
		fn(s)
	}
	// "a/#" matches "a".
	for _, s := range c.hash {
		fn(s)
	}
}
