package tenantauth

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	"golang.org/x/time/rate"
)

// Sentinel errors of JWKS fetches. They reach the edge's log, never a
// client: a client whose token cannot be checked is refused as with any
// unknown key (auth.ErrBadCredentials), so that nothing of the operator's
// network shows in an MQTT reason string.
var (
	// ErrAddressRefused is returned for a JWKS fetch that would connect to
	// an address an edge must not reach on a tenant's behalf (loopback,
	// private, link-local, ...; see JWKSConfig.AllowNetworks).
	ErrAddressRefused = errors.New("tenantauth: JWKS address refused")
	// ErrJWKSRedirect is returned for a JWKS URL that answers with a
	// redirect: none is followed.
	ErrJWKSRedirect = errors.New("tenantauth: JWKS redirect refused")
	// ErrJWKSDocument is returned for a JWKS answer that is not a usable
	// JWK Set: a status other than 200, over the size or key bounds, not
	// JSON, or without a key suiting the Herald key's algorithm.
	ErrJWKSDocument = errors.New("tenantauth: unusable JWKS document")
)

// Defaults of JWKSConfig.
const (
	DefaultJWKSRefreshInterval    = 15 * time.Minute
	DefaultJWKSMaxRefreshInterval = 24 * time.Hour
	DefaultJWKSRefetchInterval    = 30 * time.Second
	DefaultJWKSTenantFetches      = 8
	DefaultJWKSMaxStale           = 24 * time.Hour
	DefaultJWKSFetchTimeout       = 5 * time.Second
	DefaultJWKSMaxDocumentBytes   = 256 << 10
	DefaultJWKSMaxKeys            = 64
)

