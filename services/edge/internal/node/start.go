package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
)

// Start says what a subscription is owed before live messages. The zero
// Start is Live.
//
// Every start hands over to live messages the same way: live interest is
// taken first (Subscribe), what arrives is held while the start is
// replayed, and the live messages the start already gave are dropped —
// no message falls between the two, none comes twice.
type Start struct {
	after    *message.Position
	retained bool
	// last and since are the rewinds: the last last messages, the
	// messages of the last since.
	last  int
	since time.Duration
}

// Live starts with the messages stored from the subscription on.
func Live() Start { return Start{} }

// After starts after position p: every stored message after it, in order,
// then live ones. When messages after p may be missing (they left the
// stream, or p belongs to another epoch) a gap comes first. A position
// without an epoch is one in the current epoch.
func After(p message.Position) Start { return Start{after: &p} }

// RetainedFirst starts with the retained messages of the subscription's
// filters (the last of each topic, those expired or cleared left out, by
// topic), then live ones: a live message that a retained one already gave,
// or superseded, is not delivered again. MQTT's SUBSCRIBE; for the other
// transports, a dashboard's first paint.
func RetainedFirst() Start { return Start{retained: true} }

// Last starts with the last n stored messages matching the subscription's
// filters (fewer if the stream holds fewer), in order, then live ones.
// n must be at least 1.
func Last(n int) Start { return Start{last: n} }

// Since starts with the stored messages matching the subscription's
// filters that were stored within d before the subscription, in order,
// then live ones. d must be positive.
func Since(d time.Duration) Start { return Start{since: d} }

// Position returns the position a start After begins after.
func (s Start) Position() (message.Position, bool) {
	if s.after == nil {
		return message.Position{}, false
	}
	return *s.after, true
}

// History reports whether the start reads stored messages, which needs
// the history capability: a resume and the rewinds. The retained messages
// of a retained-first start are the topic's state, not its history.
func (s Start) History() bool { return s.after != nil || s.rewind() }

// Replays reports whether the start gives anything before live messages.
func (s Start) Replays() bool { return s.History() || s.retained }

// RetainedFirst reports whether the start is RetainedFirst.
func (s Start) RetainedFirst() bool { return s.retained }

// rewind reports whether the start is Last or Since.
func (s Start) rewind() bool { return s.last > 0 || s.since > 0 }

// String names the start as ParseStart reads it ("" for Live, and for
// After, which is named by its position).
func (s Start) String() string {
	switch {
	case s.retained:
		return "retained"
	case s.last > 0:
		return strconv.Itoa(s.last)
	case s.since > 0:
		return s.since.String()
	}
	return ""
}

// ErrBadStart is a start a client asked for that is not one.
var ErrBadStart = fmt.Errorf("%w: start", errBadRequest)

// ParseStart reads the start a client asks for, the same on every
// transport: retained asks for the retained messages first; rewind is a
// count of messages ("10": Last) or a duration ("30s", "5m": Since, Go's
// notation, at most maxSince). At most one of them; neither is Live. An
// error wraps ErrBadStart (fault.Invalid).
func ParseStart(retained bool, rewind string) (Start, error) {
	switch {
	case retained && rewind != "":
		return Start{}, fmt.Errorf("%w: retained and rewind exclude each other", ErrBadStart)
	case retained:
		return RetainedFirst(), nil
	case rewind == "":
		return Live(), nil
	}
	if n, err := strconv.Atoi(rewind); err == nil {
		if n < 1 {
			return Start{}, fmt.Errorf("%w: rewind %q: a count of messages is at least 1", ErrBadStart, rewind)
		}
		return Last(n), nil
	}
	d, err := time.ParseDuration(rewind)
	if err != nil || d <= 0 || d > maxSince {
		return Start{}, fmt.Errorf("%w: rewind %q: a count of messages (10) or a duration up to %s (30s, 5m)",
			ErrBadStart, rewind, maxSince)
	}
	return Since(d), nil
}

// maxSince bounds a rewind by duration: a week, beyond any stream's
// replay window in practice, and far from time.Duration's overflow.
const maxSince = 7 * 24 * time.Hour

// errStopRead ends a read of the stream early.
var errStopRead = errors.New("node: read stopped")

// rewindStart returns the sequence a rewind of filters starts after:
// the one before the n-th last matching message (Last), or before the
// first message stored within since (Since); the stream's state st is
// read by the caller.
//
// Last reads the stream backwards in windows that double (from 2n
// sequences, at most rewindWindow), counting matching messages, so that a
// busy stream is read only as far back as the rewind reaches. Since
// searches the stream's sequences for the first message stored at or
// after the cutoff: the stream stamps messages with the server's clock in
// sequence order, so a binary search reads a message per step, about
// log2(messages) reads, whatever the filters.
func (n *Node) rewindStart(ctx context.Context, tenant string, filters []string, from Start, st backbone.StreamState) (uint64, error) {
	if st.LastSeq == 0 || st.FirstSeq > st.LastSeq {
		return st.LastSeq, nil
	}
	floor := st.FirstSeq - 1
	if from.since > 0 {
		cutoff := time.Now().Add(-from.since)
		lo, hi := st.FirstSeq, st.LastSeq+1
		for lo < hi {
			mid := lo + (hi-lo)/2
			var m *message.Message
			err := n.stream.Range(ctx, tenant, []string{"#"}, mid-1, st.LastSeq, func(x *message.Message) error {
				m = x
				return errStopRead
			})
			if err != nil && !errors.Is(err, errStopRead) {
				return 0, err
			}
			if m == nil || !m.Time.Before(cutoff) {
				hi = mid
			} else {
				lo = m.Seq + 1
			}
		}
		return lo - 1, nil
	}
	now := time.Now()
	count, hi := 0, st.LastSeq
	window := uint64(min(max(2*from.last, 64), rewindWindow))
	var seqs []uint64
	for hi > floor {
		lo := max(floor, hi-min(window, hi))
		seqs = seqs[:0]
		err := n.stream.Range(ctx, tenant, filters, lo, hi, func(m *message.Message) error {
			if !m.Expired(now) {
				seqs = append(seqs, m.Seq)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if count+len(seqs) >= from.last {
			return seqs[len(seqs)-(from.last-count)] - 1, nil
		}
		count += len(seqs)
		hi = lo
		window = min(2*window, rewindWindow)
	}
	return floor, nil
}

// rewindWindow bounds the sequences one read of a Last rewind spans.
const rewindWindow = 4096
