// Package cors is the edge's one place for Cross-Origin Resource Sharing:
// which browser origins may read the answers of every HTTP endpoint (SSE,
// long-polling, publish) and send the credentials and headers they need.
//
// With no allowed origin (the default) nothing is added: only pages served
// by the edge's own origin can read its answers, as browsers enforce. The
// WebSocket endpoints check the Origin header themselves (browsers do not
// apply CORS to WebSocket); the edge derives their allowed hosts from the
// same list (Hosts).
package cors

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config configures CORS. The zero value allows no cross-origin reader.
type Config struct {
	// AllowedOrigins lists the origins ("https://app.example.com") allowed
	// to read answers. An entry may be a path.Match pattern
	// ("https://*.example.com"); "*" allows every origin, without
	// credentials.
	AllowedOrigins []string `name:"origins" env:"HERALD_CORS_ORIGINS" placeholder:"ORIGIN" help:"Browser origins allowed cross-origin (scheme://host[:port], patterns, or *); they may also open WebSockets."`
	// AllowCredentials lets pages send cookies (herald_token) and read the
	// answers. It cannot be combined with "*".
	AllowCredentials bool `name:"credentials" env:"HERALD_CORS_CREDENTIALS" help:"Let allowed origins send cookies and credentials."`
	// AllowedHeaders are the request headers a preflight admits; default
	// Authorization, Content-Type, Last-Event-ID, Traceparent.
	AllowedHeaders []string `name:"allowed-headers" env:"HERALD_CORS_ALLOWED_HEADERS" placeholder:"HEADER" help:"The request headers a preflight admits; default Authorization, Content-Type, Last-Event-ID, Traceparent."`
	// MaxAge is how long browsers may cache a preflight answer; default 10m.
	MaxAge time.Duration `name:"max-age" env:"HERALD_CORS_MAX_AGE" help:"How long browsers may cache a preflight answer; default 10m."`
}

// ExposedHeaders are the response headers cross-origin pages may read.
var ExposedHeaders = []string{"X-Herald-Edge"}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if len(c.AllowedHeaders) == 0 {
		c.AllowedHeaders = []string{"Authorization", "Content-Type", "Last-Event-ID", "Traceparent"}
	}
	if c.MaxAge == 0 {
		c.MaxAge = 10 * time.Minute
	}
	return c
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	var errs []error
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			if c.AllowCredentials {
				errs = append(errs, errors.New("cors: allowed origin \"*\" cannot be combined with allow_credentials"))
			}
			continue
		}
		if _, err := path.Match(o, ""); err != nil {
			errs = append(errs, fmt.Errorf("cors: allowed origin %q: %w", o, err))
			continue
		}
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("cors: allowed origin %q must be scheme://host[:port]", o))
		}
	}
	if c.MaxAge < 0 {
		errs = append(errs, errors.New("cors: negative max_age"))
	}
	return errors.Join(errs...)
}

// Hosts returns the host patterns of the allowed origins, in the form the
// WebSocket origin check takes ("app.example.com", "*.example.com", "*").
func (c Config) Hosts() []string {
	var out []string
	for _, o := range c.AllowedOrigins {
		h := o
		if o != "*" {
			_, h, _ = strings.Cut(o, "://")
			h = strings.TrimSuffix(h, "/")
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// handler is the CORS middleware.
type handler struct {
	cfg     Config
	any     bool
	headers string
	maxAge  string
	next    http.Handler
}

// Middleware wraps next with CORS: it answers preflight requests (OPTIONS
// with Access-Control-Request-Method) itself and adds the CORS headers to
// every answer to an allowed origin. cfg must be valid.
func Middleware(cfg Config, next http.Handler) http.Handler {
	cfg = cfg.WithDefaults()
	if len(cfg.AllowedOrigins) == 0 {
		return next
	}
	return &handler{cfg: cfg, any: slices.Contains(cfg.AllowedOrigins, "*"),
		headers: strings.Join(cfg.AllowedHeaders, ", "),
		maxAge:  strconv.Itoa(int(cfg.MaxAge.Seconds())), next: next}
}

func (h *handler) allowed(origin string) bool {
	if h.any {
		return true
	}
	for _, o := range h.cfg.AllowedOrigins {
		if o == origin {
			return true
		}
		if ok, _ := path.Match(o, origin); ok {
			return true
		}
	}
	return false
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	hdr := w.Header()
	hdr.Add("Vary", "Origin")
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if origin == "" || !h.allowed(origin) {
		if preflight {
			// No CORS headers: the browser refuses the actual request.
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.next.ServeHTTP(w, r)
		return
	}
	if h.any && !h.cfg.AllowCredentials {
		hdr.Set("Access-Control-Allow-Origin", "*")
	} else {
		hdr.Set("Access-Control-Allow-Origin", origin)
	}
	if h.cfg.AllowCredentials {
		hdr.Set("Access-Control-Allow-Credentials", "true")
	}
	if !preflight {
		hdr.Set("Access-Control-Expose-Headers", strings.Join(ExposedHeaders, ", "))
		h.next.ServeHTTP(w, r)
		return
	}
	hdr.Add("Vary", "Access-Control-Request-Method")
	hdr.Add("Vary", "Access-Control-Request-Headers")
	hdr.Set("Access-Control-Allow-Methods", "GET, POST")
	hdr.Set("Access-Control-Allow-Headers", h.headers)
	hdr.Set("Access-Control-Max-Age", h.maxAge)
	w.WriteHeader(http.StatusNoContent)
}

var _ http.Handler = (*handler)(nil)