// JWKSConfig bounds how an edge fetches the JWKS documents that tenants'
// JWT keys name (tenant.JWTKey.JWKSURL). Tenant admins choose those URLs
// and are strangers to the operator: every bound here holds whatever the
// URL answers. The edge's flags map onto it: --jwks-allow-networks,
// --jwks-refresh-interval, --jwks-refetch-interval.
type JWKSConfig struct {
	// RefreshInterval is how long a fetched document is used before it is
	// fetched again, when its answer has no Cache-Control max-age; default
	// DefaultJWKSRefreshInterval.
	RefreshInterval time.Duration `name:"refresh-interval" env:"HERALD_JWKS_REFRESH_INTERVAL" help:"How long a JWKS document is used when its answer has no Cache-Control max-age (default 15m)."`
	// MaxRefreshInterval caps a Cache-Control max-age (a larger one, or
	// one far in the future, is cut to it); default
	// DefaultJWKSMaxRefreshInterval. Its floor is RefetchInterval: a
	// max-age of 0 or no-cache means "every RefetchInterval", no more.
	MaxRefreshInterval time.Duration `name:"max-refresh-interval" env:"HERALD_JWKS_MAX_REFRESH_INTERVAL" help:"Caps a Cache-Control max-age (a larger one, or one far in the future, is cut to it); default 24h."`
	// RefetchInterval is the least time between two fetches for one JWT
	// key, whatever asks for them: a token naming a kid the document
	// lacks (key rotation), a refresh that is due, a retry after a
	// failure. A flood of tokens with random kids makes at most one fetch
	// per key per RefetchInterval; default DefaultJWKSRefetchInterval.
	RefetchInterval time.Duration `name:"refetch-interval" env:"HERALD_JWKS_REFETCH_INTERVAL" help:"Least time between two fetches of one JWT key's JWKS document, whatever asks (a token's unknown kid, a due refresh, a retry) (default 30s)."`
	// TenantFetches bounds the fetches all JWKS keys of one tenant start
	// together, per RefetchInterval (a token bucket of that burst): a
	// tenant that names one URL in many keys cannot multiply the edge's
	// requests to it. Default DefaultJWKSTenantFetches.
	TenantFetches int `name:"tenant-fetches" env:"HERALD_JWKS_TENANT_FETCHES" placeholder:"N" help:"Bounds the fetches all JWKS keys of one tenant start together, per RefetchInterval (a token bucket of that burst): a tenant that names one URL in many keys cannot multiply the edge's requests to it."`
	// MaxStale is how long past its refresh time a document is still used
	// while fetching it again fails (the identity provider is down); then
	// its tokens are refused until a fetch succeeds. Default
	// DefaultJWKSMaxStale.
	MaxStale time.Duration `name:"max-stale" env:"HERALD_JWKS_MAX_STALE" help:"How long past its refresh time a document is still used while fetching it again fails (the identity provider is down); then its tokens are refused until a fetch succeeds."`
	// FetchTimeout bounds one fetch: connection, TLS handshake, headers
	// and body; default DefaultJWKSFetchTimeout.
	FetchTimeout time.Duration `name:"fetch-timeout" env:"HERALD_JWKS_FETCH_TIMEOUT" help:"Bounds one fetch: connection, TLS handshake, headers and body; default 5s."`
	// MaxDocumentBytes bounds a document (after any content decoding); a
	// larger one is refused, unread past the bound. Default
	// DefaultJWKSMaxDocumentBytes (256 KiB).
	MaxDocumentBytes int64 `name:"max-document-bytes" env:"HERALD_JWKS_MAX_DOCUMENT_BYTES" placeholder:"BYTES" help:"Bounds a document (after any content decoding); a larger one is refused, unread past the bound."`
	// MaxKeys bounds the keys of a document; one with more is refused.
	// Default DefaultJWKSMaxKeys.
	MaxKeys int `name:"max-keys" env:"HERALD_JWKS_MAX_KEYS" placeholder:"N" help:"Bounds the keys of a document; one with more is refused (default 64)."`
	// AllowNetworks are networks (CIDR, or a single address) a JWKS fetch
	// may connect to although they are loopback, private, link-local or
	// otherwise internal: an identity provider on the operator's own
	// network. Empty (the default): every such address is refused. The
	// check is made on the address each connection is about to use, after
	// DNS, so a host name that resolves (or rebinds) to a refused address
	// is refused too.
	AllowNetworks []string `name:"allow-networks" env:"HERALD_JWKS_ALLOW_NETWORKS" placeholder:"CIDR" help:"Internal networks (CIDRs or addresses) a JWKS fetch may reach: an identity provider on your own network. By default loopback, private, link-local (cloud metadata), unspecified, multicast and reserved addresses are refused, checked on each connection's resolved address."`
	// RootCAs verifies the identity providers' certificates; nil means the
	// system's (extended by SSL_CERT_FILE and SSL_CERT_DIR). Tests set it.
	RootCAs *x509.CertPool `kong:"-"`
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c JWKSConfig) WithDefaults() JWKSConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.RefreshInterval, DefaultJWKSRefreshInterval)
	def(&c.MaxRefreshInterval, DefaultJWKSMaxRefreshInterval)
	def(&c.RefetchInterval, DefaultJWKSRefetchInterval)
	def(&c.MaxStale, DefaultJWKSMaxStale)
	def(&c.FetchTimeout, DefaultJWKSFetchTimeout)
	if c.TenantFetches == 0 {
		c.TenantFetches = DefaultJWKSTenantFetches
	}
	if c.MaxDocumentBytes == 0 {
		c.MaxDocumentBytes = DefaultJWKSMaxDocumentBytes
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultJWKSMaxKeys
	}
	return c
}

// Validate reports a configuration error.
func (c JWKSConfig) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.RefreshInterval < 0, c.MaxRefreshInterval < 0, c.RefetchInterval < 0, c.MaxStale < 0, c.FetchTimeout < 0,
		c.TenantFetches < 0, c.MaxDocumentBytes < 0, c.MaxKeys < 0:
		return errors.New("tenantauth: negative JWKS bound")
	case c.MaxRefreshInterval < c.RefetchInterval:
		return errors.New("tenantauth: JWKS max refresh interval below the refetch interval")
	}
	_, err := parseNetworks(c.AllowNetworks)
	return err
}

