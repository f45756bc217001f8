package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// principal is who is calling: the operator (everything) or an admin key
// scoped to one tenant.
type principal struct {
	// tenant is empty for the operator.
	tenant string
	// keyID names the admin key used; empty for the operator token and
	// insecure mode.
	keyID string
}

type principalKey struct{}

// caller returns the principal the auth layer put in ctx. Every RPC runs
// behind that layer, so a missing principal is a wiring bug: refuse.
func caller(ctx context.Context) (principal, error) {
	p, ok := ctx.Value(principalKey{}).(principal)
	if !ok {
		return principal{}, status.Error(codes.Unauthenticated, "no credential")
	}
	return p, nil
}

// errForeignTenant is the one answer for a scoped admin key reaching past its
// tenant. PERMISSION_DENIED rather than NOT_FOUND: the tenant namespace is
// not secret from tenants (ids are chosen by the operator), and a clear
// answer helps more than obscurity.
var errForeignTenant = status.Error(codes.PermissionDenied, "this admin credential is scoped to another tenant")

// tenantAccess allows the operator, and a scoped key for its own tenant.
func tenantAccess(ctx context.Context, id string) error {
	p, err := caller(ctx)
	if err != nil {
		return err
	}
	if p.tenant != "" && p.tenant != id {
		return errForeignTenant
	}
	return nil
}

// operatorOnly allows only the operator.
func operatorOnly(ctx context.Context) error {
	p, err := caller(ctx)
	if err != nil {
		return err
	}
	if p.tenant != "" {
		return status.Error(codes.PermissionDenied, "this call needs an operator credential")
	}
	return nil
}

// authenticator checks admin credentials: the operator token from the
// configuration, or admin keys stored in etcd.
type authenticator struct {
	log      *slog.Logger
	store    *tenant.Etcd
	insecure bool
	// tokenSum is the SHA-256 of a plain operator token, compared in
	// constant time; the token itself is not kept.
	tokenSum []byte
	// tokenHash is an argon2id operator-token hash from the config.
	tokenHash string
	verify    *authz.VerifyCache
}

// errBadCredential is the answer for a credential that was presented and
// does not verify; the REST face adds error="invalid_token" to its
// WWW-Authenticate (RFC 6750, section 3.1).
var errBadCredential = status.Error(codes.Unauthenticated, "wrong credential")

// authenticate maps a bearer token to a principal: UNAUTHENTICATED if it is
// missing or wrong. A presented credential must verify in every mode: the
// development mode (Insecure) admits requests that present none, never
// ones presenting a token it cannot check.
func (a *authenticator) authenticate(ctx context.Context, authorization string) (principal, error) {
	if strings.TrimSpace(authorization) == "" {
		if a.insecure {
			return principal{}, nil
		}
		return principal{}, status.Error(codes.Unauthenticated, `missing credential: send "authorization: Bearer <token>"`)
	}
	token, ok := strings.CutPrefix(authorization, "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		return principal{}, status.Error(codes.Unauthenticated, `malformed credential: send "authorization: Bearer <token>"`)
	}
	if strings.HasPrefix(token, authz.KindAdminKey+"_") {
		id, secret, err := authz.ParseToken(authz.KindAdminKey, token)
		if err != nil {
			return principal{}, errBadCredential
		}
		k, err := a.store.GetAdminKey(ctx, id)
		if errors.Is(err, tenant.ErrNotFound) {
			return principal{}, errBadCredential
		}
		if err != nil {
			return principal{}, grpcError(a.log, err)
		}
		if a.verify.Verify(secret, k.Hash) != nil {
			return principal{}, errBadCredential
		}
		return principal{tenant: k.Tenant, keyID: k.ID}, nil
	}
	switch {
	case a.tokenSum != nil:
		sum := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(sum[:], a.tokenSum) == 1 {
			return principal{}, nil
		}
	case a.tokenHash != "":
		if a.verify.Verify(token, a.tokenHash) == nil {
			return principal{}, nil
		}
	}
	return principal{}, errBadCredential
}

// challenge is the gateway's error handler: the default one, but every 401
// carries the WWW-Authenticate challenge (RFC 6750, section 3): the realm,
// and error="invalid_token" when a credential was presented but did not
// verify. Every error answer of the REST face goes through it. (The
// default handler puts the status message in WWW-Authenticate, which is no
// challenge at all: the header is set again as the status is written.)
func challenge(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if status.Code(err) == codes.Unauthenticated {
		v := `Bearer realm="herald-admin"`
		if strings.TrimSpace(r.Header.Get("Authorization")) != "" {
			v += `, error="invalid_token"`
		}
		w = challengeWriter{w, v}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// challengeWriter sets WWW-Authenticate as the status is written.
type challengeWriter struct {
	http.ResponseWriter
	value string
}

func (c challengeWriter) WriteHeader(code int) {
	c.Header().Set("WWW-Authenticate", c.value)
	c.ResponseWriter.WriteHeader(code)
}

func (c challengeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// unary authenticates gRPC calls from the "authorization" metadata.
func (a *authenticator) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	var authorization string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			authorization = v[0]
		}
	}
	p, err := a.authenticate(ctx, authorization)
	if err != nil {
		return nil, err
	}
	return handler(context.WithValue(ctx, principalKey{}, p), req)
}

// stream guards streaming calls. Only server reflection streams, and it is
// open: it reveals only the schema, which /openapi.json publishes anyway.
func (a *authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if strings.HasPrefix(info.FullMethod, "/grpc.reflection.") {
		return handler(srv, ss)
	}
	return status.Error(codes.Unauthenticated, "streaming calls are not served")
}

// http authenticates REST requests before the gateway: the gateway calls
// the services directly, not through the gRPC interceptors.
func (a *authenticator) http(mux *runtime.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.authenticate(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			runtime.HTTPError(r.Context(), mux, &runtime.JSONPb{}, w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}
