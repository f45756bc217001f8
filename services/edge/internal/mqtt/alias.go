package mqtt

import (
	"container/list"
	"errors"
	"fmt"
)

// resolveAlias applies the MQTT 5 Topic Alias of an inbound PUBLISH
// (§3.3.2.3.4): a topic with an alias (re)defines it, an empty topic uses
// it. The aliases are the reader goroutine's, bounded by the Topic Alias
// Maximum the server advertised.
func (c *conn) resolveAlias(name string, alias uint16) (string, error) {
	if alias == 0 || int(alias) > c.aliasMax {
		return "", fmt.Errorf("%w: alias %d, maximum %d", ErrTopicAlias, alias, c.aliasMax) // [MQTT-3.3.2-9]
	}
	if name == "" {
		t, ok := c.aliasesIn[alias]
		if !ok {
			return "", errors.Join(ErrProtocol, fmt.Errorf("topic alias %d not defined", alias))
		}
		return t, nil
	}
	if c.aliasesIn == nil {
		c.aliasesIn = make(map[uint16]string)
	}
	c.aliasesIn[alias] = name
	return name, nil
}

// aliasLRU assigns topic aliases to the topics the server sends a client
// (§3.3.2.3.4), at most max of them; when all are taken, the least
// recently used alias is reassigned. It belongs to the connection's writer.
type aliasLRU struct {
	max     int
	lru     list.List // of *aliasEntry, most recently used first
	byTopic map[string]*list.Element
}

type aliasEntry struct {
	topic string
	alias uint16
}

func newAliasLRU(max int) *aliasLRU {
	return &aliasLRU{max: max, byTopic: make(map[string]*list.Element)}
}

// lookup returns the alias to send topic with, and whether the client
// already knows it (then the topic itself is left out). Nothing changes
// until commit: a PUBLISH that is not sent must not define an alias.
func (a *aliasLRU) lookup(topic string) (alias uint16, known bool) {
	if e, ok := a.byTopic[topic]; ok {
		return e.Value.(*aliasEntry).alias, true
	}
	if a.lru.Len() < a.max {
		return uint16(a.lru.Len() + 1), false
	}
	return a.lru.Back().Value.(*aliasEntry).alias, false
}

// commit records that topic was sent with the alias lookup returned.
func (a *aliasLRU) commit(topic string, known bool) {
	if known {
		a.lru.MoveToFront(a.byTopic[topic])
		return
	}
	if a.lru.Len() < a.max {
		a.byTopic[topic] = a.lru.PushFront(&aliasEntry{topic: topic, alias: uint16(a.lru.Len() + 1)})
		return
	}
	e := a.lru.Back()
	ent := e.Value.(*aliasEntry)
	delete(a.byTopic, ent.topic)
	ent.topic = topic
	a.byTopic[topic] = e
	a.lru.MoveToFront(e)
}