// parseNetworks parses CIDRs and single addresses.
func parseNetworks(nets []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range nets {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("tenantauth: JWKS allowed network %q is neither a CIDR nor an address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// jwksCache holds, per JWKS key of a tenant, the keys of its document. It
// is keyed by the Herald key (tenant and id), not by URL: tenants naming
// the same URL each have their own document, fetch times and rate, so
// that one tenant's tokens can neither spend another's refetch budget nor
// time when another sees a rotation. It holds at most one document per
// JWKS key the Directory has (a key's entry goes when a new entry is made
// and the key is gone or changed).
//
// It starts no goroutine: the connection that needs a document missing,
// due or lacking its kid fetches it (within FetchTimeout), others wait
// for that fetch only if they have nothing to verify with.
type jwksCache struct {
	cfg    JWKSConfig
	dir    Directory
	client *http.Client
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	tenants map[string]*tenantJWKS
}

// tenantJWKS is one tenant's documents and fetch budget.
type tenantJWKS struct {
	fetches *rate.Limiter
	entries map[string]*jwksEntry // by Herald key id
}

// jwksEntry is the document of one JWKS key.
type jwksEntry struct {
	url, alg string // what the entry is for: a key changed in place gets a new entry

	mu          sync.Mutex
	keys        []jwk     // of the last good document; nil before one
	refreshAt   time.Time // when keys are due for a refresh
	lastAttempt time.Time // start of the last fetch; zero before one
	lastErr     error     // of the last fetch; nil after a success
	fetching    chan struct{}
}

// jwk is a key of a document that suits the Herald key's algorithm.
type jwk struct {
	kid string
	key crypto.PublicKey
}

func newJWKSCache(cfg JWKSConfig, dir Directory, now func() time.Time, log *slog.Logger) (*jwksCache, error) {
	allow, err := parseNetworks(cfg.AllowNetworks)
	if err != nil {
		return nil, err
	}
	guard := addressGuard{allow: allow}
	dialer := &net.Dialer{Timeout: cfg.FetchTimeout, Control: guard.control}
	tr := &http.Transport{
		// No proxy: the address check must see the identity provider's
		// address, not a proxy's (which would fetch anything for us).
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    cfg.FetchTimeout,
		ResponseHeaderTimeout:  cfg.FetchTimeout,
		MaxResponseHeaderBytes: 64 << 10,
		// A document is fetched every few minutes at most: no idle
		// connection to a stranger's server is kept between fetches.
		DisableKeepAlives: true,
	}
	client := &http.Client{Transport: tr, Timeout: cfg.FetchTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return ErrJWKSRedirect }}
	return &jwksCache{cfg: cfg, dir: dir, client: client, now: now, log: log, tenants: map[string]*tenantJWKS{}}, nil
}

// candidates returns the keys, from the documents of the tenant's JWKS
// keys, that a token may be verified with: those of the keys whose
// algorithm is the token's and whose issuer, if set, is the token's (a
// key that could not verify the token is not fetched), and within their
// documents those whose kid is the token's (all of them for a token
// without a kid). Each is named by its Herald key's ID and carries the
// JWK's kid (authz.JWTKey.KID).
func (c *jwksCache) candidates(ctx context.Context, tid string, p authz.JWTPeek) []authz.JWTKey {
	var out []authz.JWTKey
	for _, k := range c.dir.JWKSKeys(tid) {
		if k.Algorithm != p.Alg || (k.Issuer != "" && k.Issuer != p.Issuer) {
			continue
		}
		v, _, err := k.Verifier()
		if err != nil {
			continue
		}
		for _, j := range c.entry(tid, k).keysFor(ctx, c, tid, k.ID, p.KID) {
			v.KID, v.Key = j.kid, j.key
			out = append(out, v)
		}
	}
	return out
}

// entry returns the entry of key k of tenant tid, making it (and
// forgetting the entries of keys the Directory no longer has) if needed.
func (c *jwksCache) entry(tid string, k tenant.JWTKey) *jwksEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tenants[tid]
	if t != nil {
		if e := t.entries[k.ID]; e != nil && e.url == k.JWKSURL && e.alg == k.Algorithm {
			return e
		}
	}
	c.prune()
	if t = c.tenants[tid]; t == nil {
		every := rate.Every(c.cfg.RefetchInterval / time.Duration(c.cfg.TenantFetches))
		t = &tenantJWKS{fetches: rate.NewLimiter(every, c.cfg.TenantFetches), entries: map[string]*jwksEntry{}}
		c.tenants[tid] = t
	}
	e := &jwksEntry{url: k.JWKSURL, alg: k.Algorithm}
	t.entries[k.ID] = e
	return e
}

// prune forgets the entries whose key the Directory no longer has as it
// was, and tenants left without entries. c.mu is held.
func (c *jwksCache) prune() {
	for tid, t := range c.tenants {
		keys := c.dir.JWKSKeys(tid)
		for id, e := range t.entries {
			if !slices.ContainsFunc(keys, func(k tenant.JWTKey) bool {
				return k.ID == id && k.JWKSURL == e.url && k.Algorithm == e.alg
			}) {
				delete(t.entries, id)
			}
		}
		if len(t.entries) == 0 {
			delete(c.tenants, tid)
		}
	}
}

// documents returns how many documents the cache holds entries for.
func (c *jwksCache) documents() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.tenants {
		n += len(t.entries)
	}
	return n
}

