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

// Credentials are a NATS user and password given apart from the URLs, so a
// secret store can hold them alone and the URLs stay printable. Every
// service's command line embeds them (kong: `embed:""`): --nats-user and
// --nats-password, HERALD_NATS_USER and HERALD_NATS_PASSWORD, or the YAML
// keys nats-user and nats-password. User info in a URL outranks them for
// that URL.
type Credentials struct {
	User     string `name:"nats-user" env:"HERALD_NATS_USER" placeholder:"USER" help:"NATS user name (or put user info in --nats-url)."`
	Password string `name:"nats-password" env:"HERALD_NATS_PASSWORD" placeholder:"PASSWORD" help:"NATS password of --nats-user (prefer the environment variable to the flag)."`
}

// Options are the connection options that present c: none when c has no
// user.
func (c Credentials) Options() []nats.Option {
	if c.User == "" {
		return nil
	}
	return []nats.Option{nats.UserInfo(c.User, c.Password)}
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
