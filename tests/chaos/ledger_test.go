package chaos

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// pubRecord is what the publishers know of one message: when it was first
// tried, how often it was sent (a retry after a failure or a timeout sends
// it again as a new publish, as an application does), and whether a send
// was acknowledged (PUBACK, PUBCOMP or HTTP 2xx).
type pubRecord struct {
	topic    string
	qos      byte
	first    time.Time
	attempts int
	acked    bool
}

// ledger records every message the publishers of one fault sent.
type ledger struct {
	mu   sync.Mutex
	msgs map[string]*pubRecord // by payload, unique per message
}

func newLedger() *ledger { return &ledger{msgs: map[string]*pubRecord{}} }

func (l *ledger) attempt(payload, topic string, qos byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.msgs[payload]
	if r == nil {
		r = &pubRecord{topic: topic, qos: qos, first: time.Now()}
		l.msgs[payload] = r
	}
	r.attempts++
}

func (l *ledger) ack(payload string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs[payload].acked = true
}

// ackedAfter reports whether a message first tried after t was acknowledged.
func (l *ledger) ackedAfter(t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if m.acked && m.first.After(t) {
			return true
		}
	}
	return false
}

// unacked returns the topics of those given with no acknowledged message
// first sent after t.
func (l *ledger) unacked(t time.Time, topics []string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	acked := map[string]bool{}
	for _, m := range l.msgs {
		if m.acked && m.first.After(t) {
			acked[m.topic] = true
		}
	}
	var out []string
	for _, tp := range topics {
		if !acked[tp] {
			out = append(out, tp)
		}
	}
	return out
}

// sink is one subscriber's record: how often each payload arrived and when
// it first did.
type sink struct {
	name string
	mu   sync.Mutex
	// count and firstAt are by payload.
	count   map[string]int
	firstAt map[string]time.Time
	// gaps counts the loss signals (SSE event: gap, WebSocket gap frames).
	gaps       int
	reconnects int
	// flagged counts deliveries that carried the DUP flag (MQTT 3.1.1),
	// by payload: a retransmission the server marked as one.
	flagged map[string]int
}

func newSink(name string) *sink {
	return &sink{name: name, count: map[string]int{}, firstAt: map[string]time.Time{}, flagged: map[string]int{}}
}

func (s *sink) add(payload string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count[payload] == 0 {
		s.firstAt[payload] = now
	}
	s.count[payload]++
}

func (s *sink) dupFlag(payload string) { s.mu.Lock(); s.flagged[payload]++; s.mu.Unlock() }

func (s *sink) gap()       { s.mu.Lock(); s.gaps++; s.mu.Unlock() }
func (s *sink) reconnect() { s.mu.Lock(); s.reconnects++; s.mu.Unlock() }

// missing counts the acknowledged messages s never got.
func (s *sink) missing(l *ledger) (n int, examples []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, r := range l.msgs {
		if r.acked && s.count[p] == 0 {
			n++
			if len(examples) < 5 {
				examples = append(examples, p)
			}
		}
	}
	sort.Strings(examples)
	return n, examples
}

// dups counts messages s got more than once, by the published QoS. Only
// messages sent once count: a message the publisher had to send again is
// two messages to Herald, and two deliveries of it are no duplicate.
func (s *sink) dups(l *ledger) (qos1, qos2 int, retried int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, c := range s.count {
		r := l.msgs[p]
		// A copy flagged DUP is a retransmission of an exchange the client
		// had not completed; a client that delivers it again (Paho for
		// MQTT 3.1.1 does not track received QoS 2 ids) makes that copy,
		// not Herald. They are counted apart (dupFlagged).
		c -= s.flagged[p]
		if c < 2 || r == nil {
			continue
		}
		switch {
		case r.attempts > 1:
			retried++
		case r.qos == 2:
			qos2++
		default:
			qos1++
		}
	}
	return qos1, qos2, retried
}

// firstAfter is when s first got a message that was first sent at or after
// t; ok is false if it got none.
func (s *sink) firstAfter(l *ledger, t time.Time) (at time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, got := range s.firstAt {
		if r := l.msgs[p]; r != nil && !r.first.Before(t) && (!ok || got.Before(at)) {
			at, ok = got, true
		}
	}
	return at, ok
}

// recovery is how long after t every sink had again received a message
// sent at or after t: the slowest subscriber's time to recover.
func recovery(sinks []*sink, l *ledger, t time.Time) (time.Duration, string) {
	var worst time.Duration
	who := ""
	for _, s := range sinks {
		at, ok := s.firstAfter(l, t)
		if !ok {
			return -1, s.name
		}
		if d := at.Sub(t); d > worst {
			worst, who = d, s.name
		}
	}
	return worst, who
}

// result is one fault's row of the table in docs/reliability.md.
type result struct {
	Fault       string         `json:"fault"`
	Mode        string         `json:"mode"`
	Held        string         `json:"held"` // how long the fault lasted before the restart or heal
	Sent        int            `json:"sent"`
	Acked       int            `json:"acked"`
	Unconfirmed int            `json:"unconfirmed"` // sent, never acknowledged (not counted as lost)
	Retried     int            `json:"retried"`     // messages the publisher sent more than once
	Lost        map[string]int `json:"lost"`        // by subscriber: acknowledged, never received
	DupQoS2     map[string]int `json:"dup_qos2"`    // by subscriber: QoS 2 messages received twice
	DupQoS1     int            `json:"dup_qos1"`    // all subscribers: QoS 1 messages received twice (allowed)
	DupFlagged  int            `json:"dup_flagged"` // retransmissions (DUP) an MQTT 3.1.1 client library delivered again
	Gaps        int            `json:"gaps"`        // gap signals to SSE/WebSocket subscribers
	Reconnects  int            `json:"reconnects"`  // SSE/WebSocket reconnects
	RecoverMS   int64          `json:"recover_ms"`  // fault → every subscriber got a message sent after it (-1: never)
	RestartMS   int64          `json:"restart_ms"`  // restart/heal → the same
	Note        string         `json:"note,omitempty"`
}

func (r result) lostTotal() int {
	n := 0
	for _, v := range r.Lost {
		n += v
	}
	return n
}

func (r result) dupQoS2Total() int {
	n := 0
	for _, v := range r.DupQoS2 {
		n += v
	}
	return n
}

func ms(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

func fmtMS(v int64) string {
	if v < 0 {
		return "never"
	}
	return fmt.Sprintf("%.1f s", float64(v)/1000)
}

func byName(m map[string]int) string {
	var names []string
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, ", ")
}

// markdownHeader and markdown give the table of docs/reliability.md.
const markdownHeader = "| fault | mode | held | sent / acked / unconfirmed | lost (acked, never received) | QoS 2 duplicates | QoS 1 duplicates | gaps | recover after fault | after restart/heal |\n" +
	"|---|---|---|---|---|---|---|---|---|---|\n"

func (r result) markdown() string {
	return fmt.Sprintf("| %s | %s | %s | %d / %d / %d | %s | %s | %d | %d | %s | %s |\n",
		r.Fault, r.Mode, r.Held, r.Sent, r.Acked, r.Unconfirmed, byName(r.Lost), byName(r.DupQoS2),
		r.DupQoS1, r.Gaps, fmtMS(r.RecoverMS), fmtMS(r.RestartMS))
}
