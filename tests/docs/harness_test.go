// Package docs runs the commands of README.md and docs/getting-started.md
// as a newcomer types them, in order, and checks that they print what the
// documents say they print, the way projects test their docs.
//
// A document marks what this test runs, on the line above a block:
//
//	<!-- tests/docs: run -->                  the ```sh block runs on its own
//	<!-- tests/docs: run with make run -->    it runs while `make run` runs (the
//	                                          test starts it first, as the README's
//	                                          "Two commands" does, and stops it
//	                                          with SIGINT, as Ctrl-C does)
//	<!-- tests/docs: make run prints -->      each line of the next block appears
//	                                          in make run's output
//	<!-- tests/docs: make help prints -->     the next block is make help's output
//
// In a block that runs, a line "# → TEXT" is what the commands before it
// print: TEXT must appear in one line of the block's output, "…" standing
// for any text. Blocks run from the repository's root in one bash each,
// one after the other, with the documents' words changed in two ways and
// no other:
//
//   - Every port is moved to a free one, so that the test neither needs
//     the well-known ports nor collides with a Herald that a developer runs:
//     a port number of a block is replaced by a free port where it is the
//     default of bin/herald (blocks run with make run) or of
//     deploy/local/cluster.sh (the others), and the same free port is given
//     to herald (HERALD_*_ADDR) and the cluster script (its port variables)
//     through their environment. The defaults are read from `bin/herald
//     --help` and cluster.sh, so the documents' numbers must be them.
//   - ./data/ (where make run and make cluster-up keep their state) is a
//     temporary directory: DATA for make, HERALD_CLUSTER_DIR for the cluster.
//
// A command the document bounds with `timeout` may end by it (status 124);
// any other failing command fails its block, as `set -e` would (an ERR
// trap). When a block ends, no process it started may be left but the
// local cluster's own (the pid files of cluster.sh), and after a
// document's last block not those either: what a document puts in the
// background, it must end.
package docs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmq/herald/tests/localcluster"
)

// block is one block of a document marked for this test.
type block struct {
	line int    // of its opening fence, for messages
	kind string // "run", "run with make run", "make run prints", "make help prints"
	text string
}

var markerRE = regexp.MustCompile(`^<!-- tests/docs: (run|run with make run|make run prints|make help prints) -->$`)

// blocks returns the marked blocks of a document, in order.
func blocks(t *testing.T, doc string) []block {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(localcluster.RepoRoot(), doc))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var out []block
	for i := 0; i < len(lines); i++ {
		m := markerRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			t.Fatalf("%s:%d: the marker is not followed by a fenced block", doc, i+1)
		}
		bl := block{line: i + 2, kind: m[1]}
		var text []string
		for i += 2; i < len(lines) && lines[i] != "```"; i++ {
			text = append(text, lines[i])
		}
		bl.text = strings.Join(text, "\n") + "\n"
		out = append(out, bl)
	}
	return out
}

// expectations are a block's "# → TEXT" lines.
func expectations(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(l), "# → "); ok {
			out = append(out, e)
		}
	}
	return out
}

// pattern is TEXT of an expectation as a regexp: "…" is any text, and
// spaces may follow a ',' or ':' (the admin API's JSON, protojson, varies
// its spacing from one build to another on purpose, so that nobody relies
// on it; a document shows it compact).
func pattern(text string) *regexp.Regexp {
	parts := strings.Split(text, "…")
	for i, p := range parts {
		p = strings.NewReplacer(", ", ",", ": ", ":").Replace(p)
		p = regexp.QuoteMeta(p)
		p = strings.ReplaceAll(p, ",", `,\s*`)
		parts[i] = strings.ReplaceAll(p, ":", `:\s*`)
	}
	return regexp.MustCompile(strings.Join(parts, ".*"))
}

// matchLines reports the first of wants that no line of out matches.
func matchLines(out string, wants []string) (string, bool) {
	lines := strings.Split(out, "\n")
	for _, w := range wants {
		re := pattern(w)
		if !slices.ContainsFunc(lines, re.MatchString) {
			return w, false
		}
	}
	return "", true
}

