package authz

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWT algorithms Herald accepts. "none" and anything not listed are always
// refused.
var jwtAlgorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
}

// ValidJWTAlgorithm reports whether alg is one Herald verifies.
func ValidJWTAlgorithm(alg string) bool { return slices.Contains(jwtAlgorithms, alg) }

// Default claim names.
const (
	// DefaultTenantClaim names the claim that says which tenant a token is
	// for, used to pick the tenant's verification keys.
	DefaultTenantClaim = "tenant"
	// DefaultCapabilitiesClaim names the claim holding the token's
	// capabilities, as an array of capability strings ("publish:a/#").
	DefaultCapabilitiesClaim = "caps"
	// DefaultJWTLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultJWTLeeway = 30 * time.Second
)

// JWTKey is one key that verifies JWTs for a tenant.
type JWTKey struct {
	// ID names the key: a verified token's JWTIdentity.KeyID. Unless KID
	// is set, it is also matched against the token's "kid" header when
	// the token has one.
	ID string
	// KID, when set, is matched against the token's "kid" header instead
	// of ID. A key read from a JWKS document sets it to the JWK's "kid":
	// tokens name the identity provider's key, while ID stays the name of
	// the Herald key that points at the document.
	KID string
	// Tenant owns the key; a token it verifies belongs to this tenant.
	Tenant string
	// Algorithm is the one JWS algorithm accepted with this key ("HS256",
	// "RS256", "ES256", ...): pinning it rules out algorithm confusion.
	Algorithm string
	// Key is []byte for HMAC, *rsa.PublicKey for RS*/PS*, *ecdsa.PublicKey
	// for ES*. See ParsePublicKeyPEM.
	Key crypto.PublicKey
	// Issuer and Audience, when not empty, must match the "iss" claim and
	// be among the "aud" claim.
	Issuer, Audience string
	// CapabilitiesClaim names the capabilities claim; default
	// DefaultCapabilitiesClaim.
	CapabilitiesClaim string
	// DefaultCapabilities apply to tokens without a capabilities claim.
	DefaultCapabilities Capabilities
}

// JWTOptions tune VerifyJWT.
type JWTOptions struct {
	// Leeway is the clock skew allowed on exp, nbf and iat; default
	// DefaultJWTLeeway. Negative means none.
	Leeway time.Duration
	// Now returns the time; default time.Now.
	Now func() time.Time
	// AllowNoExpiry accepts tokens without "exp". By default they are
	// refused: a token that never expires can only be revoked by removing
	// its key.
	AllowNoExpiry bool
}

// JWTIdentity is what a verified token says.
type JWTIdentity struct {
	// Tenant is the verifying key's tenant.
	Tenant string
	// Subject is the "sub" claim.
	Subject string
	// KeyID is the ID of the key that verified the token.
	KeyID string
	// Capabilities are those of the capabilities claim, or the key's
	// defaults when the token has none.
	Capabilities Capabilities
	// Expires is the "exp" claim; zero if none.
	Expires time.Time
}

// PeekJWT reads, without verifying anything, the "kid" header and the string
// claim tenantClaim of a JWT, so that the caller can find the candidate
// keys. Nothing it returns may be trusted before VerifyJWT succeeds.
func PeekJWT(token, tenantClaim string) (kid, tenant string, err error) {
	p, err := PeekToken(token, tenantClaim)
	return p.KID, p.Tenant, err
}

// JWTPeek is what PeekToken reads from a JWT without verifying it.
type JWTPeek struct {
	// Alg and KID are the "alg" and "kid" headers.
	Alg, KID string
	// Tenant is the string claim named by PeekToken's tenantClaim.
	Tenant string
	// Issuer is the "iss" claim.
	Issuer string
}

// PeekToken reads, without verifying anything, what a caller needs to find
// (and, for keys it must fetch, to avoid fetching) the candidate keys of a
// JWT: its algorithm, key id, tenant claim and issuer. Nothing it returns
// may be trusted before VerifyJWT succeeds.
func PeekToken(token, tenantClaim string) (JWTPeek, error) {
	claims := jwt.MapClaims{}
	t, _, err := jwt.NewParser().ParseUnverified(token, claims)
	if err != nil {
		return JWTPeek{}, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	var p JWTPeek
	p.Alg, _ = t.Header["alg"].(string)
	p.KID, _ = t.Header["kid"].(string)
	if tenantClaim == "" {
		tenantClaim = DefaultTenantClaim
	}
	p.Tenant, _ = claims[tenantClaim].(string)
	p.Issuer, _ = claims["iss"].(string)
	return p, nil
}

// VerifyJWT verifies token against the candidate keys (normally the keys
// of one tenant, found with PeekJWT) and returns its identity.
//
// A key is tried only if its Algorithm equals the token's "alg" header and,
// when the token has a "kid", its KID (or, without one, its ID) equals it. The signature must verify;
// exp is required (unless opts.AllowNoExpiry) and with nbf and iat checked
// with opts.Leeway of skew; the key's Issuer and Audience, when set, must
// match. If the token carries the tenant claim (DefaultTenantClaim) it must
// name the key's tenant: a key never admits a client into another tenant.
func VerifyJWT(token string, keys []JWTKey, opts JWTOptions) (JWTIdentity, error) {
	leeway := opts.Leeway
	if leeway == 0 {
		leeway = DefaultJWTLeeway
	} else if leeway < 0 {
		leeway = 0
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	unverified, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		return JWTIdentity{}, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	alg, _ := unverified.Header["alg"].(string)
	kid, _ := unverified.Header["kid"].(string)
	if !ValidJWTAlgorithm(alg) {
		return JWTIdentity{}, fmt.Errorf("%w: algorithm %q", ErrBadToken, alg)
	}

	var lastErr error = fmt.Errorf("%w: no key for alg %s kid %q", ErrBadSecret, alg, kid)
	for _, k := range keys {
		if k.Algorithm != alg || (kid != "" && k.tokenKID() != kid) {
			continue
		}
		popts := []jwt.ParserOption{
			jwt.WithValidMethods([]string{k.Algorithm}),
			jwt.WithLeeway(leeway),
			jwt.WithTimeFunc(now),
			jwt.WithIssuedAt(),
		}
		if !opts.AllowNoExpiry {
			popts = append(popts, jwt.WithExpirationRequired())
		}
		if k.Issuer != "" {
			popts = append(popts, jwt.WithIssuer(k.Issuer))
		}
		if k.Audience != "" {
			popts = append(popts, jwt.WithAudience(k.Audience))
		}
		claims := jwt.MapClaims{}
		_, err := jwt.NewParser(popts...).ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return k.Key, nil })
		if err != nil {
			lastErr = jwtError(err)
			if errors.Is(lastErr, ErrBadSecret) {
				continue // another key of the same kid-less set may verify it
			}
			return JWTIdentity{}, lastErr
		}
		return identityFromClaims(k, claims)
	}
	return JWTIdentity{}, lastErr
}