// allowFetch takes a fetch from the tenant's budget.
func (c *jwksCache) allowFetch(tid string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tenants[tid]
	return t != nil && t.fetches.AllowN(now, 1)
}

// keysFor returns the keys of e's document matching kid (all of them for
// an empty kid), first fetching the document if it is missing, due for a
// refresh, or lacks kid, and a fetch may start (RefetchInterval since the
// last one, and the tenant's budget). While another connection fetches
// it, keysFor uses the keys it has, or, with none usable or kid missing,
// waits for that fetch (or ctx).
func (e *jwksEntry) keysFor(ctx context.Context, c *jwksCache, tid, keyID, kid string) []jwk {
	waited := false
	for {
		e.mu.Lock()
		now := c.now()
		usable := e.keys != nil && now.Before(e.refreshAt.Add(c.cfg.MaxStale))
		due := e.keys == nil || !now.Before(e.refreshAt)
		missing := kid != "" && !slices.ContainsFunc(e.keys, func(j jwk) bool { return j.kid == kid })
		switch {
		case !due && !missing, waited:
			return e.matching(usable, kid)
		case e.fetching != nil:
			if usable && !missing {
				return e.matching(usable, kid)
			}
			ch := e.fetching
			e.mu.Unlock()
			select {
			case <-ch:
				waited = true
				continue
			case <-ctx.Done():
				return nil
			}
		case !e.lastAttempt.IsZero() && now.Sub(e.lastAttempt) < c.cfg.RefetchInterval, !c.allowFetch(tid, now):
			return e.matching(usable, kid)
		}
		ch := make(chan struct{})
		e.fetching, e.lastAttempt = ch, now
		e.mu.Unlock()

		keys, ttl, err := c.fetch(ctx, e.url, e.alg)

		e.mu.Lock()
		if err == nil {
			e.keys, e.refreshAt, e.lastErr = keys, c.now().Add(ttl), nil
		} else {
			e.lastErr = err
			c.log.Warn("JWKS fetch failed: the key's last good document, if any, is used until it is stale",
				"tenant", tid, "jwt_key", keyID, "url", e.url, "err", err, "have_keys", usable,
				"retry_after", c.cfg.RefetchInterval)
		}
		e.fetching = nil
		close(ch)
		e.mu.Unlock()
		waited = true
	}
}

// matching returns the keys matching kid, if usable, and unlocks e.
func (e *jwksEntry) matching(usable bool, kid string) []jwk {
	defer e.mu.Unlock()
	if !usable {
		return nil
	}
	if kid == "" {
		return e.keys
	}
	var out []jwk
	for _, j := range e.keys {
		if j.kid == kid {
			out = append(out, j)
		}
	}
	return out
}

