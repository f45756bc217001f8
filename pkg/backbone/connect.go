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
func Connect(url, name string, onError nats.ErrHandler) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
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
