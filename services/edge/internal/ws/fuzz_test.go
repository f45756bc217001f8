package ws

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/topic"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/wire"
)

// FuzzClientFrame ensures a client frame, text (JSON) or binary (length,
// JSON header, payload), is decoded without a panic, and that every way it
// can be refused — malformed JSON or binary layout, bad payload encoding,
// bad position, bad topic — maps to a client error (400), never to a
// server error: what session.handle does with the frame before it reaches
// the backbone.
func FuzzClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"op":"subscribe","id":"1","topic":"a/+","from":"kx-3"}`,
		`{"op":"publish","id":"2","topic":"a/b","payload":"aGk=","encoding":"base64","qos":1,"retain":true}`,
		`{"op":"publish","topic":"a/#","payload":"x"}`,
		`{"op":"unsubscribe","topic":"a/+"}`, `{"op":"ping","id":"p"}`, `{"op":7}`, `[]`, `{"qos":1e400}`,
		`{"op":"publish","payload":"!!","encoding":"base64"}`, `{"op":"subscribe","topic":"\ud800"}`,
	} {
		f.Add([]byte(s), false)
	}
	hdr := []byte(`{"op":"publish","id":"3","topic":"a/b","encoding":"binary"}`)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(hdr)))
	f.Add(append(append(frame, hdr...), 0, 1, 2), true)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, '{'}, true)
	f.Add([]byte{0, 0}, true)
	f.Fuzz(func(t *testing.T, data []byte, isBinary bool) {
		var req request
		var payload []byte
		if isBinary {
			r, p, err := decodeBinary(data)
			if err != nil {
				return // the session answers an error frame, then 1008 after repeats
			}
			if len(p) > len(data)-4 || !bytes.HasSuffix(data, p) {
				t.Fatalf("payload of %d bytes is not the tail of a %d-byte frame", len(p), len(data))
			}
			req, payload = r, p
		} else {
			if err := json.Unmarshal(data, &req); err != nil {
				return
			}
			p, err := wire.DecodePayload(req.Payload, req.Encoding)
			if err != nil {
				clientError(t, "payload", err)
				return
			}
			payload = p
		}
		if req.Op == opPublish && len(payload) > len(data) {
			t.Fatalf("payload of %d bytes from a %d-byte frame", len(payload), len(data))
		}
		if req.From != "" {
			if _, err := message.ParsePosition(req.From); err != nil {
				clientError(t, "from", err)
			}
		}
		if err := topic.ValidateFilter(req.Topic, topic.Limits{}); err != nil {
			clientError(t, "filter", err)
		}
		if err := topic.ValidateName(req.Topic, topic.Limits{}); err != nil {
			clientError(t, "topic", err)
		}
	})
}

// clientError fails unless err is answered as a client error.
func clientError(t *testing.T, what string, err error) {
	t.Helper()
	if _, status := httpapi.Classify(err); status != http.StatusBadRequest {
		t.Fatalf("%s: %v classified %d, want 400", what, err, status)
	}
}
