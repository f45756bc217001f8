package admin

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
)

// TestListMessages ensures the stream reads from a position through a
// filter in bounded pages, that "from now" and a tenant without a stream
// give a position to poll from which misses nothing published afterwards,
// that a position of another epoch reads the current stream from its
// start, and that one tenant's messages never show in another's reads.
func TestListMessages(t *testing.T) {
	f := newLiveFixture(t)
	op := operatorToken
	type page struct {
		Messages []struct {
			Topic, Payload, Position string
		}
		NextPosition, LastPosition string
	}
	read := func(tenantID, query string) page {
		t.Helper()
		out := f.must(t, 200, "GET", "/v1/tenants/"+tenantID+"/messages?"+query, op, nil)
		var p page
		p.NextPosition, _ = out["nextPosition"].(string)
		p.LastPosition, _ = out["lastPosition"].(string)
		ms, _ := out["messages"].([]any)
		for _, m := range ms {
			m := m.(map[string]any)
			b, _ := base64.StdEncoding.DecodeString(m["payload"].(string))
			p.Messages = append(p.Messages, struct{ Topic, Payload, Position string }{m["topic"].(string), string(b), m["position"].(string)})
		}
		return p
	}
	publish := func(tenantID, tp, payload string) {
		t.Helper()
		f.must(t, 200, "POST", "/v1/tenants/"+tenantID+"/publish", op, map[string]any{
			"topic": tp, "payload": base64.StdEncoding.EncodeToString([]byte(payload))})
	}

	// No stream yet: "0", and what comes next is read from it.
	start := read("acme", "")
	if start.NextPosition != "0" || len(start.Messages) != 0 {
		t.Fatalf("a tenant without a stream: %+v, want no messages and next position 0", start)
	}
	for i := range 5 {
		publish("acme", fmt.Sprintf("sensors/%d", i), fmt.Sprint("v", i))
		publish("acme", "other", fmt.Sprint("o", i))
	}
	publish("beta", "sensors/0", "beta's")

	p := read("acme", "filter="+url.QueryEscape("sensors/#")+"&page_size=3&after="+start.NextPosition)
	if len(p.Messages) != 3 || p.Messages[0].Payload != "v0" || p.Messages[2].Payload != "v2" || p.NextPosition != p.Messages[2].Position {
		t.Fatalf("first page: %+v, want v0..v2 and the next position at v2", p)
	}
	p = read("acme", "filter="+url.QueryEscape("sensors/#")+"&after="+p.NextPosition)
	if len(p.Messages) != 2 || p.Messages[0].Payload != "v3" || p.Messages[1].Payload != "v4" {
		t.Fatalf("second page: %+v, want v3 v4", p)
	}
	if p.NextPosition != p.LastPosition {
		t.Fatalf("a page not full: next position %s, want the stream's last %s", p.NextPosition, p.LastPosition)
	}
	last, err := message.ParsePosition(p.LastPosition)
	if err != nil || last.Seq != 10 {
		t.Fatalf("last position %q (%v), want sequence 10 (every topic)", p.LastPosition, err)
	}
	// Caught up: nothing, same position.
	if q := read("acme", "after="+p.NextPosition); len(q.Messages) != 0 || q.NextPosition != p.NextPosition {
		t.Fatalf("caught up: %+v", q)
	}
	// From now: no messages, the last position.
	if q := read("acme", ""); len(q.Messages) != 0 || q.NextPosition != p.LastPosition {
		t.Fatalf("from now: %+v, want next position %s", q, p.LastPosition)
	}
	// Another epoch: from the start of the stream.
	if q := read("acme", "page_size=1&after=zzzz-99"); len(q.Messages) != 1 || q.Messages[0].Payload != "v0" {
		t.Fatalf("another epoch: %+v, want the stream's first message", q)
	}
	// Beta's stream holds only beta's message.
	if q := read("beta", "after=0"); len(q.Messages) != 1 || q.Messages[0].Payload != "beta's" {
		t.Fatalf("beta: %+v, want only its own message", q)
	}
	f.must(t, 400, "GET", "/v1/tenants/acme/messages?filter="+url.QueryEscape("a/#/b"), op, nil)
	f.must(t, 400, "GET", "/v1/tenants/acme/messages?after=x-y", op, nil)
	f.must(t, 404, "GET", "/v1/tenants/nobody/messages", op, nil)

	// gRPC answers the same.
	g := f.grpc(t, op).live
	resp, err := g.ListMessages(t.Context(), &adminv1.ListMessagesRequest{Tenant: "acme", Filter: "other", After: "0"})
	if err != nil || len(resp.GetMessages()) != 5 {
		t.Fatalf("gRPC: %v %v, want the 5 messages of topic other", resp, err)
	}
}
