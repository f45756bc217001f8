// Package tenantauth authenticates an edge's clients against the tenants,
// API keys, JWT verification keys and certificate identities of the
// tenant.Directory: it is the auth.Authenticator of an edge in
// authenticated mode.
//
// What a client presents, and what it becomes:
//
//   - an API key token "hk_<id>_<secret>", as the MQTT password (the
//     username is ignored) or as the bearer token (Authorization header,
//     herald_token cookie, token query parameter): the key's tenant, Subject
//     and Credential "key:<id>", the key's capabilities and expiry. The
//     secret is checked with authz.VerifyCache (argon2id, successes
//     cached).
//   - a JWT, in the same places: its tenant is the "tenant" claim, or, if
//     the token has none, the MQTT username; it is verified with that
//     tenant's JWT keys (authz.VerifyJWT: exp required, 30 s skew, pinned
//     algorithm). Subject is "sub" (or the kid), Credential "jwt:<kid>",
//     capabilities from the key's claim (default "caps") or the key's
//     defaults. With a ReplayGuard, a token is accepted once: it needs a
//     "jti", and a second use is refused, on any edge sharing the guard.
//   - a JWT signed by an identity provider's key, when a JWT key of the
//     tenant names the provider's JWKS document (tenant.JWTKey.JWKSURL,
//     jwks.go): the token's "kid" is looked up in the documents of the
//     tenant's JWKS keys whose algorithm is the token's "alg" (and whose
//     issuer, when set, is its "iss"); the JWK must suit that algorithm
//     (kty, curve, "alg" and "use" when present). Credential
//     "jwt:<id of the Herald key>", as for the key's own tokens.
//   - a TLS client certificate and no token: the identity pinned to its
//     SHA-256 fingerprint, else (only if the chain was verified) the one
//     matching its subject DN; Credential "mtls:<id>", Subject the
//     fingerprint or DN matched.
//   - nothing (or an unknown certificate): the anonymous tenant if one is
//     configured (development), else auth.ErrNotAuthorized.
//
// Failed attempts are limited per source address (IPv4 address, IPv6 /64)
// and per API key id, in token buckets; a source or key out of tokens is
// refused with auth.ErrRateLimited before any hashing. A key that expired,
// was revoked, or whose tenant was deleted is refused at once: every
// lookup reads the Directory, and the verification cache is keyed by the
// stored hash.
//
// JWKS documents are fetched by this package itself (jwks.go), over an
// http.Client whose dialer refuses internal addresses (jwks_dial.go);
// JWKs are parsed by github.com/MicahParks/jwkset. jwkset's HTTP storage,
// which keyfunc/v3 is built on, was measured (httptest TLS servers on
// loopback) against what a tenant's URL can answer and does not fit:
// v0.11.4's NewStorageFromHTTP read a 64 MiB document whole, allocating
// 320 MiB, and accepted it (no size bound); it keeps one refresh goroutine
// per URL for its life (1,000 storages: 1,003 more goroutines, each
// fetching every interval whether or not a token needs it); it keeps a URL's last keys forever when refreshes fail, and
// ignores Cache-Control. The fetch and cache here (about 480 lines with
// the address check, not counting comments) keep one document per Herald
// key, start no goroutine, and bound size, key count, time, staleness,
// refetches per key and fetches per tenant.
package tenantauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/services/edge/internal/auth"
)

// Directory is what the authenticator reads; *tenant.Directory implements
// it. Lookups must not do I/O.
type Directory interface {
	Tenant(id string) (tenant.Tenant, bool)
	APIKey(id string) (tenant.APIKey, bool)
	JWTVerifiers(tenantID string) []authz.JWTKey
	JWKSKeys(tenantID string) []tenant.JWTKey
	MTLSByFingerprint(fp string) (tenant.MTLSIdentity, bool)
	MTLSBySubject(subject string) (tenant.MTLSIdentity, bool)
}

// Defaults of Config.
const (
	DefaultFailuresPerSecond = 1.0
	DefaultFailureBurst      = 10
	DefaultMaxTracked        = 1 << 16
)