// env is what the blocks run with: the test's environment without what
// make passes its children (the blocks are a person's shell, not a recipe)
// and without bin/ on PATH (which make test's recipes add), plus the ports
// and directories of the package doc.
type env struct {
	root    string
	data    string            // the temporary ./data
	vars    []string          // the environment
	run     map[string]string // default port → free port, for make run's blocks
	cluster map[string]string // default port → free port, for the others
	opsURL  string            // make run's /readyz
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{root: localcluster.RepoRoot(), data: filepath.Join(t.TempDir(), "data"),
		run: map[string]string{}, cluster: map[string]string{}}
	bin := localcluster.BinDir()
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS", "MAKE_TERMOUT", "MAKE_TERMERR":
			continue
		case "PATH":
			var keep []string
			for _, d := range filepath.SplitList(v) {
				if filepath.Clean(d) != filepath.Clean(bin) {
					keep = append(keep, d)
				}
			}
			kv = "PATH=" + strings.Join(keep, string(filepath.ListSeparator))
		}
		e.vars = append(e.vars, kv)
	}
	e.vars = append(e.vars, "DATA="+e.data, "HERALD_CLUSTER_DIR="+filepath.Join(e.data, "cluster"))

	herald := heraldDefaults(t)
	cluster := clusterDefaults(t)
	free, err := localcluster.FreePorts(len(herald) + len(cluster))
	if err != nil {
		t.Fatal(err)
	}
	for v, port := range herald {
		p := strconv.Itoa(free[0])
		free = free[1:]
		e.run[port] = p
		e.vars = append(e.vars, v+"=127.0.0.1:"+p)
		if v == "HERALD_OPS_ADDR" {
			e.opsURL = "http://127.0.0.1:" + p + "/readyz"
		}
	}
	for v, port := range cluster {
		p := strconv.Itoa(free[0])
		free = free[1:]
		e.cluster[port] = p
		e.vars = append(e.vars, v+"="+p)
	}
	return e
}

// heraldDefaults maps herald's address variables to the port of their
// default address, from `bin/herald --help`.
func heraldDefaults(t *testing.T) map[string]string {
	t.Helper()
	out, err := exec.Command(filepath.Join(localcluster.BinDir(), "herald"), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("bin/herald --help (make build): %v\n%s", err, out)
	}
	m := map[string]string{}
	for flag, v := range map[string]string{"mqtt-addr": "HERALD_MQTT_ADDR", "http-addr": "HERALD_HTTP_ADDR",
		"admin-addr": "HERALD_ADMIN_ADDR", "ops-addr": "HERALD_OPS_ADDR"} {
		// The flag's line and its help up to the next flag.
		re := regexp.MustCompile(`(?s)--` + flag + `\b(.*?)(\n\s+--|$)`)
		var port [][]byte
		if sub := re.FindSubmatch(out); sub != nil {
			port = regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindSubmatch(sub[1])
		}
		if port == nil {
			t.Fatalf("no default 127.0.0.1:PORT for --%s in bin/herald --help:\n%s", flag, out)
		}
		m[v] = string(port[1])
	}
	return m
}

// clusterDefaults maps deploy/local/cluster.sh's port variables to their
// defaults (lines NAME=${NAME:-PORT}).
func clusterDefaults(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(localcluster.RepoRoot(), "deploy", "local", "cluster.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if s := regexp.MustCompile(`^([A-Z0-9_]+)=\$\{([A-Z0-9_]+):-([0-9]+)\}$`).FindStringSubmatch(l); s != nil && s[1] == s[2] {
			m[s[1]] = s[3]
		}
	}
	if m["EDGE_A_MQTT"] == "" || m["REDIS_PORT"] == "" {
		t.Fatalf("no port defaults found in cluster.sh: %v", m)
	}
	return m
}

