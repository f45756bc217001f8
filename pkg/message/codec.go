package message

import "encoding/json"

// Marshal encodes a message for a store (retained messages, replay buffers).
// The tenant is not encoded: stores key by tenant.
//
// JSON is used for now because it is debuggable with redis-cli; the encoding
// is kept behind these two functions so it can change with a version byte.
func Marshal(m *Message) ([]byte, error) { return json.Marshal(m) }

// Unmarshal decodes the output of Marshal into a message of tenant.
func Unmarshal(tenant string, b []byte) (*Message, error) {
	m := new(Message)
	if err := json.Unmarshal(b, m); err != nil {
		return nil, err
	}
	m.Tenant = tenant
	return m, nil
}
