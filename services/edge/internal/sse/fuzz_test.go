package sse

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/heraldmq/herald/pkg/message"
	"github.com/heraldmq/herald/services/edge/internal/edgetest"
	"github.com/heraldmq/herald/services/edge/internal/httpapi"
	"github.com/heraldmq/herald/services/edge/internal/node"
)

// FuzzRequest ensures the client input of GET /sse — the Last-Event-ID
// header and the query (topic filters, lastEventId) — is either refused as
// a client error (400) or accepted within bounds: at most MaxFilters
// distinct filters, and a resume position that formats back to itself.
func FuzzRequest(f *testing.F) {
	for _, s := range [][2]string{{"", "topic=a/%23"}, {"kx3-17", "topic=a&topic=a&topic=b/%2B"}, {"", "topic=a&lastEventId=5"},
		{" 7 ", "topic=%23"}, {"-1", "topic=a"}, {"x-", "topic="}, {"", "topic=a/%23/b"}, {"\x00", "topic=%ff%fe"},
		{"a-b-18446744073709551616", "lastEventId=1"}, {"", "topic=%24SYS/%23"}} {
		f.Add(s[0], s[1])
	}
	n := edgetest.MemoryNode(f)
	h := NewHandler(Config{}, n)
	adm := edgetest.Admit(f, n)
	f.Fuzz(func(t *testing.T, header, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return // net/http answers 400 before the handler sees it
		}
		p, err := position(header, q)
		switch {
		case err != nil:
			if !errors.Is(err, message.ErrBadPosition) {
				t.Fatalf("position(%q, %q): %v is not ErrBadPosition", header, query, err)
			}
			badRequest(t, err)
		default:
			if p, ok := p.Position(); ok {
				if again, err := message.ParsePosition(p.String()); err != nil || again != p {
					t.Fatalf("position %+v formats as %q, parsed back as %+v, %v", p, p.String(), again, err)
				}
			}
		}
		// The filters are the core's to check, as a subscription of this
		// handler's policy.
		feed, err := n.Subscribe(context.Background(), adm, q["topic"], node.Live(), node.Policy{Queue: 1, MaxFilters: h.cfg.MaxFilters})
		if err != nil {
			badRequest(t, err)
			return
		}
		defer feed.Close()
		if got := n.Subscriptions(); got == 0 || got > h.cfg.MaxFilters {
			t.Fatalf("%q: %d filters accepted", query, got)
		}
	})
}

func badRequest(t *testing.T, err error) {
	t.Helper()
	if _, status := httpapi.Classify(err); status != http.StatusBadRequest {
		t.Fatalf("%v classified %d, want 400", err, status)
	}
}
