// Package cli checks Herald's programs as a person meets them on the
// command line, built as `make build` builds them into bin/: --version
// says which Herald it is, --help names the kind of value each flag takes,
// and a normal stop logs nothing that looks like trouble.
package cli

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

// programs are the binaries of `make build` a person runs; loadgen, the
// benchmarks' tool, is checked for its help only (its commands' --version
// is the MQTT protocol version).
var programs = []string{"herald", "herald-edge", "herald-session", "herald-admin"}

func bin(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(localcluster.BinDir(), name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `make build` (make test does)", p)
	}
	return p
}

// TestVersion ensures every program's --version prints its name, the
// version the Makefile stamps (the chart's appVersion), the commit it was
// built from and the Go version, rather than a build that knows nothing.
func TestVersion(t *testing.T) {
	chart, err := os.ReadFile(filepath.Join(localcluster.RepoRoot(), "charts", "herald", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	app := regexp.MustCompile(`(?m)^appVersion: *"?([^"\s]+)"?`).FindSubmatch(chart)
	if app == nil {
		t.Fatal("no appVersion in Chart.yaml")
	}
	for _, name := range programs {
		out, err := exec.Command(bin(t, name), "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", name, err, out)
		}
		want := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + ` ` + regexp.QuoteMeta(string(app[1])) +
			` \(commit [0-9a-f]{7,40}(-dirty)?, go1\.\d+(\.\d+)?\S* \S+/\S+\)\n$`)
		if !want.Match(out) {
			t.Errorf("%s --version printed %q, want %v", name, out, want)
		}
	}
}

// placeholders are the words a flag's value may be shown as in --help:
// the kind of value it takes. Kong's own defaults — the Go type's name
// (STRING, INT, INT-64, FLOAT-64, CONFIG-FLAG) or the flag's name in
// capitals — are not among them. A new flag whose value is of a new kind
// adds its word here.
var placeholders = []string{
	"ADDR", "URL", "PATH", "FILE", "DIR", "DURATION", "N", "BYTES", "FRACTION", "CODE",
	"NAME", "ID", "TENANT", "TOKEN", "HASH", "PASSWORD", "USER", "PREFIX", "TEXT", "MODE",
	"PATTERN", "ORIGIN", "CIDR", "HEADER", "CAPABILITY", "PID", "REVISION", "TOPIC", "KEY=VALUE",
}

// helpFlag is a flag with a value in --help: --name=PLACEHOLDER, where a
// placeholder in capitals is a word, and anything else the default value.
var helpFlag = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)=(\S+)`)

// commands returns the command lines of a program's --help ("Commands:"),
// each as its words before the first argument or [flags].
func commands(help string) [][]string {
	_, list, ok := strings.Cut(help, "\nCommands:\n")
	if !ok {
		return nil
	}
	var out [][]string
	for _, l := range strings.Split(list, "\n") {
		if !strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "   ") {
			continue
		}
		var words []string
		for _, w := range strings.Fields(l) {
			if strings.HasPrefix(w, "<") || strings.HasPrefix(w, "[") {
				break
			}
			words = append(words, w)
		}
		out = append(out, words)
	}
	return out
}

// TestHelpPlaceholders ensures every flag of every program and command
// shows its value as a real placeholder (ADDR, DURATION, PATH, N, ...) or
// its default, never as kong's default of a Go type name or the flag's own
// name in capitals.
func TestHelpPlaceholders(t *testing.T) {
	for _, name := range append(slices.Clone(programs), "loadgen") {
		help := func(args ...string) string {
			out, err := exec.Command(bin(t, name), append(args, "--help")...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s --help: %v\n%s", name, strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		top := help()
		pages := map[string]string{name: top}
		for _, cmd := range commands(top) {
			pages[name+" "+strings.Join(cmd, " ")] = help(cmd...)
		}
		for page, text := range pages {
			for _, m := range helpFlag.FindAllStringSubmatch(text, -1) {
				flag, value := m[1], strings.TrimSuffix(m[2], ",...")
				if !regexp.MustCompile(`^[A-Z][A-Z0-9=-]*$`).MatchString(value) {
					continue // a default value
				}
				if !slices.Contains(placeholders, value) {
					t.Errorf("%s --help: --%s=%s is not a placeholder of tests/cli's list (kong's default, or a new word)", page, flag, m[2])
				}
			}
		}
	}
}

// TestHTTPAddressHelp ensures the help of the HTTP address names every
// path the edge serves there.
func TestHTTPAddressHelp(t *testing.T) {
	for _, name := range []string{"herald", "herald-edge"} {
		out, err := exec.Command(bin(t, name), "--help").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		entry := regexp.MustCompile(`(?s)--http-addr=\S+\s+(.*?)\n\s+--`).FindSubmatch(out)
		if entry == nil {
			t.Fatalf("%s --help has no --http-addr", name)
		}
		text := strings.Join(strings.Fields(string(entry[1])), " ")
		for _, path := range []string{"/sse", "/ws", "/mqtt", "/publish", "/poll", "/healthz", "/ (the example page"} {
			if !strings.Contains(text, path) {
				t.Errorf("%s: --http-addr's help does not name %s: %s", name, path, text)
			}
		}
	}
}
