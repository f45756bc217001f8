package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
)

// FuzzPublish ensures POST /publish, single (?topic=) or batch (a JSON
// body), answers any query, content type and body over a healthy backbone
// with a client error (4xx) or a success, never a server error, always
// with a JSON body; and that a batch answered 200 has one result per
// message. Small bounds keep the oversized cases reachable.
func FuzzPublish(f *testing.F) {
	for _, s := range []struct{ q, ct, body string }{
		{"topic=a/b", "text/plain", "hello"},
		{"topic=a/b&qos=1&retain=true", "", "x"},
		{"topic=a/%2B", "", "x"}, {"topic=a/%23", "", ""}, {"topic=%ff", "", "x"}, {"topic=a&qos=2", "", "x"},
		{"topic=a&retain=maybe", "", "x"}, {"topic=" + string(make([]byte, 70)), "", "x"},
		{"", "application/json", `{"messages":[{"topic":"a/b","payload":"x"},{"topic":"a/+","payload":"y"}]}`},
		{"", "application/json", `{"messages":[{"topic":"a","payload":"!!","encoding":"base64"},{"topic":"a","qos":3}]}`},
		{"", "application/json; charset=utf-8", `{"messages":[]}`},
		{"", "application/json", `{"messages":[` + "{}," + "{}," + "{}," + "{}," + "{}" + `]}`},
		{"", "application/json", `{"messages":null}`}, {"", "application/json", `[`},
		{"", "application/json", `{"messages":[{"topic":"a","payload":"0123456789012345678901234567890123456789"}]}`},
	} {
		f.Add(s.q, s.ct, []byte(s.body))
	}
	n := edgetest.Node(f, edgetest.NATS(f), "e1")
	h := httpapi.NewPublishHandlerConfig(httpapi.PublishConfig{MaxPayload: 32, MaxBatch: 4, MaxBatchBytes: 512}, n)
	f.Fuzz(func(t *testing.T, query, contentType string, body []byte) {
		req, err := http.NewRequest(http.MethodPost, "/publish", bytes.NewReader(body))
		if err != nil {
			return
		}
		if _, err := url.ParseQuery(query); err != nil {
			return // net/http refuses it before the handler
		}
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q %q %q: status %d: %s", query, contentType, body, rec.Code, rec.Body)
		}
		var out struct {
			Results []json.RawMessage `json:"results"`
			Error   *httpapi.ErrorDetail
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("status %d with a body that is not JSON: %q", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK {
			if out.Error == nil || out.Error.Code == "" {
				t.Fatalf("status %d without an error code: %s", rec.Code, rec.Body)
			}
			return
		}
		if out.Results != nil {
			var batch httpapi.BatchRequest
			if err := json.Unmarshal(body, &batch); err != nil || len(batch.Messages) != len(out.Results) {
				t.Fatalf("batch of %d messages answered with %d results", len(batch.Messages), len(out.Results))
			}
		}
	})
}
