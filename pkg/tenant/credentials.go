package tenant

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"time"

	"github.com/heraldmq/herald/pkg/authz"
)

// APIKey is a client credential of one tenant. Clients present the token
// "hk_<ID>_<secret>" (authz.NewToken); only an argon2id hash of the secret
// is stored, so the secret is shown once, when the key is created. Stored
// at <prefix>keys/<tenant>/<id>.
type APIKey struct {
	// ID is public and unique across tenants (authz.NewID); it locates the
	// key, so verifying needs no scan of hashes.
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	// Description is free text for people.
	Description string `json:"description,omitempty"`
	// Hash is the argon2id PHC string of the secret (authz.HashSecret).
	Hash string `json:"hash"`
	// Capabilities are what the key's clients may do.
	Capabilities authz.Capabilities `json:"capabilities,omitempty"`
	CreatedAt    time.Time          `json:"created_at"`
	// ExpiresAt, if not zero, is when the key stops working.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Revision is the key's etcd mod revision, its etag; not stored.
	Revision int64 `json:"-"`
}

// Validate reports a key that cannot be stored (ErrInvalid or
// authz.ErrInvalidCapability).
func (k APIKey) Validate() error {
	if !authz.ValidKeyID(k.ID) {
		return fmt.Errorf("%w: key id %q", ErrInvalid, k.ID)
	}
	if !ValidID(k.Tenant) {
		return fmt.Errorf("%w: %q", ErrInvalidID, k.Tenant)
	}
	if k.Hash == "" {
		return fmt.Errorf("%w: key %s has no hash", ErrInvalid, k.ID)
	}
	return k.Capabilities.Validate()
}

// Expired reports whether the key has expired at now.
func (k APIKey) Expired(now time.Time) bool { return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) }

// JWTKey verifies the JWTs of one tenant's clients. Stored at
// <prefix>jwtkeys/<tenant>/<id>.
//
// An HMAC secret must be usable to verify, so unlike API keys it cannot be
// hashed: it is stored as given, in etcd, and never returned by the admin
// API after creation. Protect etcd accordingly (client TLS and auth,
// encryption at rest), or prefer public-key algorithms, whose stored half
// is public.
type JWTKey struct {
	// ID is the "kid" tokens name it by; unique within the tenant.
	ID          string `json:"id"`
	Tenant      string `json:"tenant"`
	Description string `json:"description,omitempty"`
	// Algorithm is the one JWS algorithm accepted with this key (HS256,
	// RS256, PS256, ES256, and their 384/512 variants).
	Algorithm string `json:"algorithm"`
	// Secret is the HMAC secret (HS*), at least authz.MinHMACSecret bytes.
	Secret []byte `json:"secret,omitempty"`
	// PublicKeyPEM is the RSA or ECDSA public key (RS*, PS*, ES*), PEM.
	PublicKeyPEM string `json:"public_key_pem,omitempty"`
	// JWKSURL, instead of PublicKeyPEM, names a JWKS document the edges
	// fetch the keys from (https only).
	JWKSURL string `json:"jwks_url,omitempty"`
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string `json:"issuer,omitempty"`
	Audience string `json:"audience,omitempty"`
	// CapabilitiesClaim names the claim holding capability strings;
	// default authz.DefaultCapabilitiesClaim.
	CapabilitiesClaim string `json:"capabilities_claim,omitempty"`
	// DefaultCapabilities apply to tokens without that claim.
	DefaultCapabilities authz.Capabilities `json:"default_capabilities,omitempty"`
	CreatedAt           time.Time          `json:"created_at"`
	Revision            int64              `json:"-"`
}

// nameRE is the alphabet of user-chosen credential IDs (JWT "kid"s): they
// become an etcd key element, so no '/'.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// ValidJWTKeyID reports whether id can name a JWT key.
func ValidJWTKeyID(id string) bool { return nameRE.MatchString(id) }

// Validate reports a JWT key that cannot be stored: unknown algorithm, a
// missing or unsuitable key, a short HMAC secret, a non-https JWKS URL.
func (k JWTKey) Validate() error {
	if !ValidJWTKeyID(k.ID) {
		return fmt.Errorf("%w: JWT key id %q", ErrInvalid, k.ID)
	}
	if !ValidID(k.Tenant) {
		return fmt.Errorf("%w: %q", ErrInvalidID, k.Tenant)
	}
	if !authz.ValidJWTAlgorithm(k.Algorithm) {
		return fmt.Errorf("%w: JWT algorithm %q", ErrInvalid, k.Algorithm)
	}
	if err := k.DefaultCapabilities.Validate(); err != nil {
		return err
	}
	hmac := k.Algorithm[0] == 'H'
	switch {
	case hmac && (k.PublicKeyPEM != "" || k.JWKSURL != ""):
		return fmt.Errorf("%w: %s takes a secret, not a public key", ErrInvalid, k.Algorithm)
	case hmac && len(k.Secret) < authz.MinHMACSecret:
		return fmt.Errorf("%w: HMAC secret of %d bytes, need >= %d", ErrInvalid, len(k.Secret), authz.MinHMACSecret)
	case hmac:
		return nil
	case len(k.Secret) > 0:
		return fmt.Errorf("%w: %s takes a public key, not a secret", ErrInvalid, k.Algorithm)
	case (k.PublicKeyPEM == "") == (k.JWKSURL == ""):
		return fmt.Errorf("%w: %s needs exactly one of a public key PEM or a JWKS URL", ErrInvalid, k.Algorithm)
	case k.JWKSURL != "":
		return validJWKSURL(k.JWKSURL)
	}
	if _, err := authz.ParsePublicKeyPEM(k.Algorithm, []byte(k.PublicKeyPEM)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// MaxJWKSURL bounds the length of a JWKS URL.
const MaxJWKSURL = 2048

// validJWKSURL reports a JWKS URL no edge would fetch: not https, no host,
// or a host that is an IP address of the edge itself or of its link
// (loopback, link-local such as the cloud metadata address
// 169.254.169.254, unspecified, multicast). A cheap early answer for the
// tenant admin, not the guard: host names are not resolved here, and the
// edges check every address they connect to (tenantauth), private
// networks included, which an operator may allow for a private identity
// provider and so are not refused here.
func validJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || len(raw) > MaxJWKSURL {
		return fmt.Errorf("%w: JWKS URL %q is not an https URL of at most %d bytes", ErrInvalid, raw, MaxJWKSURL)
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("%w: JWKS URL %q names an address of the edge itself or its link (loopback, link-local, unspecified or multicast), which edges never fetch", ErrInvalid, raw)
		}
	}
	return nil
}

