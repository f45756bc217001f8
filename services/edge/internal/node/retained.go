package node

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
)

// RetainedResult is the retained state for one filter, and the stream
// position it is complete up to.
type RetainedResult struct {
	Messages []*message.Message
	// Last is the stream's last sequence when the read started. Called after
	// live interest took effect, live deliveries with Seq <= Last are already
	// reflected here.
	Last uint64
}

// Retained returns the retained messages matching filter, sorted by topic.
//
// The session service writes retained messages a little after the stream
// stores them, so a subscriber arriving right after a retained publish would
// miss it in the store; Retained therefore also reads the stream's tail that
// the store has not applied yet and folds its retained messages (and
// deletions) in. Call it after taking live interest.
func (n *Node) Retained(ctx context.Context, tenant, filter string) (RetainedResult, error) {
	st, err := n.stream.State(ctx, tenant)
	if errors.Is(err, backbone.ErrNoStream) {
		return RetainedResult{}, nil
	}
	if err != nil {
		return RetainedResult{}, err
	}
	res := RetainedResult{Last: st.LastSeq}
	byTopic := map[string]*message.Message{}
	applied := uint64(0)
	if n.state != nil {
		rs, err := n.state.State(ctx, tenant)
		if err != nil {
			return res, err
		}
		if rs.Epoch == st.Epoch {
			msgs, err := n.state.Retained(ctx, tenant, filter)
			if err != nil {
				return res, err
			}
			for _, m := range msgs {
				byTopic[m.Topic] = m
			}
			applied = rs.Applied
		}
	}
	now := time.Now()
	if applied < st.LastSeq {
		if st.FirstSeq > applied+1 {
			// The store is behind the stream's retention: nothing to fold
			// from before FirstSeq, the store is as good as it gets.
			applied = st.FirstSeq - 1
		}
		err := n.stream.Range(ctx, tenant, []string{filter}, applied, st.LastSeq, func(m *message.Message) error {
			if !m.Retain {
				return nil
			}
			if len(m.Payload) == 0 || m.Expired(now) {
				delete(byTopic, m.Topic)
			} else {
				byTopic[m.Topic] = m
			}
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	for _, m := range byTopic {
		res.Messages = append(res.Messages, m)
	}
	sort.Slice(res.Messages, func(i, j int) bool { return res.Messages[i].Topic < res.Messages[j].Topic })
	return res, nil
}
