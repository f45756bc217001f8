package wire

import (
	"encoding/base64"
	"errors"
	"unicode/utf8"

	"github.com/heraldmq/herald/pkg/fault"
)

// Payload encodings on the JSON wire of SSE and the WebSocket protocol.
const (
	// EncodingUTF8 carries the payload as a JSON string, as is.
	EncodingUTF8 = "utf8"
	// EncodingBase64 carries it as standard base64 with padding.
	EncodingBase64 = "base64"
)

// ErrBadEncoding is returned by DecodePayload for an unknown encoding or
// malformed base64.
var ErrBadEncoding = fault.New(fault.Invalid, "wire: bad payload encoding")

// EncodePayload returns the payload as text: as is when it is valid UTF-8,
// else base64. JSON can carry any valid UTF-8 string, so this is lossless.
func EncodePayload(p []byte) (text, encoding string) {
	if utf8.Valid(p) {
		return string(p), EncodingUTF8
	}
	return base64.StdEncoding.EncodeToString(p), EncodingBase64
}

// DecodePayload reverses EncodePayload; an empty encoding means utf8.
func DecodePayload(text, encoding string) ([]byte, error) {
	switch encoding {
	case "", EncodingUTF8:
		return []byte(text), nil
	case EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, errors.Join(ErrBadEncoding, err)
		}
		return b, nil
	}
	return nil, ErrBadEncoding
}
