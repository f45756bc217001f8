package cors

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/heraldmq/herald/pkg/fault"
)

// ErrCrossSite is the refusal of a request a page of another origin made
// with the visitor's credentials (HTTP 403 not_authorized): a WebSocket
// opened from a foreign origin, a publish with the cookie credential from
// one or with a content type any page can send.
var ErrCrossSite = fault.New(fault.Forbidden, "cors: cross-site request refused")

// CheckOrigin reports whether a request's Origin may act on this edge: nil
// when it has none (not a browser's cross-origin request), when it names
// the request's own host, or when its host (or scheme://host, for patterns
// with a scheme) matches one of hosts, path.Match patterns as Config.Hosts
// returns them; otherwise an error wrapping ErrCrossSite. It is the rule
// coder/websocket applies to WebSocket upgrades (AcceptOptions.
// OriginPatterns), applied by the edge itself so that every refusal is the
// same JSON 403.
func CheckOrigin(r *http.Request, hosts []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: Origin %q is not scheme://host", ErrCrossSite, origin)
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, p := range hosts {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return nil
		}
	}
	return fmt.Errorf("%w: origin %s may not act on %s", ErrCrossSite, origin, r.Host)
}

// simpleTypes are the content types a page of any origin may POST without
// a CORS preflight (the Fetch standard's CORS-safelisted Content-Type):
// what an HTML form or a no-cors fetch sends.
var simpleTypes = []string{"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}

// CheckCookieWrite reports whether a request that writes with the cookie
// credential (a publish) may: its Origin passes CheckOrigin with hosts,
// and its Content-Type is one that a cross-origin page cannot send without
// a preflight — present, well-formed and none of the form types. A
// browser that sends no Origin (older ones, on a form) is thus still
// refused: a form can only send those types. Errors wrap ErrCrossSite.
func CheckCookieWrite(r *http.Request, hosts []string) error {
	if err := CheckOrigin(r, hosts); err != nil {
		return err
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || slices.Contains(simpleTypes, mt) { // mt is lower case
		return fmt.Errorf("%w: with the cookie credential the Content-Type must be another than a form's "+
			"(none, %s): send the token in the Authorization header, or another type such as application/octet-stream",
			ErrCrossSite, strings.Join(simpleTypes, ", "))
	}
	return nil
}
