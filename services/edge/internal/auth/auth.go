// Package auth decides who a connecting client is and which tenant it
// belongs to, for every transport.
//
// Anonymous is the first cut: anonymous clients land in one configured
// tenant (the embedded default's "dev"), and with none configured every
// client is refused. Package tenantauth authenticates API keys, JWTs and
// certificate identities from etcd behind the same interface.
package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/fault"
)

// Sentinel errors. Each declares its fault kind, which pkg/fault's table
// maps to every protocol's refusal.
var (
	// ErrBadCredentials means the credentials are malformed or wrong:
	// MQTT CONNACK 0x86, HTTP 401, WebSocket close 1008.
	ErrBadCredentials = fault.New(fault.Unauthenticated, "auth: bad credentials")
	// ErrNotAuthorized means the client may not connect: MQTT CONNACK
	// 0x87, HTTP 403, WebSocket close 1008.
	ErrNotAuthorized = fault.New(fault.Forbidden, "auth: not authorized")
	// ErrForbidden means an authenticated client may not do what it asked:
	// publish to a topic or subscribe to (or read the history of) a filter
	// outside its capabilities. It wraps ErrNotAuthorized, so mappings of
	// that apply: MQTT 5 PUBACK/SUBACK 0x87, HTTP 403, WebSocket error
	// "not_authorized".
	ErrForbidden = fmt.Errorf("%w: forbidden by the client's capabilities", ErrNotAuthorized)
	// ErrRevoked is the reason a live connection is closed because its
	// credential was revoked, changed or expired, or its tenant deleted. It
	// wraps ErrNotAuthorized: MQTT 5 DISCONNECT 0x87, WebSocket close 1008,
	// SSE end of stream.
	ErrRevoked = fault.Sub(fault.Revoked, ErrNotAuthorized, "credential revoked")
	// ErrRateLimited means the client's address or key failed to
	// authenticate too often and is refused for a while without checking:
	// MQTT 5 CONNACK 0x9F (connection rate exceeded; 3.1.1: return code 3,
	// server unavailable), HTTP 429 with Retry-After, WebSocket close 1008.
	// It does not wrap ErrBadCredentials: the credentials may be right.
	ErrRateLimited = fault.New(fault.AuthRate, "auth: too many failed attempts")
)

// Credentials are what a client presents; transports fill what they have.
type Credentials struct {
	// Username and Password come from MQTT CONNECT.
	Username string
	Password []byte
	// HasPassword is set when the client sent a password (MQTT CONNECT's
	// password flag), even an empty one: a zero-length password is a
	// credential to verify, never the absence of one.
	HasPassword bool
	// Token is a bearer token (HTTP header, cookie or query).
	Token string
	// RemoteAddr is the client's address ("ip:port" or "ip"), so that
	// failed attempts can be rate-limited per source. Transports behind a
	// trusted proxy put the forwarded address here.
	RemoteAddr string
	// Certificate is the client's TLS leaf certificate, if it sent one.
	Certificate *x509.Certificate
	// CertificateVerified is true when the TLS layer verified Certificate's
	// chain against the client CA (tls.ConnectionState.VerifiedChains is
	// not empty). Identities matched by subject need it; identities pinned
	// by fingerprint do not, as the handshake proves the key.
	CertificateVerified bool
}

// Identity is an authenticated client.
type Identity struct {
	Tenant  string
	Subject string
	// Anonymous clients were admitted without credentials into the
	// configured anonymous tenant; they may do everything in it.
	Anonymous bool
	// Credential names what the client authenticated with, so that live
	// connections can be found when it is revoked: "key:<id>",
	// "jwt:<kid>", "mtls:<id>"; empty for anonymous clients.
	Credential string
	// Capabilities are what the client may do (ignored for Anonymous).
	Capabilities authz.Capabilities
	// Expires, if not zero, is when the credential stops being valid; live
	// connections are closed then.
	Expires time.Time
}

// Credential kinds, the prefixes of Identity.Credential.
const (
	CredentialAPIKey = "key:"
	CredentialJWTKey = "jwt:"
	CredentialMTLS   = "mtls:"
)

// Authenticator maps credentials to an identity. Implementations must be
// safe for concurrent use and must not block longer than ctx allows.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) (Identity, error)
}

// Anonymous admits every client into Tenant, ignoring credentials. An empty
// Tenant refuses everyone.
type Anonymous struct {
	Tenant string
}

// Authenticate implements Authenticator.
func (a Anonymous) Authenticate(_ context.Context, c Credentials) (Identity, error) {
	if a.Tenant == "" {
		return Identity{}, ErrNotAuthorized
	}
	return Identity{Tenant: a.Tenant, Subject: c.Username, Anonymous: true}, nil
}

var _ Authenticator = Anonymous{}

// SourceKey reduces a client's address ("ip:port" or "ip") to the source
// that per-source bounds count by: the IP for IPv4, the /64 for IPv6 (one
// host usually owns a whole /64). "" for "".
func SourceKey(remote string) string {
	if remote == "" {
		return ""
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return host
	case ip.To4() != nil:
		return ip.To4().String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// RateLimitError is the error of a refused attempt: it wraps
// ErrRateLimited and says when to retry (HTTP Retry-After).
type RateLimitError struct {
	// What was limited: "address" or "key".
	What       string
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v: per %s, retry in %v", ErrRateLimited, e.What, e.RetryAfter.Round(time.Millisecond))
}

// Unwrap returns ErrRateLimited.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// RetryAfter returns how long a rate-limited client should wait, or 0 if
// err says nothing about it.
func RetryAfter(err error) time.Duration {
	if e, ok := errors.AsType[*RateLimitError](err); ok {
		return e.RetryAfter
	}
	return 0
}
