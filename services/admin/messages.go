package admin

import (
	"context"
	"errors"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
)

// errPageFull stops a Range once a page holds page_size messages.
var errPageFull = errors.New("admin: page full")

// ListMessages implements adminv1.LiveServiceServer: it reads the tenant's
// stream (the backbone's Range, in stream order) after a position, through
// a topic filter, one bounded page at a time. It only reads: a tenant
// without a stream yet gets no messages and the position "0", from which
// the next call reads whatever stream is created meanwhile.
func (l *liveService) ListMessages(ctx context.Context, req *adminv1.ListMessagesRequest) (*adminv1.ListMessagesResponse, error) {
	if err := l.check(ctx, req.GetTenant(), "reading the stream", needsBackbone, l.bb != nil); err != nil {
		return nil, err
	}
	n, filter, err := filteredPage(req.GetPageSize(), req.GetFilter())
	if err != nil {
		return nil, err
	}
	var after message.Position
	fromNow := req.GetAfter() == ""
	if !fromNow {
		if after, err = message.ParsePosition(req.GetAfter()); err != nil {
			return nil, invalid("after: " + err.Error())
		}
	}
	st, err := l.bb.State(ctx, req.GetTenant())
	if errors.Is(err, backbone.ErrNoStream) {
		none := message.Position{}.String()
		return &adminv1.ListMessagesResponse{NextPosition: none, LastPosition: none}, nil
	}
	if err != nil {
		return nil, l.natsError(err)
	}
	last := message.Position{Epoch: st.Epoch, Seq: st.LastSeq}
	resp := &adminv1.ListMessagesResponse{NextPosition: last.String(), LastPosition: last.String()}
	if fromNow {
		return resp, nil
	}
	from := after.Seq
	if after.Epoch != "" && after.Epoch != st.Epoch {
		// Another stream of the tenant's id: all of this one is new.
		from = 0
	}
	if from >= st.LastSeq {
		return resp, nil
	}
	err = l.bb.Range(ctx, req.GetTenant(), []string{filter}, from, st.LastSeq, func(m *message.Message) error {
		resp.Messages = append(resp.Messages, messageProto(st.Epoch, m))
		if len(resp.Messages) == n {
			resp.NextPosition = message.Position{Epoch: st.Epoch, Seq: m.Seq}.String()
			return errPageFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return nil, l.natsError(err)
	}
	return resp, nil
}