// rewrite is a block's text as the test runs it: ports moved (ports maps
// a default to its free port) and ./data/ the temporary one.
func (e *env) rewrite(text string, ports map[string]string) string {
	var nums []string
	for p := range ports {
		nums = append(nums, p)
	}
	re := regexp.MustCompile(`\b(` + strings.Join(nums, "|") + `)\b`)
	text = re.ReplaceAllStringFunc(text, func(p string) string { return ports[p] })
	return strings.ReplaceAll(text, "./data/", e.data+"/")
}

// prelude makes a block fail at its first failing command but a timeout's.
const prelude = `trap 'rc=$?; if [[ $BASH_COMMAND == "timeout "* && $rc == 124 ]]; then :; else ` +
	`echo "tests/docs: \"$BASH_COMMAND\" failed (status $rc)" >&2; exit $rc; fi' ERR
`

// runBlock runs one block (its text as rewritten) in its own process
// group and returns its output; it fails the test if the block fails,
// prints less than it says, or leaves a process behind but the cluster's.
func (e *env) runBlock(t *testing.T, doc string, b block, ports map[string]string) string {
	t.Helper()
	text := e.rewrite(b.text, ports)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	outFile := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(outFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "bash", "-c", prelude+text)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = e.root, e.vars, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	t0 := time.Now()
	runErr := cmd.Run()
	out, _ := os.ReadFile(outFile)
	t.Logf("%s:%d ran in %v:\n%s", doc, b.line, time.Since(t0).Round(100*time.Millisecond), out)
	left := e.leftovers(cmd.Process.Pid)
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if runErr != nil {
		t.Fatalf("%s:%d: the block failed: %v\n--- as run:\n%s", doc, b.line, runErr, text)
	}
	if len(left) > 0 {
		t.Fatalf("%s:%d: the block left processes running: %s", doc, b.line, describe(left))
	}
	if miss, ok := matchLines(string(out), expectations(text)); !ok {
		t.Fatalf("%s:%d: the block does not print %q", doc, b.line, miss)
	}
	return string(out)
}

// leftovers are the live processes of group pgid that are not the local
// cluster's (the pids cluster.sh recorded).
func (e *env) leftovers(pgid int) []int {
	cluster := map[int]bool{}
	for _, pid := range e.clusterPIDs() {
		cluster[pid] = true
	}
	var left []int
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ")".
		s := string(b)
		rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(rest) < 3 || rest[0] == "Z" {
			continue
		}
		pid, _ := strconv.Atoi(strings.Fields(s)[0])
		if g, _ := strconv.Atoi(rest[2]); g == pgid && !cluster[pid] {
			left = append(left, pid)
		}
	}
	return left
}

// clusterPIDs are the live processes of the local cluster.
func (e *env) clusterPIDs() []int {
	files, _ := filepath.Glob(filepath.Join(e.data, "cluster", "pids", "*.pid"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// describe names processes by pid and command line.
func describe(pids []int) string {
	var s []string
	for _, pid := range pids {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		s = append(s, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))))
	}
	return strings.Join(s, ", ")
}

// makeRun is `make run` running, in its own process group as in a terminal.
type makeRun struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

// startMakeRun runs `make run` and waits for herald's /readyz (a build
// may come first).
func (e *env) startMakeRun(t *testing.T) *makeRun {
	t.Helper()
	r := &makeRun{log: filepath.Join(t.TempDir(), "make-run.log"), done: make(chan error, 1)}
	f, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command("make", "run")
	r.cmd.Dir, r.cmd.Env, r.cmd.Stdout, r.cmd.Stderr = e.root, e.vars, f, f
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait(); f.Close() }()
	t.Cleanup(func() { r.stop(t) })
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if resp, err := http.Get(e.opsURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("make run exited: %v\n%s", err, r.output())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("make run not ready after 5 min:\n%s", r.output())
		}
	}
}

func (r *makeRun) output() string {
	b, _ := os.ReadFile(r.log)
	return string(b)
}

