package node

import (
	"context"
	"errors"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
)

// ReplayResult says what a Replay covered.
type ReplayResult struct {
	// Epoch is the tenant stream's current epoch.
	Epoch string
	// Last is the stream's last sequence when Replay started: every message
	// up to it that matched was emitted (unless Gap), so live deliveries
	// with Seq <= Last are duplicates and must be dropped.
	Last uint64
	// Gap is true when messages after the requested position may be
	// missing: they left both the replay buffer and the stream, or the
	// position belongs to another epoch. Transports tell the client.
	Gap bool
	// EpochChanged is true when the position came from another epoch; the
	// replay then starts at the current end (live only).
	EpochChanged bool
}

const replayPage = 512

// Replay emits, in order, every stored message of tenant after position
// from that matches one of the filters and has not expired.
//
// It is the gap-free half of a resume: the caller takes live interest first
// (hub.Subscribe returns once it is in effect), buffers live deliveries,
// calls Replay, then passes live messages with Seq > result.Last. Messages
// stored before the live interest took effect have Seq <= Last and come from
// here; later ones come live. Replay reads the session service's replay
// buffer and fills from the JetStream stream whatever the buffer does not
// hold yet (the session service lags the stream slightly) or no longer
// holds (trimmed), so the answer does not depend on that lag.
//
// When messages after from may be missing, gap is called at the point of the
// hole: before any message that follows it is emitted.
func (n *Node) Replay(ctx context.Context, tenant string, filters []string, from message.Position,
	emit func(*message.Message) error, gap func(epochChanged bool) error) (ReplayResult, error) {
	st, err := n.Backbone.State(ctx, tenant)
	if errors.Is(err, backbone.ErrNoStream) {
		// Nothing was ever published: everything will come live.
		return ReplayResult{}, nil
	}
	if err != nil {
		return ReplayResult{}, err
	}
	res := ReplayResult{Epoch: st.Epoch, Last: st.LastSeq}
	after := from.Seq
	if from.Epoch != "" && from.Epoch != st.Epoch {
		res.Gap, res.EpochChanged = true, true
		return res, gap(true)
	}
	if after >= st.LastSeq {
		return res, nil
	}
	now := time.Now()
	emitted := after
	send := func(m *message.Message) error {
		if m.Seq <= emitted || m.Seq > st.LastSeq {
			return nil
		}
		emitted = m.Seq
		if m.Expired(now) || !matchAny(filters, m.Topic) {
			return nil
		}
		return emit(m)
	}

	// The replay buffer first, while it covers the position in this epoch.
	// Every page is checked, not only the first: the session service trims
	// the buffer while a long replay pages through it, and a page that
	// starts past where the previous one ended would skip the trimmed
	// messages. The stream fills from wherever the buffer stopped covering.
	if n.State != nil {
		from := after
		for {
			page, err := n.State.Replay(ctx, tenant, from, replayPage)
			if err != nil {
				n.Log.Warn("replay buffer unavailable, reading the stream", "tenant", tenant, "err", err)
				break
			}
			if page.Epoch != st.Epoch || page.TrimmedThrough > from {
				break
			}
			for _, m := range page.Messages {
				if err := send(m); err != nil {
					return res, err
				}
			}
			if len(page.Messages) < replayPage || emitted >= st.LastSeq {
				// The buffer is complete up to what the session service
				// applied when this page was read.
				if page.Applied > emitted {
					emitted = min(page.Applied, st.LastSeq)
				}
				break
			}
			from = emitted
		}
	}
	if emitted >= st.LastSeq {
		return res, nil
	}
	// The rest from the stream, the source of truth.
	if st.FirstSeq > emitted+1 {
		res.Gap = true
		if err := gap(false); err != nil {
			return res, err
		}
		emitted = st.FirstSeq - 1
	}
	err = n.Backbone.Range(ctx, tenant, filters, emitted, st.LastSeq, send)
	return res, err
}

func matchAny(filters []string, name string) bool {
	for _, f := range filters {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}