// Verifier returns the key in the form authz.VerifyJWT takes. A JWKS key
// has no key material of its own: it returns ok false, and the edge
// resolves it from the URL.
func (k JWTKey) Verifier() (v authz.JWTKey, ok bool, err error) {
	v = authz.JWTKey{
		ID: k.ID, Tenant: k.Tenant, Algorithm: k.Algorithm, Issuer: k.Issuer, Audience: k.Audience,
		CapabilitiesClaim: k.CapabilitiesClaim, DefaultCapabilities: k.DefaultCapabilities,
	}
	switch {
	case k.Algorithm != "" && k.Algorithm[0] == 'H':
		v.Key = k.Secret
	case k.PublicKeyPEM != "":
		pub, err := authz.ParsePublicKeyPEM(k.Algorithm, []byte(k.PublicKeyPEM))
		if err != nil {
			return authz.JWTKey{}, false, err
		}
		v.Key = pub
	default:
		return v, false, nil
	}
	return v, true, nil
}

// MTLSIdentity maps a client certificate to an identity of a tenant, by the
// SHA-256 fingerprint of the certificate (DER) or by its subject
// distinguished name (RFC 2253, as x509 Name.String prints it). Matching by
// subject is only as good as the CA the edge trusts for client
// certificates; a fingerprint pins one certificate. Stored at
// <prefix>mtls/<tenant>/<id>.
type MTLSIdentity struct {
	ID          string `json:"id"`
	Tenant      string `json:"tenant"`
	Description string `json:"description,omitempty"`
	// FingerprintSHA256 is 64 lowercase hex digits; empty to match by
	// subject.
	FingerprintSHA256 string `json:"fingerprint_sha256,omitempty"`
	// Subject is the certificate subject DN; empty to match by fingerprint.
	Subject string `json:"subject,omitempty"`
	// Capabilities are what clients with this certificate may do.
	Capabilities authz.Capabilities `json:"capabilities,omitempty"`
	CreatedAt    time.Time          `json:"created_at"`
	Revision     int64              `json:"-"`
}

var fingerprintRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate reports an identity that cannot be stored.
func (m MTLSIdentity) Validate() error {
	if !authz.ValidKeyID(m.ID) {
		return fmt.Errorf("%w: identity id %q", ErrInvalid, m.ID)
	}
	if !ValidID(m.Tenant) {
		return fmt.Errorf("%w: %q", ErrInvalidID, m.Tenant)
	}
	if m.FingerprintSHA256 == "" && m.Subject == "" {
		return fmt.Errorf("%w: identity needs a fingerprint or a subject", ErrInvalid)
	}
	if m.FingerprintSHA256 != "" && !fingerprintRE.MatchString(m.FingerprintSHA256) {
		return fmt.Errorf("%w: fingerprint %q is not 64 lowercase hex digits", ErrInvalid, m.FingerprintSHA256)
	}
	return m.Capabilities.Validate()
}

// Fingerprint returns the SHA-256 fingerprint of cert, as MTLSIdentity
// stores it.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// AdminKey is a credential for the admin API: "hak_<ID>_<secret>", stored
// hashed like an APIKey at <prefix>adminkeys/<id>. With Tenant empty it may
// do everything (an operator key); otherwise only read and change that
// tenant and what belongs to it.
type AdminKey struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant,omitempty"`
	Description string    `json:"description,omitempty"`
	Hash        string    `json:"hash"`
	CreatedAt   time.Time `json:"created_at"`
	Revision    int64     `json:"-"`
}

// Validate reports an admin key that cannot be stored.
func (k AdminKey) Validate() error {
	if !authz.ValidKeyID(k.ID) {
		return fmt.Errorf("%w: admin key id %q", ErrInvalid, k.ID)
	}
	if k.Tenant != "" && !ValidID(k.Tenant) {
		return fmt.Errorf("%w: %q", ErrInvalidID, k.Tenant)
	}
	if k.Hash == "" {
		return fmt.Errorf("%w: admin key %s has no hash", ErrInvalid, k.ID)
	}
	return nil
}
