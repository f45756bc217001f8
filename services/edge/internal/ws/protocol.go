package ws

// Frame types and ops of the protocol (see the package documentation).
const (
	opSubscribe   = "subscribe"
	opUnsubscribe = "unsubscribe"
	opPublish     = "publish"
	opPing        = "ping"

	typeAck     = "ack"
	typeMessage = "message"
	typeGap     = "gap"
	typeError   = "error"
	typePong    = "pong"
)

// request is a client frame; which fields matter depends on Op.
type request struct {
	Op          string `json:"op"`
	ID          string `json:"id"`
	Topic       string `json:"topic"`
	From        string `json:"from"`
	Payload     string `json:"payload"`
	Encoding    string `json:"encoding"`
	QoS         int    `json:"qos"`
	Retain      bool   `json:"retain"`
	ContentType string `json:"content_type"`
}

// ack answers subscribe, unsubscribe and publish; Seq and Position are
// set for publish only.
type ack struct {
	Type     string `json:"type"`
	ID       string `json:"id,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
	Position string `json:"position,omitempty"`
}

// gap tells that messages of the subscription Topic after From may be missing.
type gap struct {
	Type         string `json:"type"`
	Topic        string `json:"topic"`
	From         string `json:"from"`
	EpochChanged bool   `json:"epoch_changed,omitempty"`
}

// errorFrame reports a failed request (ID set) or a frame that could not be
// read (ID empty).
type errorFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

type pong struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
}
