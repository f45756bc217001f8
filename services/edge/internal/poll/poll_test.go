package poll_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/poll"
	"github.com/nats-io/nats.go/jetstream"
)

func publish(t *testing.T, n *node.Node, topic, payload string) message.Position {
	t.Helper()
	m := edgetest.Publish(t, n, &message.Message{Topic: topic, Payload: []byte(payload)})
	return edgetest.Position(t, n, m)
}

// get polls srv with query and decodes the answer.
func get(t *testing.T, srv *httptest.Server, query string) poll.Response {
	t.Helper()
	resp, err := http.Get(srv.URL + "/poll?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r poll.Response
	if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != http.StatusOK || r.Messages == nil {
		t.Fatalf("poll?%s: %d %s", query, resp.StatusCode, body)
	}
	return r
}

func serve(t *testing.T, n *node.Node) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(poll.NewHandler(poll.Config{}, n))
	t.Cleanup(srv.Close)
	return srv
}

// TestPollFromStore ensures a poll without a cursor answers at once with the
// stream's end, and a poll from a cursor answers at once with the stored
// matching messages after it, at most max, its cursor resuming exactly
// after the last one returned (or past non-matching messages).
func TestPollFromStore(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	srv := serve(t, n)
	publish(t, n, "before", "0")
	start := get(t, srv, "topic=p/%23")
	if p, err := message.ParsePosition(start.Cursor); err != nil || p.Seq != 1 || p.Epoch == "" || len(start.Messages) != 0 {
		t.Fatalf("start %+v", start)
	}
	var pos []message.Position
	for i := range 5 {
		publish(t, n, "other", "x")
		pos = append(pos, publish(t, n, "p/"+strconv.Itoa(i), strconv.Itoa(i)))
	}
	q := "topic=p/%23&max=3&cursor=" + url.QueryEscape(start.Cursor)
	r := get(t, srv, q)
	if len(r.Messages) != 3 || r.Cursor != pos[2].String() || r.Gap {
		t.Fatalf("first page %+v", r)
	}
	for i, m := range r.Messages {
		if m.Position != pos[i].String() || m.Payload != strconv.Itoa(i) || m.Topic != "p/"+strconv.Itoa(i) || m.Seq != pos[i].Seq {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	r = get(t, srv, "topic=p/%23&timeout=0&cursor="+url.QueryEscape(r.Cursor))
	if len(r.Messages) != 2 || r.Cursor != pos[4].String() {
		t.Fatalf("second page %+v", r)
	}
	// Nothing more matches: the cursor moves past what was looked at.
	last := publish(t, n, "other", "y")
	r = get(t, srv, "topic=p/%23&timeout=0&cursor="+url.QueryEscape(r.Cursor))
	if len(r.Messages) != 0 || r.Cursor != last.String() {
		t.Fatalf("empty page %+v, want cursor %s", r, last)
	}
}

// TestPollWaitsForLive ensures a poll with nothing to return holds until
// the first live matching message and returns it, and otherwise ends
// after its timeout with no message.
func TestPollWaitsForLive(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	srv := serve(t, n)
	cursor := get(t, srv, "topic=live").Cursor

	got := make(chan poll.Response, 1)
	go func() { got <- get(t, srv, "topic=live&timeout=20&cursor="+url.QueryEscape(cursor)) }()
	// The poll holds: its interest shows in the hub. Then publish.
	deadline := time.Now().Add(10 * time.Second)
	for n.Subscriptions() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("poll took no interest")
		}
		time.Sleep(5 * time.Millisecond)
	}
	publish(t, n, "unrelated", "x")
	p := publish(t, n, "live", "now")
	select {
	case r := <-got:
		if len(r.Messages) != 1 || r.Messages[0].Payload != "now" || r.Cursor != p.String() {
			t.Fatalf("got %+v, want the live message at %s", r, p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("poll did not return the live message")
	}

	begin := time.Now()
	r := get(t, srv, "topic=live&timeout=0.2&cursor="+url.QueryEscape(p.String()))
	if len(r.Messages) != 0 || r.Cursor != p.String() || time.Since(begin) < 200*time.Millisecond {
		t.Fatalf("timeout poll %+v after %s", r, time.Since(begin))
	}
	if n.Subscriptions() != 0 {
		t.Fatalf("%d subscriptions left after the polls", n.Subscriptions())
	}
}

// TestPollGap ensures a cursor older than the stream, or from another
// epoch, is answered with gap set.
func TestPollGap(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	srv := serve(t, n)
	var pos []message.Position
	for i := range 6 {
		pos = append(pos, publish(t, n, "g", strconv.Itoa(i)))
	}
	s, err := edgetest.JetStream(n).Stream(context.Background(), backbone.StreamName(edgetest.Tenant))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(context.Background(), jetstream.WithPurgeSequence(pos[3].Seq)); err != nil {
		t.Fatal(err)
	}
	r := get(t, srv, "topic=g&cursor="+url.QueryEscape(pos[0].String()))
	if !r.Gap || r.EpochChanged || len(r.Messages) != 3 || r.Messages[0].Position != pos[3].String() || r.Cursor != pos[5].String() {
		t.Fatalf("got %+v", r)
	}
	r = get(t, srv, "topic=g&cursor=zzz-2")
	if !r.Gap || !r.EpochChanged || len(r.Messages) != 0 || r.Cursor != pos[5].String() {
		t.Fatalf("other epoch: got %+v", r)
	}
}

// TestPollRefusals ensures malformed polls get JSON errors.
func TestPollRefusals(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	srv := serve(t, n)
	for _, q := range []string{"", "topic=a/%23/b", "topic=a&cursor=x-y", "topic=a&timeout=-1", "topic=a&max=0"} {
		resp, err := http.Get(srv.URL + "/poll?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var eb httpapi.ErrorBody
		err = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusBadRequest || eb.Error.Code == "" {
			t.Errorf("%q: got %d %+v", q, resp.StatusCode, eb)
		}
	}
	if (poll.Config{DefaultTimeout: time.Minute, MaxTimeout: time.Second}).Validate() == nil {
		t.Error("default timeout above the maximum accepted")
	}
}