// Config configures an Authenticator. The edge's flags map onto it:
// --anonymous-tenant and the --jwks-* flags (JWKSConfig).
type Config struct {
	// Directory is required.
	Directory Directory
	// AnonymousTenant admits clients without credentials into this tenant
	// with every right in it (development); empty refuses them.
	AnonymousTenant string
	// Cache verifies API key secrets; default authz.NewVerifyCache(0).
	Cache *authz.VerifyCache
	// JWT tunes JWT verification (leeway); its Now defaults to Config.Now.
	JWT authz.JWTOptions
	// Replay, if set, makes JWTs single-use: a token needs a "jti" claim
	// and is accepted once until it expires. Without it a JWT may be used
	// for any number of connections until it expires, which is what MQTT
	// clients that reconnect with the same token need.
	Replay ReplayGuard
	// FailuresPerSecond and FailureBurst shape the failure buckets of each
	// source address and each API key id: FailureBurst failures in a row,
	// then FailuresPerSecond. Defaults DefaultFailuresPerSecond and
	// DefaultFailureBurst.
	FailuresPerSecond float64
	FailureBurst      int
	// MaxTracked bounds the sources and keys with failures remembered;
	// default DefaultMaxTracked (a few MiB at most).
	MaxTracked int
	// JWKS bounds the fetching of the JWKS documents tenants' JWT keys
	// name.
	JWKS JWKSConfig
	// Log receives what the operator should see (JWKS fetches that
	// failed); default slog.Default().
	Log *slog.Logger
	// Now returns the time; default time.Now.
	Now func() time.Time
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	switch {
	case c.Directory == nil:
		return errors.New("tenantauth: no Directory")
	case c.AnonymousTenant != "" && !tenant.ValidID(c.AnonymousTenant):
		return fmt.Errorf("tenantauth: anonymous tenant %q: %w", c.AnonymousTenant, tenant.ErrInvalidID)
	case c.FailuresPerSecond < 0 || c.FailureBurst < 0 || c.MaxTracked < 0:
		return errors.New("tenantauth: negative failure limit")
	}
	return c.JWKS.Validate()
}

// Authenticator implements auth.Authenticator over a Directory. Safe for
// concurrent use.
type Authenticator struct {
	dir      Directory
	anon     string
	cache    *authz.VerifyCache
	jwt      authz.JWTOptions
	replay   ReplayGuard
	failures *failureLimiter
	jwks     *jwksCache
	now      func() time.Time
}

