package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/node"
	"github.com/heraldmq/herald/services/edge/internal/wire"
)

// BatchRequest is the body of a batch publish.
type BatchRequest struct {
	Messages []BatchMessage `json:"messages"`
}

// BatchMessage is one message of a batch; Encoding is "utf8" (the
// default) or "base64".
type BatchMessage struct {
	Topic       string `json:"topic"`
	Payload     string `json:"payload"`
	Encoding    string `json:"encoding"`
	QoS         int    `json:"qos"`
	Retain      bool   `json:"retain"`
	ContentType string `json:"content_type"`
}

// BatchResponse answers a batch publish: one result per message, in order.
type BatchResponse struct {
	Results []BatchResult `json:"results"`
}

// BatchResult is the outcome of one message: its position once stored, or
// the error that kept it from being stored.
type BatchResult struct {
	Seq      uint64       `json:"seq,omitempty"`
	Position string       `json:"position,omitempty"`
	Error    *ErrorDetail `json:"error,omitempty"`
}

// serveBatch publishes a batch: every valid message is sent to the backbone
// in order without waiting (so the batch costs about one round trip), then
// each store is awaited.
func (h *PublishHandler) serveBatch(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	body, err := h.readBody(w, r, h.cfg.MaxBatchBytes)
	if err != nil {
		WriteError(w, err)
		return
	}
	var req BatchRequest
	if err := json.Unmarshal(body, &req); err != nil {
		WriteError(w, fmt.Errorf("%w: batch body: %w", ErrBadRequest, err))
		return
	}
	body = nil
	switch n := len(req.Messages); {
	case n == 0:
		WriteError(w, fmt.Errorf("%w: a batch needs at least one message (or use ?topic= for a single one)", ErrBadRequest))
		return
	case n > h.cfg.MaxBatch:
		WriteError(w, fmt.Errorf("%w: at most %d messages per batch", ErrBadRequest, h.cfg.MaxBatch))
		return
	}

	ctx := r.Context()
	opts := node.PublishOptions{TraceParent: r.Header.Get("Traceparent"), Protocol: telemetry.ProtocolHTTPAPI}
	caller := node.Caller{Identity: id}
	results := make([]BatchResult, len(req.Messages))
	pending := make([]*node.Receipt, len(req.Messages))
	fail := func(i int, err error) {
		code, msg, status := Describe(err)
		if status >= 500 && ctx.Err() == nil {
			h.n.Logger().Warn("http batch publish failed", "tenant", id.Tenant, "err", err)
		}
		results[i].Error = &ErrorDetail{Code: code, Message: msg}
	}
	for i := range req.Messages {
		m, err := h.batchMessage(&req.Messages[i])
		req.Messages[i] = BatchMessage{}
		if err == nil {
			pending[i], err = h.n.Publish(ctx, caller, m, opts)
		}
		if err != nil {
			fail(i, fmt.Errorf("message %d: %w", i, err))
		}
	}
	for i, p := range pending {
		if p == nil {
			continue
		}
		pos, err := p.Wait(ctx)
		if err != nil {
			fail(i, fmt.Errorf("message %d: %w", i, err))
			continue
		}
		results[i] = BatchResult{Seq: pos.Seq, Position: pos.String()}
	}
	WriteJSON(w, http.StatusOK, BatchResponse{Results: results})
}

// batchMessage decodes one message of a batch (the core checks the rest
// when it is published).
func (h *PublishHandler) batchMessage(bm *BatchMessage) (*message.Message, error) {
	if bm.QoS != 0 && bm.QoS != 1 {
		return nil, fmt.Errorf("%w: qos must be 0 or 1", ErrBadRequest)
	}
	payload, err := wire.DecodePayload(bm.Payload, bm.Encoding)
	if err != nil {
		return nil, err
	}
	if int64(len(payload)) > h.cfg.MaxPayload {
		return nil, fmt.Errorf("%w: at most %d bytes", ErrTooLarge, h.cfg.MaxPayload)
	}
	return &message.Message{Topic: bm.Topic, Payload: payload, QoS: byte(bm.QoS), Retain: bm.Retain,
		ContentType: bm.ContentType, PayloadUTF8: bm.Encoding != wire.EncodingBase64}, nil
}
