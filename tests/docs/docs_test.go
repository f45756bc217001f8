package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/heraldmq/herald/tests/localcluster"
)

// TestReadme ensures the README's commands work as written, in order: "Try
// it" against `make run` (herald-admin beside curl for tenants and keys), "The local cluster" from `make cluster-up` to
// `make cluster-down` with nothing left running, each printing what the
// README shows; and that its list of targets is make help's.
func TestReadme(t *testing.T) {
	// The sections whose commands a newcomer runs first must be marked.
	var got []string
	for _, s := range sections(t, "README.md") {
		if !slices.Contains(got, s) {
			got = append(got, s)
		}
	}
	for _, want := range []string{"Try it", "The local cluster", "Development"} {
		if !slices.Contains(got, want) {
			t.Fatalf("README.md: no block of %q is marked for tests/docs (marked: %v)", want, got)
		}
	}
	// Tenants and keys are shown with the admin API's command-line client
	// beside curl, in a block that runs.
	var run strings.Builder
	for _, b := range blocks(t, "README.md") {
		if strings.HasPrefix(b.kind, "run") {
			run.WriteString(b.text)
		}
	}
	for _, want := range []string{"bin/herald-admin tenant create", "bin/herald-admin key create", "curl"} {
		if !strings.Contains(run.String(), want) {
			t.Fatalf("README.md: no block that runs shows %q", want)
		}
	}
	runDoc(t, "README.md")
}

// TestReadmeQuotesNoDurations ensures the README states how long a make
// target takes or what it installs only where make help says it (the block
// TestReadme compares with make help), so that README and Makefile cannot
// disagree.
func TestReadmeQuotesNoDurations(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(localcluster.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	// Drop the make help block.
	text = regexp.MustCompile("(?s)<!-- tests/docs: make help prints -->\n```text\n.*?```").ReplaceAllString(text, "")
	list, err := exec.Command("bash", filepath.Join(localcluster.RepoRoot(), "tools", "install-test-deps.sh"), "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	packages := strings.Fields(string(list))
	makeTest := regexp.MustCompile(`make test([^-\w]|$)`)
	duration := regexp.MustCompile(`~ ?\d+ ?(s|min|minutes?)\b|\b\d+ (seconds|minutes)\b`)
	for _, para := range strings.Split(text, "\n\n") {
		flat := strings.Join(strings.Fields(para), " ")
		// A duration in the sentence (or clause) naming the target.
		for _, sentence := range regexp.MustCompile(`[.;]\s`).Split(flat, -1) {
			for _, target := range []*regexp.Regexp{regexp.MustCompile(`make (chaos|bench|soak|fuzz)\b`), makeTest} {
				if target.MatchString(sentence) && duration.MatchString(sentence) {
					t.Errorf("README.md says how long %s takes outside make help's list:\n%s", target.FindString(sentence), sentence)
				}
			}
		}
		named := 0
		for _, p := range packages {
			if regexp.MustCompile(`\b` + regexp.QuoteMeta(p) + `\b`).MatchString(flat) {
				named++
			}
		}
		if makeTest.MatchString(flat) && named > 2 {
			t.Errorf("README.md lists what make test installs outside make help's list:\n%s", flat)
		}
	}
}

// TestGettingStarted ensures docs/getting-started.md's commands work as
// written, in order, and print what it shows: make run's first lines, the
// MQTT device and the long-poll against it, then make cluster-up, the
// device on edge A read back from edge B, and make cluster-down with
// nothing left running. Its browser steps are tests/browser's
// TestGettingStartedPages.
func TestGettingStarted(t *testing.T) {
	runDoc(t, "docs/getting-started.md")
}
