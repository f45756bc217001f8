package stream

import (
	"context"
	"errors"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// Gap tells a client that messages after its position may be missing.
type Gap struct {
	// From is the position the client resumed from.
	From message.Position
	// EpochChanged is set when From belongs to a previous stream.
	EpochChanged bool
}

// Resume is the replay half of a resume for s, which must be paused and
// already registered with the hub for filters (so every message stored
// after that is buffered by s). It replays the stored messages after from
// through emit, each with the epoch its position belongs to, then makes s
// live: the owner's queue yields the rest, without duplicates. A nil from
// means live only: nothing is replayed.
//
// When messages may be missing, gap is called before the replayed messages
// (in the rare case that only the replay itself finds the hole, right
// after them). The returned epoch is the stream's current one.
func Resume(ctx context.Context, n *node.Node, tenant string, filters []string, from *message.Position,
	s *Subscriber, gap func(Gap) error, emit func(m *message.Message, epoch string) error) (epoch string, err error) {
	if from == nil {
		epoch, err = n.Backbone.EnsureTenant(ctx, tenant)
		if err != nil {
			return "", err
		}
		s.Live(0)
		return epoch, nil
	}
	// node.Replay reports a gap only when it returns; the client must
	// learn of it before the messages that follow the hole, so look at the
	// stream's bounds first. With a replay buffer covering a position the
	// stream no longer holds, this errs on the side of announcing a gap.
	st, err := n.Backbone.State(ctx, tenant)
	if err != nil && !errors.Is(err, backbone.ErrNoStream) {
		return "", err
	}
	told := false
	if err == nil {
		changed := from.Epoch != "" && from.Epoch != st.Epoch
		if changed || from.Seq < st.LastSeq && st.FirstSeq > from.Seq+1 {
			if err := gap(Gap{From: *from, EpochChanged: changed}); err != nil {
				return "", err
			}
			told = true
		}
	}
	epoch = st.Epoch
	res, err := n.Replay(ctx, tenant, filters, *from, func(m *message.Message) error { return emit(m, epoch) })
	if err != nil {
		return "", err
	}
	if res.Gap && !told {
		if err := gap(Gap{From: *from, EpochChanged: res.EpochChanged}); err != nil {
			return "", err
		}
	}
	if res.Epoch != "" {
		epoch = res.Epoch
	} else if epoch == "" {
		// Nothing was ever published: the stream is created now so that
		// every position handed out carries its epoch.
		if epoch, err = n.Backbone.EnsureTenant(ctx, tenant); err != nil {
			return "", err
		}
		if from.Epoch != "" && from.Epoch != epoch && !told {
			if err := gap(Gap{From: *from, EpochChanged: true}); err != nil {
				return "", err
			}
		}
	}
	s.Live(res.Last)
	return epoch, nil
}
