package backbone

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Connect dials NATS the way every Herald process does: it keeps
// reconnecting forever (a backbone outage must not kill a process that
// clients are connected to) and routes asynchronous errors to onError.
//
// It pings every PingInterval and gives the link up after MaxPingsOut
// unanswered pings: a server that vanished without closing the socket (a
// partition, a black hole) is noticed within about 15 s instead of the
// client library's default 4 minutes, /readyz fails meanwhile, and the
// connection moves to a server that answers.
func Connect(url, name string, onError nats.ErrHandler) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.PingInterval(PingInterval),
		nats.MaxPingsOutstanding(MaxPingsOut),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(8 << 20),
	}
	if onError != nil {
		opts = append(opts, nats.ErrorHandler(onError))
	}
	return nats.Connect(url, opts...)
}

// Liveness of the NATS link (see Connect).
var (
	PingInterval = 5 * time.Second
	MaxPingsOut  = 2
)

// Connected is a readiness check for nc: nil while connected, else the
// connection's status.
func Connected(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("nats: %s", strings.ToLower(nc.Status().String()))
		}
		return nil
	}
}
