// Package control holds the types of Herald's control plane: the requests,
// announcements and answers that Herald processes exchange about live
// connections (an MQTT session's takeover, the admin API's questions to the
// edges). Nothing on it is stored: a message reaches the subscriptions that
// exist when it is sent. pkg/backbone carries it over core NATS, and keeps
// an in-memory implementation for tests; users declare the small interface
// they need over these types, so that none of them needs to know NATS.
package control

import (
	"sync"

	"github.com/heraldmq/herald/pkg/fault"
)

// ErrNoResponders is returned for a request nobody listens to: nothing was
// delivered and no answer will come.
var ErrNoResponders = fault.New(fault.NotFound, "control: no responders")

// Msg is one control message. Header values are single strings: control
// messages carry a few short fields.
type Msg struct {
	Subject string
	Header  map[string]string
	Data    []byte
	// Sub is the subscription of an Inbox that received the message.
	Sub *Sub

	respond func(header map[string]string, data []byte) error
}

// NewMsg returns a message that an implementation delivers; respond, if
// not nil, answers it.
func NewMsg(subject string, header map[string]string, data []byte, respond func(header map[string]string, data []byte) error) *Msg {
	return &Msg{Subject: subject, Header: header, Data: data, respond: respond}
}

// Expects reports whether the message is a request that awaits an answer.
func (m *Msg) Expects() bool { return m.respond != nil }

// Respond answers the request m is; it does nothing for a message that
// expects no answer.
func (m *Msg) Respond(header map[string]string, data []byte) error {
	if m.respond == nil {
		return nil
	}
	return m.respond(header, data)
}

// Sub is interest in a control subject.
type Sub struct {
	mu          sync.Mutex
	unsubscribe func() error
}

// NewSub returns a subscription that unsubscribe ends.
func NewSub(unsubscribe func() error) *Sub { return &Sub{unsubscribe: unsubscribe} }

// Unsubscribe ends the interest; later calls do nothing.
func (s *Sub) Unsubscribe() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	u := s.unsubscribe
	s.unsubscribe = nil
	s.mu.Unlock()
	if u == nil {
		return nil
	}
	return u()
}

// Inbox gathers the messages of many subscriptions on one channel, for a
// server that holds one subscription per client (MQTT takeovers) and wants
// no goroutine per subscription. Each message names the subscription that
// received it (Msg.Sub).
type Inbox struct {
	// C receives the messages, in the order they arrived.
	C         <-chan *Msg
	subscribe func(subject string) (*Sub, error)
	close     func()
}

// NewInbox returns an inbox over an implementation's channel and
// functions.
func NewInbox(c <-chan *Msg, subscribe func(subject string) (*Sub, error), close func()) *Inbox {
	return &Inbox{C: c, subscribe: subscribe, close: close}
}

// Subscribe adds interest in subject. Unsubscribe takes it away: nothing
// is routed for it once the unsubscription took effect.
func (in *Inbox) Subscribe(subject string) (*Sub, error) { return in.subscribe(subject) }

// Close stops the inbox; its subscriptions stay until unsubscribed.
func (in *Inbox) Close() { in.close() }
