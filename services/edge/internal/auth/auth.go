// Package auth decides who a connecting client is and which tenant it
// belongs to, for every transport.
//
// This is the first cut: anonymous clients land in one configured tenant
// (the embedded default's "dev"), and with none configured every client is
// refused. Keys, JWTs and mTLS identities from etcd replace it in the tenancy
// work; the interface stays.
package auth

import (
	"context"
	"errors"
)

// Sentinel errors, mapped to protocol refusals by each transport
// (MQTT CONNACK 0x86/0x87, HTTP 401/403, WebSocket close 1008).
var (
	// ErrBadCredentials means the credentials are malformed or wrong.
	ErrBadCredentials = errors.New("auth: bad credentials")
	// ErrNotAuthorized means the client may not connect.
	ErrNotAuthorized = errors.New("auth: not authorized")
)

// Credentials are what a client presents; transports fill what they have.
type Credentials struct {
	// Username and Password come from MQTT CONNECT.
	Username string
	Password []byte
	// Token is a bearer token (HTTP header, cookie or query).
	Token string
}

// Identity is an authenticated client.
type Identity struct {
	Tenant    string
	Subject   string
	Anonymous bool
}

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
