package tenantauth

import "time"

// Tracked returns how many sources and keys a's failure limiter holds.
func Tracked(a *Authenticator) int { return a.failures.len() }

// JWKSFetchErr returns the error of the last fetch of a JWKS key's
// document (nil after a success, or before any fetch).
func JWKSFetchErr(a *Authenticator, tenantID, keyID string) error {
	var e *jwksEntry
	a.jwks.mu.Lock()
	if t := a.jwks.tenants[tenantID]; t != nil {
		e = t.entries[keyID]
	}
	a.jwks.mu.Unlock()
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastErr
}

// JWKSDocuments returns how many JWKS documents a holds entries for.
func JWKSDocuments(a *Authenticator) int { return a.jwks.documents() }

// JWKSTTL returns how long a's JWKS cache uses a document answered with
// that Cache-Control header.
func JWKSTTL(a *Authenticator, cacheControl string) time.Duration { return a.jwks.ttl(cacheControl) }

// CheckJWKSAddress runs the dial-time check of JWKS fetches, with the
// allowed networks, on an "ip:port" address, as the dialer does before it
// connects.
func CheckJWKSAddress(allow []string, address string) error {
	nets, err := parseNetworks(allow)
	if err != nil {
		return err
	}
	return addressGuard{allow: nets}.control("tcp", address, nil)
}
