package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/heraldmq/herald/services/edge/internal/auth"
	"github.com/heraldmq/herald/services/edge/internal/limits"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// TokenCookie is the cookie a browser may carry its bearer token in.
const TokenCookie = "herald_token"

// Credentials reads a client's bearer token from, in order of preference,
// the Authorization header ("Bearer <token>"), the herald_token cookie and
// the token query parameter. The query form exists because browsers'
// EventSource and WebSocket cannot set headers; it ends up in access logs,
// so short-lived tokens should be used there. An Authorization header with
// another scheme is an error.
func Credentials(r *http.Request) (auth.Credentials, error) {
	c := auth.Credentials{RemoteAddr: r.RemoteAddr}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		c.Certificate, c.CertificateVerified = r.TLS.PeerCertificates[0], len(r.TLS.VerifiedChains) > 0
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return auth.Credentials{}, fmt.Errorf("%w: Authorization must be \"Bearer <token>\"", auth.ErrBadCredentials)
		}
		c.Token = strings.TrimSpace(token)
		return c, nil
	}
	if ck, err := r.Cookie(TokenCookie); err == nil && ck.Value != "" {
		c.Token = ck.Value
		return c, nil
	}
	c.Token = r.URL.Query().Get("token")
	return c, nil
}

// CookieCredential reports whether r's credential is the herald_token
// cookie, the one a browser adds by itself to requests other pages make:
// requests that write with it are checked against cross-site use
// (cors.CheckCookieWrite).
func CookieCredential(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return false
	}
	ck, err := r.Cookie(TokenCookie)
	return err == nil && ck.Value != ""
}

// Authenticate identifies the client of r with a. Once it has, r's
// connection no longer counts as unauthenticated against its source
// (limits.PreAuth).
func Authenticate(r *http.Request, a auth.Authenticator) (auth.Identity, error) {
	c, err := Credentials(r)
	if err != nil {
		return auth.Identity{}, err
	}
	id, err := a.Authenticate(r.Context(), c)
	if err == nil {
		limits.Authenticated(r.Context())
	}
	return id, err
}

// Admit counts the request's connection against its tenant's limit (429
// when full) and registers it with the edge's clients, returning a context
// that is cancelled, with the revocation as its cause, when the credential
// is revoked or the tenant deleted. Release the admission and call cancel
// when the request ends.
func Admit(r *http.Request, n *node.Node, protocol string, id auth.Identity) (context.Context, *node.Admission, context.CancelFunc, error) {
	ctx, cancel := context.WithCancelCause(r.Context())
	adm, err := n.Admit(ctx, node.ClientInfo{ID: NewConnID(), Protocol: protocol, Remote: r.RemoteAddr, Identity: id},
		func(reason error) { cancel(reason) })
	if err != nil {
		cancel(err)
		return nil, nil, nil, err
	}
	return ctx, adm, func() { cancel(context.Canceled) }, nil
}

// NewConnID names a connection that has no id of its own.
func NewConnID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
