package sse_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/sse"
	"github.com/nats-io/nats.go/jetstream"
)

const wait = 10 * time.Second

// event is one parsed SSE event, or a comment.
type event struct {
	id, name, data, comment string
	retry                   string
}

type data struct {
	Topic          string `json:"topic"`
	Payload        string `json:"payload"`
	Encoding       string `json:"encoding"`
	QoS            int    `json:"qos"`
	Retain         bool   `json:"retain"`
	Seq            uint64 `json:"seq"`
	ContentType    string `json:"content_type"`
	UserProperties []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"user_properties"`
}

// client is an open SSE stream whose events arrive on a channel.
type client struct {
	t      *testing.T
	events chan event
	cancel context.CancelFunc
}

func serve(t *testing.T, cfg sse.Config, n *node.Node) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET /sse", sse.NewHandler(cfg, n))
	mux.Handle("POST /publish", httpapi.NewPublishHandler(n))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// open connects and waits for the stream's first line (retry:), after which
// the subscription is in effect.
func open(t *testing.T, srv *httptest.Server, query string, header http.Header) *client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sse?"+query, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	for k, v := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	c := &client{t: t, events: make(chan event, 4096), cancel: cancel}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(c.events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var e event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				c.events <- e
				e = event{}
			case strings.HasPrefix(line, ":"):
				c.events <- event{comment: strings.TrimSpace(line[1:])}
			default:
				k, v, _ := strings.Cut(line, ": ")
				switch k {
				case "id":
					e.id = v
				case "event":
					e.name = v
				case "data":
					e.data = v
				case "retry":
					e.retry = v
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	if e := c.next(); e.retry == "" {
		t.Fatalf("first event %+v, want retry", e)
	}
	return c
}

// next returns the next event or comment.
func (c *client) next() event {
	c.t.Helper()
	select {
	case e, ok := <-c.events:
		if !ok {
			c.t.Fatal("stream ended")
		}
		return e
	case <-time.After(wait):
		c.t.Fatal("no event in time")
	}
	return event{}
}

// message returns the next message event, skipping comments.
func (c *client) message() (event, data) {
	c.t.Helper()
	for {
		e := c.next()
		if e.comment != "" {
			continue
		}
		var d data
		if e.name == "message" {
			if err := json.Unmarshal([]byte(e.data), &d); err != nil {
				c.t.Fatalf("data %q: %v", e.data, err)
			}
		}
		return e, d
	}
}

func publish(t *testing.T, n *node.Node, topic string, payload []byte) message.Position {
	t.Helper()
	return edgetest.Position(t, n, edgetest.Publish(t, n, &message.Message{Topic: topic, Payload: payload}))
}

// TestLive ensures messages published through the node and through POST
// /publish reach a live stream with their position as id and their JSON data.
func TestLive(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	srv := serve(t, sse.Config{}, n)
	c := open(t, srv, "topic=a/%2B", nil)

	pos := publish(t, n, "a/b", []byte("hello\nworld"))
	e, d := c.message()
	if e.id != pos.String() || pos.Epoch == "" || e.name != "message" {
		t.Fatalf("event %+v, want id %s", e, pos)
	}
	if d.Topic != "a/b" || d.Payload != "hello\nworld" || d.Encoding != "utf8" || d.Seq != pos.Seq {
		t.Fatalf("data %+v", d)
	}

	resp, err := http.Post(srv.URL+"/publish?topic=a/c&retain=1&qos=1", "text/plain", strings.NewReader("via http"))
	if err != nil {
		t.Fatal(err)
	}
	var pr httpapi.PublishResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	e, d = c.message()
	if e.id != pr.Position || d.Topic != "a/c" || d.Payload != "via http" || !d.Retain || d.QoS != 1 || d.ContentType != "text/plain" {
		t.Fatalf("event %+v data %+v, want position %s", e, d, pr.Position)
	}
}

// TestBinaryPayload ensures a payload that is not UTF-8 is sent base64 with
// its encoding flagged, and user properties are carried.
func TestBinaryPayload(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	c := open(t, serve(t, sse.Config{}, n), "topic=bin", nil)
	payload := []byte{0xff, 0x00, 0xfe}
	edgetest.Publish(t, n, &message.Message{Topic: "bin", Payload: payload,
		UserProperties: []message.UserProperty{{Key: "k", Value: "v"}}})
	_, d := c.message()
	if d.Encoding != "base64" || d.Payload != "/wD+" || len(d.UserProperties) != 1 || d.UserProperties[0].Key != "k" {
		t.Fatalf("data %+v", d)
	}
}

// TestResumeWhilePublishing ensures a resume from Last-Event-ID (header or
// query) delivers exactly the messages after it, in order and without
// duplicates, then live ones, while messages keep being published.
func TestResumeWhilePublishing(t *testing.T) {
	for _, via := range []string{"header", "query"} {
		t.Run(via, func(t *testing.T) {
			n := edgetest.Node(t, edgetest.NATS(t), "e1")
			srv := serve(t, sse.Config{}, n)
			var from message.Position
			for i := range 20 {
				publish(t, n, "other", []byte("x"))
				if p := publish(t, n, "r/t", []byte(strconv.Itoa(i))); i == 9 {
					from = p
				}
			}
			// Messages keep coming while the client resumes.
			const more = 200
			final := uint64(40 + more) // the stream's last sequence once they are in
			published := make(chan error, 1)
			go func() {
				for i := range more {
					m := &message.Message{Topic: "r/t", Payload: []byte(strconv.Itoa(20 + i))}
					if _, err := n.Publish(context.Background(), node.Caller{Identity: edgetest.Anonymous}, m,
						node.PublishOptions{Wait: node.WaitStored}); err != nil {
						published <- err
						return
					}
				}
				published <- nil
			}()
			query, header := "topic=r/t", http.Header{}
			if via == "header" {
				header.Set("Last-Event-ID", from.String())
				query += "&lastEventId=0" // the header wins
			} else {
				query += "&lastEventId=" + url.QueryEscape(from.String())
			}
			c := open(t, srv, query, header)
			// On r/t alone the stream sequences alternate with "other"
			// for the first 40, then are contiguous.
			for want := from.Seq + 2; want <= final; {
				e, d := c.message()
				if e.name != "message" || d.Seq != want || e.id != (message.Position{Epoch: from.Epoch, Seq: want}).String() {
					t.Fatalf("got %+v seq %d, want seq %d", e, d.Seq, want)
				}
				if want < 40 {
					want += 2
				} else {
					want++
				}
			}
			if err := <-published; err != nil {
				t.Fatal(err)
			}
			// And live afterwards, still without duplicates.
			p := publish(t, n, "r/t", []byte("after"))
			if e, _ := c.message(); e.id != p.String() {
				t.Fatalf("got %+v, want %s", e, p)
			}
		})
	}
}

// TestResumeGap ensures a resume from a position older than the stream's
// first message, or from another epoch, starts with a gap event.
func TestResumeGap(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	srv := serve(t, sse.Config{}, n)
	var pos []message.Position
	for i := range 10 {
		pos = append(pos, publish(t, n, "g", []byte(strconv.Itoa(i))))
	}
	ctx := context.Background()
	s, err := edgetest.JetStream(n).Stream(ctx, backbone.StreamName(edgetest.Tenant))
	if err != nil {
		t.Fatal(err)
	}
	// Remove sequences 1..5.
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(pos[5].Seq)); err != nil {
		t.Fatal(err)
	}

	c := open(t, srv, "topic=g", http.Header{"Last-Event-Id": {pos[1].String()}})
	e := c.next()
	if e.name != "gap" || e.id != "" || e.data != fmt.Sprintf(`{"from":%q,"epoch_changed":false}`, pos[1].String()) {
		t.Fatalf("first event %+v, want gap", e)
	}
	for _, p := range pos[5:] {
		if e, _ := c.message(); e.id != p.String() {
			t.Fatalf("got %+v, want %s", e, p)
		}
	}

	c = open(t, srv, "topic=g&lastEventId=zzz-3", nil)
	if e := c.next(); e.name != "gap" || !strings.Contains(e.data, `"epoch_changed":true`) {
		t.Fatalf("first event %+v, want gap with epoch change", e)
	}
	p := publish(t, n, "g", nil)
	if e, _ := c.message(); e.id != p.String() {
		t.Fatalf("got %+v, want %s", e, p)
	}
}

// TestCrossEdgeResume ensures a client can resume on another edge of the
// same backbone exactly where it left off on the first.
func TestCrossEdgeResume(t *testing.T) {
	ns := edgetest.NATS(t)
	a, b := edgetest.Node(t, ns, "a"), edgetest.Node(t, ns, "b")
	srvA, srvB := serve(t, sse.Config{}, a), serve(t, sse.Config{}, b)

	c := open(t, srvA, "topic=x/%23", nil)
	publish(t, a, "x/1", []byte("1"))
	seen, _ := c.message()
	c.cancel()
	var missed []message.Position
	for i := range 5 {
		missed = append(missed, publish(t, a, "x/"+strconv.Itoa(i), nil))
	}

	c = open(t, srvB, "topic=x/%23", http.Header{"Last-Event-Id": {seen.id}})
	for _, p := range missed {
		if e, _ := c.message(); e.id != p.String() {
			t.Fatalf("got %+v, want %s", e, p)
		}
	}
	p := publish(t, a, "x/live", nil)
	if e, d := c.message(); e.id != p.String() || d.Topic != "x/live" {
		t.Fatalf("got %+v, want %s", e, p)
	}
}

// TestEventTopic ensures that with event_topic each message event is named
// after its topic, except topics that cannot name an event.
func TestEventTopic(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	c := open(t, serve(t, sse.Config{EventTopic: true, EventName: "msg"}, n), "topic=%23", nil)
	for _, tc := range []struct{ topic, event string }{
		{"sensors/kitchen/temp", "sensors/kitchen/temp"},
		{"gap", "msg"},
		{"line\nbreak", "msg"},
	} {
		publish(t, n, tc.topic, []byte("x"))
		if e := c.next(); e.name != tc.event || e.id == "" {
			t.Fatalf("%q: got %+v, want event %q", tc.topic, e, tc.event)
		}
	}
}

// TestHeartbeat ensures a quiet stream carries ": ping" comments.
func TestHeartbeat(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	c := open(t, serve(t, sse.Config{Heartbeat: 20 * time.Millisecond}, n), "topic=quiet", nil)
	if e := c.next(); e.comment != "ping" {
		t.Fatalf("got %+v, want a ping comment", e)
	}
}

// TestRefusals ensures bad requests and refused clients get JSON errors
// with the right status and code.
func TestRefusals(t *testing.T) {
	ns := edgetest.NATS(t)
	n := edgetest.Node(t, ns, "e1")
	closed := edgetest.Node(t, ns, "e2", edgetest.Refusing)
	for _, tc := range []struct {
		name, query, code string
		n                 *node.Node
		status            int
	}{
		{"bad wildcard", "topic=a/b%23", "invalid_topic", n, http.StatusBadRequest},
		{"one bad of two", "topic=a&topic=%2B%2B", "invalid_topic", n, http.StatusBadRequest},
		{"no topic", "", "bad_request", n, http.StatusBadRequest},
		{"bad position", "topic=a&lastEventId=x-y", "bad_request", n, http.StatusBadRequest},
		{"refused", "topic=a", "not_authorized", closed, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(serve(t, sse.Config{}, tc.n).URL + "/sse?" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body httpapi.ErrorBody
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || body.Error.Code != tc.code || body.Error.Message == "" ||
				resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("got %d %+v", resp.StatusCode, body)
			}
		})
	}
}

// TestConfigValidate ensures the zero config is valid and bad ones are not.
func TestConfigValidate(t *testing.T) {
	if err := (sse.Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []sse.Config{{QueueSize: -1}, {EventName: "a\nb"}, {EventName: "gap"}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