// tokenKID is the "kid" tokens name k by.
func (k JWTKey) tokenKID() string {
	if k.KID != "" {
		return k.KID
	}
	return k.ID
}

// jwtError maps golang-jwt's errors to this package's sentinels.
func jwtError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrInvalidKeyType):
		return fmt.Errorf("%w: %w", ErrBadSecret, err)
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fmt.Errorf("%w: %w", ErrExpired, err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing), errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenInvalidClaims):
		return fmt.Errorf("%w: %w", ErrClaims, err)
	}
	return fmt.Errorf("%w: %w", ErrBadToken, err)
}

func identityFromClaims(k JWTKey, claims jwt.MapClaims) (JWTIdentity, error) {
	id := JWTIdentity{Tenant: k.Tenant, KeyID: k.ID, Capabilities: k.DefaultCapabilities}
	if t, ok := claims[DefaultTenantClaim]; ok {
		if s, _ := t.(string); s != k.Tenant {
			return JWTIdentity{}, fmt.Errorf("%w: tenant claim %v, key belongs to %s", ErrClaims, t, k.Tenant)
		}
	}
	id.Subject, _ = claims.GetSubject()
	if exp, _ := claims.GetExpirationTime(); exp != nil {
		id.Expires = exp.Time
	}
	name := k.CapabilitiesClaim
	if name == "" {
		name = DefaultCapabilitiesClaim
	}
	raw, ok := claims[name]
	if !ok {
		return id, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return JWTIdentity{}, fmt.Errorf("%w: claim %s is not an array of strings", ErrClaims, name)
	}
	caps := make(Capabilities, 0, len(list))
	for _, v := range list {
		s, ok := v.(string)
		if !ok {
			return JWTIdentity{}, fmt.Errorf("%w: claim %s is not an array of strings", ErrClaims, name)
		}
		c, err := ParseCapability(s)
		if err != nil {
			return JWTIdentity{}, fmt.Errorf("%w: claim %s: %w", ErrClaims, name, err)
		}
		caps = append(caps, c)
	}
	id.Capabilities = caps
	return id, nil
}

// ParsePublicKeyPEM parses a PEM "PUBLIC KEY" (PKIX) block holding an RSA or
// ECDSA public key, or a "CERTIFICATE" whose public key is one, and checks
// that it suits alg (RS*/PS* need RSA of at least 2048 bits, ES256/384/512
// need P-256/P-384/P-521).
func ParsePublicKeyPEM(alg string, data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("authz: no PEM block")
	}
	var pub crypto.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("authz: public key: %w", err)
		}
		pub = k
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("authz: public key: %w", err)
		}
		pub = k
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("authz: certificate: %w", err)
		}
		pub = c.PublicKey
	default:
		return nil, fmt.Errorf("authz: PEM block %q is not a public key", block.Type)
	}
	if err := CheckPublicKey(alg, pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// CheckPublicKey reports whether pub can verify alg: RS*/PS* need an RSA
// key of at least 2048 bits, ES256/384/512 an ECDSA key on P-256/P-384/
// P-521. Keys from PEM and from JWKS documents pass the same check.
func CheckPublicKey(alg string, pub crypto.PublicKey) error {
	if !ValidJWTAlgorithm(alg) || alg[0] == 'H' {
		return fmt.Errorf("authz: %q is not a public-key algorithm", alg)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if alg[0] != 'R' && alg[0] != 'P' {
			return fmt.Errorf("authz: an RSA key cannot verify %s", alg)
		}
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("authz: RSA key of %d bits, need >= 2048", k.N.BitLen())
		}
		return nil
	case *ecdsa.PublicKey:
		want := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		if want == "" || k.Curve.Params().Name != want {
			return fmt.Errorf("authz: an ECDSA %s key cannot verify %s", k.Curve.Params().Name, alg)
		}
		return nil
	}
	return fmt.Errorf("authz: unsupported public key type %T", pub)
}

// MinHMACSecret is the shortest HMAC secret accepted: 32 bytes (256 bits).
const MinHMACSecret = 32
