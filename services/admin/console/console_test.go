package console

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	pathpkg "path"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w.Result()
}

// TestHeaders ensures every answer of the console, a missing file and a
// refused method included, carries the CSP (no inline script, no framing,
// no other origin) and the anti-framing and no-sniff headers.
func TestHeaders(t *testing.T) {
	h, err := Handler()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		ctype        string
	}{
		{"GET", "/console/", 200, "text/html"},
		{"GET", "/console/app.js", 200, "text/javascript"},
		{"GET", "/console/style.css", 200, "text/css"},
		{"GET", "/console/pages/topics.js", 200, "text/javascript"},
		{"GET", "/console/nothing.js", 404, ""},
		{"POST", "/console/", 405, ""},
	} {
		resp := get(t, h, tc.method, tc.path)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		if ct := resp.Header.Get("Content-Type"); tc.ctype != "" && !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("%s %s: Content-Type %q, want %s", tc.method, tc.path, ct, tc.ctype)
		}
		for k, want := range map[string]string{
			"Content-Security-Policy": CSP,
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s %s: %s %q, want %q", tc.method, tc.path, k, got, want)
			}
		}
	}
	for _, d := range []string{"script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'", "default-src 'none'"} {
		if !strings.Contains(CSP, d) {
			t.Errorf("CSP %q lacks %q", CSP, d)
		}
	}
	if strings.Contains(CSP, "unsafe-") {
		t.Errorf("CSP %q allows something unsafe", CSP)
	}
}

// TestNoInlineCode ensures the pages hold no inline script, event handler
// attribute or style attribute (which the CSP would block, so a page using
// one would silently break), that every module they import is embedded,
// and that the scripts never build HTML from strings (values from the API
// go in as text) nor put the key in a URL.
func TestNoInlineCode(t *testing.T) {
	files, _ := fs.Sub(static, "static")
	scripts := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`)
	handlerAttr := regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr := regexp.MustCompile(`(?i)\sstyle\s*=`)
	imports := regexp.MustCompile(`from '(\.[^']+)'`)
	n := 0
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		f, _ := files.Open(path)
		b, _ := io.ReadAll(f)
		f.Close()
		src := string(b)
		switch {
		case strings.HasSuffix(path, ".html"):
			for _, m := range scripts.FindAllStringSubmatch(src, -1) {
				if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
					t.Errorf("%s has an inline script: %s", path, m[0])
				}
			}
			if handlerAttr.MatchString(src) || styleAttr.MatchString(src) {
				t.Errorf("%s has an event handler attribute or a style attribute", path)
			}
		case strings.HasSuffix(path, ".js"):
			for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage"} {
				if strings.Contains(src, bad) {
					t.Errorf("%s uses %s", path, bad)
				}
			}
			for _, m := range imports.FindAllStringSubmatch(src, -1) {
				if _, err := fs.Stat(files, pathpkg.Join(pathpkg.Dir(path), m[1])); err != nil {
					t.Errorf("%s imports %s, which is not embedded: %v", path, m[1], err)
				}
			}
		}
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("walked %d files: %v", n, err)
	}
	// The key goes in a header: the API module never puts it in a query.
	b, _ := fs.ReadFile(files, "api.js")
	if !strings.Contains(string(b), "headers.Authorization = 'Bearer ' + key") || strings.Contains(string(b), "?key=") {
		t.Error("api.js does not send the key as a bearer header only")
	}
}
