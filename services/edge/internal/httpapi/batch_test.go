package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
)

// TestPublishBatch ensures a JSON batch stores every valid message in the
// given order and answers one result per message, errors in place, while a
// body that is not a batch is refused as a whole.
func TestPublishBatch(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	srv := httptest.NewServer(httpapi.NewPublishHandlerConfig(httpapi.PublishConfig{MaxBatch: 5, MaxPayload: 8}, n))
	defer srv.Close()
	post := func(url, ctype, body string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Post(url, ctype, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp, b.Bytes()
	}

	resp, body := post(srv.URL, "application/json; charset=utf-8", `{"messages":[
		{"topic":"b/1","payload":"one","qos":1,"content_type":"text/plain"},
		{"topic":"b/+","payload":"bad"},
		{"topic":"b/2","payload":"/wA=","encoding":"base64","retain":true},
		{"topic":"b/3","payload":"too large!"},
		{"topic":"b/4","payload":"x","qos":2}]}`)
	var br httpapi.BatchResponse
	if err := json.Unmarshal(body, &br); err != nil || resp.StatusCode != http.StatusOK || len(br.Results) != 5 {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	r := br.Results
	if r[0].Seq != 1 || r[0].Error != nil || r[2].Seq != 2 || !strings.HasSuffix(r[2].Position, "-2") {
		t.Fatalf("stored results %s", body)
	}
	for i, code := range map[int]string{1: "invalid_topic", 3: "payload_too_large", 4: "bad_request"} {
		if r[i].Error == nil || r[i].Error.Code != code || r[i].Seq != 0 || !strings.Contains(r[i].Error.Message, fmt.Sprintf("message %d", i)) {
			t.Fatalf("result %d: %s, want %s", i, body, code)
		}
	}
	// What was stored, with its flags.
	var seen []string
	for _, m := range edgetest.Stored(t, n) {
		seen = append(seen, fmt.Sprintf("%s:%x:%v:%d:%s", m.Topic, m.Payload, m.Retain, m.QoS, m.ContentType))
	}
	if want := []string{"b/1:6f6e65:false:1:text/plain", "b/2:ff00:true:0:"}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("stored %v, want %v", seen, want)
	}

	for _, tc := range []struct{ name, body, code string }{
		{"malformed", `{"messages":[`, "bad_request"},
		{"empty", `{"messages":[]}`, "bad_request"},
		{"too many", `{"messages":[{"topic":"a"},{"topic":"a"},{"topic":"a"},{"topic":"a"},{"topic":"a"},{"topic":"a"}]}`, "bad_request"},
	} {
		resp, body := post(srv.URL, "application/json", tc.body)
		var eb httpapi.ErrorBody
		if err := json.Unmarshal(body, &eb); err != nil || resp.StatusCode != http.StatusBadRequest || eb.Error.Code != tc.code {
			t.Errorf("%s: got %d %s", tc.name, resp.StatusCode, body)
		}
	}

	// With ?topic=, a JSON body is a single message's payload.
	resp, body = post(srv.URL+"?topic=b/json", "application/json", `{"x":1}`)
	var pr httpapi.PublishResponse
	if err := json.Unmarshal(body, &pr); err != nil || resp.StatusCode != http.StatusOK || pr.Seq != 3 {
		t.Fatalf("single JSON publish: %d %s", resp.StatusCode, body)
	}
}