// fetch fetches and parses a document, and says how long it may be used
// before it is due for a refresh.
func (c *jwksCache) fetch(ctx context.Context, rawURL, alg string) ([]jwk, time.Duration, error) {
	if u, err := url.Parse(rawURL); err != nil || u.Scheme != "https" {
		return nil, 0, fmt.Errorf("%w: %q is not an https URL", ErrJWKSDocument, rawURL)
	}
	// The fetch serves every connection waiting for this document: it is
	// bounded by FetchTimeout, not by the connection that started it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrJWKSDocument, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	req.Header.Set("User-Agent", "herald-edge")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("%w: status %s", ErrJWKSDocument, resp.Status)
	}
	limit := c.cfg.MaxDocumentBytes
	if resp.ContentLength > limit {
		return nil, 0, fmt.Errorf("%w: %d bytes, at most %d", ErrJWKSDocument, resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: reading: %w", ErrJWKSDocument, err)
	}
	if int64(len(body)) > limit {
		return nil, 0, fmt.Errorf("%w: over %d bytes", ErrJWKSDocument, limit)
	}
	keys, err := parseJWKS(body, alg, c.cfg.MaxKeys)
	if err != nil {
		return nil, 0, err
	}
	return keys, c.ttl(resp.Header.Get("Cache-Control")), nil
}

// ttl is how long a document may be used: its Cache-Control max-age
// (no-cache and no-store count as 0) within [RefetchInterval,
// MaxRefreshInterval], or RefreshInterval without one.
func (c *jwksCache) ttl(cacheControl string) time.Duration {
	ttl, set := time.Duration(0), false
	for d := range strings.SplitSeq(cacheControl, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(name) {
		case "no-cache", "no-store":
			ttl, set = 0, true
		case "max-age":
			n, err := strconv.ParseUint(strings.Trim(value, `"`), 10, 64)
			if errors.Is(err, strconv.ErrRange) {
				n, err = math.MaxUint64, nil // "far in the future"
			}
			if err == nil && !set {
				ttl, set = time.Duration(min(n, uint64(c.cfg.MaxRefreshInterval/time.Second)))*time.Second, true
			}
		}
	}
	if !set {
		return c.cfg.RefreshInterval
	}
	return min(max(ttl, c.cfg.RefetchInterval), c.cfg.MaxRefreshInterval)
}

// parseJWKS returns the keys of a JWK Set (RFC 7517) that can verify alg:
// kty RSA for RS*/PS*, EC on the algorithm's curve for ES*; "use", if
// present, "sig"; "alg", if present, alg itself; "key_ops", if present,
// holding "verify"; RSA of at least 2048 bits (authz.CheckPublicKey).
// Other keys (encryption keys, other algorithms, key types Herald does
// not verify with) are skipped; a document with more than maxKeys keys,
// or none that suits, is refused. Private members are ignored.
func parseJWKS(body []byte, alg string, maxKeys int) ([]jwk, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%w: not a JWK Set: %w", ErrJWKSDocument, err)
	}
	if len(doc.Keys) > maxKeys {
		return nil, fmt.Errorf("%w: %d keys, at most %d", ErrJWKSDocument, len(doc.Keys), maxKeys)
	}
	kty := jwkset.KtyRSA
	if alg[0] == 'E' {
		kty = jwkset.KtyEC
	}
	var keys []jwk
	for _, raw := range doc.Keys {
		var m jwkset.JWKMarshal
		if json.Unmarshal(raw, &m) != nil || m.KTY != kty || (m.USE != "" && m.USE != jwkset.UseSig) ||
			(m.ALG != "" && string(m.ALG) != alg) || (len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify)) {
			continue
		}
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			continue
		}
		if authz.CheckPublicKey(alg, j.Key()) != nil {
			continue
		}
		keys = append(keys, jwk{kid: m.KID, key: j.Key()})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: none of its %d keys can verify %s", ErrJWKSDocument, len(doc.Keys), alg)
	}
	return keys, nil
}