// New returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Cache == nil {
		cfg.Cache = authz.NewVerifyCache(0)
	}
	if cfg.FailuresPerSecond == 0 {
		cfg.FailuresPerSecond = DefaultFailuresPerSecond
	}
	if cfg.FailureBurst == 0 {
		cfg.FailureBurst = DefaultFailureBurst
	}
	if cfg.MaxTracked == 0 {
		cfg.MaxTracked = DefaultMaxTracked
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.JWT.Now == nil {
		cfg.JWT.Now = cfg.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	jwks, err := newJWKSCache(cfg.JWKS.WithDefaults(), cfg.Directory, cfg.Now, cfg.Log)
	if err != nil {
		return nil, err
	}
	return &Authenticator{
		dir: cfg.Directory, anon: cfg.AnonymousTenant, cache: cfg.Cache, jwt: cfg.JWT, replay: cfg.Replay,
		failures: newFailureLimiter(cfg.FailuresPerSecond, cfg.FailureBurst, cfg.MaxTracked), jwks: jwks, now: cfg.Now,
	}, nil
}

// Authenticate implements auth.Authenticator. Errors wrap
// auth.ErrBadCredentials (wrong, malformed, expired or replayed
// credentials), auth.ErrNotAuthorized (no credentials, no anonymous
// tenant) or auth.ErrRateLimited (*auth.RateLimitError).
func (a *Authenticator) Authenticate(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
	token := c.Token
	if token == "" {
		token = string(c.Password)
	}
	if token == "" && !c.HasPassword {
		if c.Certificate != nil {
			if id, ok := a.certificate(c); ok {
				return id, nil
			}
		}
		if a.anon == "" {
			return auth.Identity{}, fmt.Errorf("%w: credentials required", auth.ErrNotAuthorized)
		}
		return auth.Identity{Tenant: a.anon, Subject: c.Username, Anonymous: true}, nil
	}

	now := a.now()
	src := auth.SourceKey(c.RemoteAddr)
	if src != "" {
		if ok, wait := a.failures.take("ip:"+src, now); !ok {
			return auth.Identity{}, &auth.RateLimitError{What: "address", RetryAfter: wait}
		}
	}
	var (
		id    auth.Identity
		err   error
		keyID string
	)
	switch {
	case strings.HasPrefix(token, authz.KindAPIKey+"_"):
		keyID, id, err = a.apiKey(token, now)
	case strings.Count(token, ".") == 2:
		id, err = a.jwtToken(ctx, token, c.Username)
	default:
		err = fmt.Errorf("%w: not an API key or JWT", auth.ErrBadCredentials)
	}
	// The tokens taken for the attempt are kept by a failure only.
	if err == nil || !errors.Is(err, auth.ErrBadCredentials) {
		if src != "" {
			a.failures.refund("ip:"+src, now)
		}
		if keyID != "" {
			a.failures.refund("key:"+keyID, now)
		}
	}
	return id, err
}

// errBadKey is the one answer for an unknown key, a wrong secret and a
// deleted tenant, so that refusals do not tell which key ids exist.
var errBadKey = fmt.Errorf("%w: invalid API key", auth.ErrBadCredentials)

// apiKey verifies an API key token; keyID is set once the token names one.
func (a *Authenticator) apiKey(token string, now time.Time) (keyID string, _ auth.Identity, _ error) {
	id, secret, err := authz.ParseToken(authz.KindAPIKey, token)
	if err != nil {
		return "", auth.Identity{}, fmt.Errorf("%w: %w", auth.ErrBadCredentials, err)
	}
	if ok, wait := a.failures.take("key:"+id, now); !ok {
		return "", auth.Identity{}, &auth.RateLimitError{What: "key", RetryAfter: wait}
	}
	k, ok := a.dir.APIKey(id)
	if !ok {
		return id, auth.Identity{}, errBadKey
	}
	if _, ok := a.dir.Tenant(k.Tenant); !ok {
		return id, auth.Identity{}, errBadKey
	}
	if err := a.cache.Verify(secret, k.Hash); err != nil {
		return id, auth.Identity{}, errBadKey
	}
	if k.Expired(now) {
		return id, auth.Identity{}, fmt.Errorf("%w: %w: API key expired", auth.ErrBadCredentials, authz.ErrExpired)
	}
	return id, auth.Identity{
		Tenant: k.Tenant, Subject: k.ID, Credential: auth.CredentialAPIKey + k.ID,
		Capabilities: k.Capabilities, Expires: k.ExpiresAt,
	}, nil
}

// jwtToken verifies a JWT with the keys of the tenant it names: its own
// keys, and the keys of the JWKS documents its JWKS keys name.
func (a *Authenticator) jwtToken(ctx context.Context, token, username string) (auth.Identity, error) {
	p, err := authz.PeekToken(token, authz.DefaultTenantClaim)
	if err != nil {
		return auth.Identity{}, fmt.Errorf("%w: %w", auth.ErrBadCredentials, err)
	}
	tid := p.Tenant
	if tid == "" {
		tid = username
	}
	if !tenant.ValidID(tid) {
		return auth.Identity{}, fmt.Errorf("%w: JWT names no tenant (claim %q or the MQTT username)", auth.ErrBadCredentials, authz.DefaultTenantClaim)
	}
	if _, ok := a.dir.Tenant(tid); !ok {
		return auth.Identity{}, fmt.Errorf("%w: invalid JWT", auth.ErrBadCredentials)
	}
	keys := a.dir.JWTVerifiers(tid)
	if authz.ValidJWTAlgorithm(p.Alg) && p.Alg[0] != 'H' {
		keys = append(keys, a.jwks.candidates(ctx, tid, p)...)
	}
	ji, err := authz.VerifyJWT(token, keys, a.jwt)
	if err != nil {
		return auth.Identity{}, fmt.Errorf("%w: %w", auth.ErrBadCredentials, err)
	}
	if a.replay != nil {
		jti := jwtID(token)
		if jti == "" {
			return auth.Identity{}, fmt.Errorf("%w: %w: single-use JWTs need a jti claim", auth.ErrBadCredentials, authz.ErrClaims)
		}
		first, err := a.replay.FirstUse(ctx, ji.Tenant, jti, ji.Expires)
		if err != nil {
			return auth.Identity{}, fmt.Errorf("tenantauth: replay guard: %w", err)
		}
		if !first {
			return auth.Identity{}, fmt.Errorf("%w: JWT %s already used", auth.ErrBadCredentials, jti)
		}
	}
	subject := ji.Subject
	if subject == "" {
		subject = ji.KeyID
	}
	return auth.Identity{
		Tenant: ji.Tenant, Subject: subject, Credential: auth.CredentialJWTKey + ji.KeyID,
		Capabilities: ji.Capabilities, Expires: ji.Expires,
	}, nil
}

// jwtID returns the "jti" claim of a token VerifyJWT has accepted.
func jwtID(token string) string {
	parts := strings.Split(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		ID string `json:"jti"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.ID
}

// certificate finds the identity of a client certificate.
func (a *Authenticator) certificate(c auth.Credentials) (auth.Identity, bool) {
	fp := tenant.Fingerprint(c.Certificate)
	m, ok := a.dir.MTLSByFingerprint(fp)
	subject := fp
	if !ok && c.CertificateVerified {
		subject = c.Certificate.Subject.String()
		m, ok = a.dir.MTLSBySubject(subject)
	}
	if !ok {
		return auth.Identity{}, false
	}
	if _, ok := a.dir.Tenant(m.Tenant); !ok {
		return auth.Identity{}, false
	}
	return auth.Identity{
		Tenant: m.Tenant, Subject: subject, Credential: auth.CredentialMTLS + m.ID,
		Capabilities: m.Capabilities, Expires: c.Certificate.NotAfter,
	}, true
}

// Check reports whether an identity this Authenticator issued still holds:
// its tenant and credential exist, the credential has the same
// capabilities and expiry, and it has not expired. Otherwise it returns an
// error wrapping auth.ErrRevoked. It is node.ClientsConfig.Check.
func (a *Authenticator) Check(id auth.Identity) error {
	revoked := func(why string) error { return fmt.Errorf("%w: %s", auth.ErrRevoked, why) }
	if id.Anonymous {
		if id.Tenant != a.anon {
			return revoked("anonymous access ended")
		}
		return nil
	}
	if _, ok := a.dir.Tenant(id.Tenant); !ok {
		return revoked("tenant " + id.Tenant + " deleted")
	}
	if !id.Expires.IsZero() && !a.now().Before(id.Expires) {
		return revoked("credential expired")
	}
	switch {
	case strings.HasPrefix(id.Credential, auth.CredentialAPIKey):
		k, ok := a.dir.APIKey(strings.TrimPrefix(id.Credential, auth.CredentialAPIKey))
		switch {
		case !ok || k.Tenant != id.Tenant:
			return revoked("API key deleted")
		case !k.ExpiresAt.Equal(id.Expires) || !slices.Equal(k.Capabilities, id.Capabilities):
			return revoked("API key changed")
		}
	case strings.HasPrefix(id.Credential, auth.CredentialJWTKey):
		kid := strings.TrimPrefix(id.Credential, auth.CredentialJWTKey)
		if !slices.ContainsFunc(a.dir.JWTVerifiers(id.Tenant), func(k authz.JWTKey) bool { return k.ID == kid }) &&
			!slices.ContainsFunc(a.dir.JWKSKeys(id.Tenant), func(k tenant.JWTKey) bool { return k.ID == kid }) {
			return revoked("JWT key deleted")
		}
	case strings.HasPrefix(id.Credential, auth.CredentialMTLS):
		m, ok := a.dir.MTLSByFingerprint(id.Subject)
		if !ok {
			m, ok = a.dir.MTLSBySubject(id.Subject)
		}
		switch {
		case !ok || m.Tenant != id.Tenant || auth.CredentialMTLS+m.ID != id.Credential:
			return revoked("certificate identity deleted")
		case !slices.Equal(m.Capabilities, id.Capabilities):
			return revoked("certificate identity changed")
		}
	default:
		return revoked("unknown credential")
	}
	return nil
}

var _ auth.Authenticator = (*Authenticator)(nil)
