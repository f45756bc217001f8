package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
)

// TestPublish ensures POST /publish answers 200 with the stored position,
// and JSON errors with the right status otherwise.
func TestPublish(t *testing.T) {
	ns := edgetest.NATS(t)
	n := edgetest.Node(t, ns, "e1")
	srv := httptest.NewServer(httpapi.NewPublishHandler(n))
	defer srv.Close()
	closed := edgetest.Node(t, ns, "e2", edgetest.Refusing)
	refusing := httptest.NewServer(httpapi.NewPublishHandler(closed))
	defer refusing.Close()

	post := func(url, ctype string, body []byte, header ...string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatalf("body: %v", err)
		}
		return resp, v
	}

	resp, v := post(srv.URL+"?topic=a/b&qos=1&retain=1", "application/json", []byte(`{"x":1}`))
	seq, _ := v["seq"].(float64)
	pos, _ := v["position"].(string)
	if resp.StatusCode != http.StatusOK || seq != 1 || !strings.HasSuffix(pos, "-1") {
		t.Fatalf("got %d %v", resp.StatusCode, v)
	}
	resp, v = post(srv.URL+"?topic=a/b", "text/plain", []byte("second"), "Authorization", "Bearer t0k")
	if resp.StatusCode != http.StatusOK || v["seq"].(float64) != 2 {
		t.Fatalf("got %d %v", resp.StatusCode, v)
	}

	for _, tc := range []struct {
		name, url, code string
		body            []byte
		header          []string
		status          int
	}{
		{"wildcard topic", srv.URL + "?topic=a/%2B", "invalid_topic", nil, nil, http.StatusBadRequest},
		{"no topic", srv.URL, "invalid_topic", nil, nil, http.StatusBadRequest},
		{"bad qos", srv.URL + "?topic=a&qos=2", "bad_request", nil, nil, http.StatusBadRequest},
		{"bad retain", srv.URL + "?topic=a&retain=maybe", "bad_request", nil, nil, http.StatusBadRequest},
		{"too large", srv.URL + "?topic=a", "payload_too_large", make([]byte, httpapi.DefaultMaxPayload+1), nil, http.StatusRequestEntityTooLarge},
		{"basic auth", srv.URL + "?topic=a", "not_authenticated", nil, []string{"Authorization", "Basic eDp5"}, http.StatusUnauthorized},
		{"refused", refusing.URL + "?topic=a", "not_authorized", nil, nil, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, v := post(tc.url, "text/plain", tc.body, tc.header...)
			e, _ := v["error"].(map[string]any)
			if resp.StatusCode != tc.status || e["code"] != tc.code || e["message"] == "" ||
				resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("got %d %v", resp.StatusCode, v)
			}
		})
	}
}

// TestPublishUnavailable ensures a backbone that cannot store answers 503
// with the unavailable code and no internal detail.
func TestPublishUnavailable(t *testing.T) {
	ns := edgetest.NATS(t)
	n := edgetest.Node(t, ns, "e1")
	srv := httptest.NewServer(httpapi.NewPublishHandler(n))
	defer srv.Close()
	edgetest.Conn(n).Close()
	resp, err := http.Post(srv.URL+"?topic=a", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body httpapi.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || body.Error.Code != "unavailable" {
		t.Fatalf("got %d %+v", resp.StatusCode, body)
	}
}

// TestPublishContentType ensures a single publish stores its Content-Type
// as the message's content type, its body unaltered, except curl's default
// for -d (application/x-www-form-urlencoded), which declares nothing and is
// stored as no content type; a batch's content_type is stored as given,
// a form's too.
func TestPublishContentType(t *testing.T) {
	n := edgetest.Node(t, edgetest.NATS(t), "e1")
	srv := httptest.NewServer(httpapi.NewPublishHandler(n))
	defer srv.Close()
	for _, ctype := range []string{"application/json", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
		"Application/X-WWW-Form-Urlencoded; charset=utf-8", ""} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"?topic=c/t", strings.NewReader(`{"t":21.5}&x=1`))
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%q: %s", ctype, resp.Status)
		}
	}
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(
		`{"messages":[{"topic":"c/b","payload":"a=1","content_type":"application/x-www-form-urlencoded"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var got []string
	for _, m := range edgetest.Stored(t, n) {
		got = append(got, m.Topic+" "+string(m.Payload)+" "+m.ContentType)
	}
	want := []string{`c/t {"t":21.5}&x=1 application/json`, `c/t {"t":21.5}&x=1 text/plain; charset=utf-8`,
		`c/t {"t":21.5}&x=1 `, `c/t {"t":21.5}&x=1 `, `c/t {"t":21.5}&x=1 `, `c/b a=1 application/x-www-form-urlencoded`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("stored:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
