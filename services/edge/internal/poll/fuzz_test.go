package poll

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// FuzzParse ensures any query string of GET /poll is either refused as a
// client error (400) or parsed within the configured bounds: at most
// MaxFilters distinct valid filters, a timeout within [0, MaxTimeout] and
// a max within [1, MaxMessages].
func FuzzParse(f *testing.F) {
	for _, q := range []string{"topic=a/%23", "topic=a/%2B&topic=b&cursor=kx-3&timeout=2.5&max=10",
		"topic=a&timeout=-1", "topic=a&timeout=NaN", "topic=a&timeout=1e308", "topic=a&max=0", "topic=a&max=99999999999999999999",
		"topic=%23%23", "topic=a&cursor=-", "", "topic=%ff", "topic=a;b", "topic=a&timeout=Inf"} {
		f.Add(q)
	}
	h := NewHandler(Config{}, &node.Node{}).(*Handler)
	f.Fuzz(func(t *testing.T, query string) {
		req, err := h.parse(&http.Request{URL: &url.URL{Path: "/poll", RawQuery: query}})
		if err != nil {
			if _, status := httpapi.Classify(err); status != http.StatusBadRequest {
				t.Fatalf("%q: %v classified %d, want 400", query, err, status)
			}
			return
		}
		if n := len(req.filters); n == 0 || n > h.cfg.MaxFilters {
			t.Fatalf("%q: %d filters accepted", query, n)
		}
		if req.timeout < 0 || req.timeout > h.cfg.MaxTimeout {
			t.Fatalf("%q: timeout %v outside [0, %v]", query, req.timeout, h.cfg.MaxTimeout)
		}
		if req.max < 1 || req.max > h.cfg.MaxMessages {
			t.Fatalf("%q: max %d outside [1, %d]", query, req.max, h.cfg.MaxMessages)
		}
	})
}
