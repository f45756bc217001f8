package httpapi

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/heraldmq/herald/services/edge/internal/node"
)

// Start reads the start a subscribing request asks for in its query, the
// same on every HTTP transport (GET /sse, GET /poll):
//
//	retained=true     the retained message of each matching topic first
//	rewind=10         the last 10 matching messages first
//	rewind=30s        the matching messages of the last 30 seconds first
//
// then live messages (node.ParseStart). resume names the query parameter
// of a resume position (lastEventId, cursor): a request may not ask for
// both a start and a resume. Without either the start is Live. An error
// is a bad request (400 bad_request).
func Start(q url.Values, resume string) (node.Start, error) {
	retained := false
	if v := q.Get("retained"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return node.Start{}, fmt.Errorf("%w: retained=%q: want true or false", node.ErrBadStart, v)
		}
		retained = b
	}
	s, err := node.ParseStart(retained, q.Get("rewind"))
	if err != nil {
		return node.Start{}, err
	}
	if s.Replays() && q.Get(resume) != "" {
		return node.Start{}, fmt.Errorf("%w: %s resumes a stream; retained and rewind start one", node.ErrBadStart, resume)
	}
	return s, nil
}