// stop sends SIGINT to make run's process group, as Ctrl-C in its terminal
// does, and waits for it to end (herald drains first).
func (r *makeRun) stop(t *testing.T) {
	t.Helper()
	if r.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGINT)
	select {
	case err := <-r.done:
		r.done <- err
	case <-time.After(45 * time.Second):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		t.Errorf("make run still running 45 s after SIGINT:\n%s", r.output())
		<-r.done
	}
}

// runDoc runs a document's marked blocks in order (starting make run for
// the blocks that run with it, stopping it before the next other block)
// and checks that nothing is left running after the last.
func runDoc(t *testing.T, doc string) {
	e := newEnv(t)
	t.Cleanup(func() {
		if len(e.clusterPIDs()) > 0 {
			cmd := exec.Command("bash", filepath.Join(e.root, "deploy", "local", "cluster.sh"), "down")
			cmd.Env = e.vars
			out, _ := cmd.CombinedOutput()
			t.Logf("cleanup: %s", out)
		}
	})
	var run *makeRun
	ran := 0
	for _, b := range blocks(t, doc) {
		switch b.kind {
		case "run with make run":
			if run == nil {
				run = e.startMakeRun(t)
			}
			e.runBlock(t, doc, b, e.run)
			ran++
		case "run":
			if run != nil {
				run.stop(t)
				run = nil
			}
			e.runBlock(t, doc, b, e.cluster)
			ran++
		case "make run prints":
			if run == nil {
				run = e.startMakeRun(t)
			}
			lines := strings.Split(strings.TrimSpace(e.rewrite(b.text, e.run)), "\n")
			if miss, ok := matchLines(run.output(), lines); !ok {
				t.Fatalf("%s:%d: make run does not print %q; it printed:\n%s", doc, b.line, miss, run.output())
			}
		case "make help prints":
			cmd := exec.Command("make", "--no-print-directory", "help")
			cmd.Dir, cmd.Env = e.root, e.vars
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("make help: %v\n%s", err, out)
			}
			if string(out) != b.text {
				t.Fatalf("%s:%d: the block is not what make help prints; make help prints:\n%s", doc, b.line, out)
			}
		}
	}
	if run != nil {
		run.stop(t)
	}
	if ran == 0 {
		t.Fatalf("%s has no block marked to run", doc)
	}
	if pids := e.clusterPIDs(); len(pids) > 0 {
		t.Fatalf("%s leaves the local cluster running: %s", doc, describe(pids))
	}
}

// sections returns, for each marked block of a document, the "## " heading
// it is under.
func sections(t *testing.T, doc string) map[int]string {
	t.Helper()
	f, err := os.Open(filepath.Join(localcluster.RepoRoot(), doc))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[int]string{}
	heading := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if h, ok := strings.CutPrefix(l, "## "); ok {
			heading = h
		}
		if markerRE.MatchString(l) {
			out[n+1] = heading
		}
	}
	return out
}

// TestPattern ensures an expectation matches what it shows whatever the
// spacing protojson chose after ',' and ':' — and still nothing else.
func TestPattern(t *testing.T) {
	for _, tc := range []struct {
		want, line string
		match      bool
	}{
		{`{"key":{"id":"…","tenant":"acme"…"token":"hk_…"}`, `{"key":{"id":"k1","tenant":"acme","token":"hk_x"}`, true},
		{`{"key":{"id":"…","tenant":"acme"…"token":"hk_…"}`, `{"key":{"id":"k1", "tenant":"acme", "description":"", "token": "hk_x"}`, true},
		{`{"key":{"id":"…","tenant":"acme"…"token":"hk_…"}`, `{"key":{"id":"k1", "tenant":"other", "token":"hk_x"}`, false},
		{`→ a, b`, `→ a,b`, true},
	} {
		if got := pattern(tc.want).MatchString(tc.line); got != tc.match {
			t.Errorf("pattern(%q) on %q = %v, want %v", tc.want, tc.line, got, tc.match)
		}
	}
}
