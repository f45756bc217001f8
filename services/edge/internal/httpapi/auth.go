package httpapi

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/heraldmq/herald/services/edge/internal/auth"
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
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return auth.Credentials{}, fmt.Errorf("%w: Authorization must be \"Bearer <token>\"", auth.ErrBadCredentials)
		}
		return auth.Credentials{Token: strings.TrimSpace(token)}, nil
	}
	if c, err := r.Cookie(TokenCookie); err == nil && c.Value != "" {
		return auth.Credentials{Token: c.Value}, nil
	}
	return auth.Credentials{Token: r.URL.Query().Get("token")}, nil
}

// Authenticate identifies the client of r with a.
func Authenticate(r *http.Request, a auth.Authenticator) (auth.Identity, error) {
	c, err := Credentials(r)
	if err != nil {
		return auth.Identity{}, err
	}
	return a.Authenticate(r.Context(), c)
}
