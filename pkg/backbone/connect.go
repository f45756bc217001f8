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
//
// extra options come after these: credentials (nats.UserInfo), or the
// embedded server to connect to in-process (nats.InProcessServer).
func Connect(url, name string, onError nats.ErrHandler, extra ...nats.Option) (*nats.Conn, error) {
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
	return nats.Connect(url, append(opts, extra...)...)
}

// Redacted returns urls (one or several, comma-separated) with the secret
// part of any user info replaced by "xxxxx", for logs.
func Redacted(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		at := strings.LastIndex(u, "@")
		if at < 0 {
			continue
		}
		scheme := ""
		if k := strings.Index(u[:at], "://"); k >= 0 {
			scheme = u[:k+3]
		}
		info := "xxxxx" // a token alone is the secret
		if user, _, ok := strings.Cut(u[len(scheme):at], ":"); ok {
			info = user + ":xxxxx"
		}
		parts[i] = scheme + info + u[at:]
	}
	return strings.Join(parts, ",")
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
