// Package console is Herald's admin web console: static pages, embedded in
// the binary, that an operator or a tenant's admin opens in a browser to
// manage tenants, credentials and live state. The pages are plain ES
// modules and CSS with no framework and nothing fetched from elsewhere
// (they work offline), and they speak only to the admin REST API of the
// origin that served them, with the admin key the user typed, held in
// sessionStorage and sent as "Authorization: Bearer" — never in a URL.
//
// The handler serves files, never data: without a key the pages show only
// the login form, and every call they make is authenticated by the admin
// API as any other client's is.
package console

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"
)

// Path is where the admin HTTP listener mounts the console.
const Path = "/console/"

//go:embed static
var static embed.FS

// CSP allows the console's own scripts, styles and API calls and nothing
// else: no inline script or style, no other origin, no framing (the
// clickjacking defence, with X-Frame-Options for older browsers), no form
// posting elsewhere, no plugins.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the console under Path, with its security headers on
// every answer (a 404 included).
func Handler() (http.Handler, error) {
	files, err := fs.Sub(static, "static")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	serve := http.StripPrefix(Path, http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		// Small files, changed with the binary: always revalidate.
		h.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		serve.ServeHTTP(w, r)
	}), nil
}
