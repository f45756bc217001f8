package localcluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// depsSandbox is a directory for tools/install-test-deps.sh's PATH: the
// few programs it runs besides apt-get and systemctl, which are stand-ins
// that log their arguments to log (apt-get also logs what policy-rc.d
// answers for starting redis-server, as invoke-rc.d asks it). Nothing the
// script checks for (redis-server, node, ...) is on it, so all of a
// group's packages are missing but those Debian keeps in /usr/sbin.
func depsSandbox(t *testing.T, log string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{"bash", "id", "tee", "chmod", "rm", "sed", "cat"} {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(path, filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	fakes := map[string]string{
		"apt-get": `echo "apt-get $*" >>"$LOG"
case $1 in install)
  if [ -x "$POLICY_RC_D" ]; then "$POLICY_RC_D" redis-server start; echo "policy-rc.d redis-server start: $?" >>"$LOG"
  else echo "policy-rc.d: none" >>"$LOG"; fi ;;
esac`,
		"systemctl": `echo "systemctl $*" >>"$LOG"`,
		"sudo":      `"$@"`,
	}
	for name, body := range fakes {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/bash\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestInstallLeavesServicesOff ensures tools/install-test-deps.sh installs
// Debian's redis-server (and mosquitto, haproxy) without their system
// services starting during the install (a policy-rc.d denying it, removed
// after) or at boot (systemctl disable, with --now where systemd runs), so
// they never take the local cluster's ports; and that it keeps a
// policy-rc.d that was there before.
func TestInstallLeavesServicesOff(t *testing.T) {
	script := filepath.Join(RepoRoot(), "tools", "install-test-deps.sh")
	for _, tc := range []struct {
		name, group  string
		systemd      bool // systemd runs (its run directory exists)
		ownPolicy    bool // a policy-rc.d was there before
		wantDisabled []string
	}{
		{name: "cluster, no systemd", group: "cluster", wantDisabled: []string{"redis-server"}},
		{name: "cluster, systemd", group: "cluster", systemd: true, wantDisabled: []string{"redis-server"}},
		{name: "test, a container's policy-rc.d", group: "test", ownPolicy: true,
			wantDisabled: []string{"redis-server", "mosquitto", "haproxy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			log := filepath.Join(tmp, "log")
			policy := filepath.Join(tmp, "policy-rc.d")
			if tc.ownPolicy {
				if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			runDir := filepath.Join(tmp, "run-systemd-system")
			if tc.systemd {
				if err := os.Mkdir(runDir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(filepath.Join(depsSandbox(t, log), "bash"), script, tc.group)
			cmd.Env = []string{"PATH=" + filepath.Dir(cmd.Path), "LOG=" + log, "POLICY_RC_D=" + policy,
				"SYSTEMD_RUN_DIR=" + runDir}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("install-test-deps.sh %s: %v\n%s", tc.group, err, out)
			}
			b, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			calls := strings.Split(strings.TrimSpace(string(b)), "\n")
			var install, disable string
			for _, c := range calls {
				switch {
				case strings.HasPrefix(c, "apt-get install"):
					install = c
				case strings.HasPrefix(c, "systemctl disable"):
					disable = c
				}
			}
			installed := strings.Fields(install)
			if !slices.Contains(installed, "redis-server") {
				t.Fatalf("no apt-get install of redis-server; calls:\n%s\noutput:\n%s", b, out)
			}
			if !slices.Contains(calls, "policy-rc.d redis-server start: 101") {
				t.Fatalf("starting redis-server was not denied during the install; calls:\n%s", b)
			}
			// Only the services of packages it installed: Debian keeps
			// mosquitto and haproxy in /usr/sbin, where the script finds
			// them when they are installed already.
			var want []string
			for _, s := range tc.wantDisabled {
				if slices.Contains(installed, s) {
					want = append(want, s)
				}
			}
			disabled := strings.Fields(disable)
			if len(disabled) < 2 || disabled[len(disabled)-len(want)-1] != "--quiet" ||
				!slices.Equal(disabled[len(disabled)-len(want):], want) {
				t.Fatalf("systemctl call %q, want disable of %v", disable, want)
			}
			if slices.Contains(disabled, "--now") != tc.systemd {
				t.Fatalf("systemctl call %q: --now wanted only where systemd runs (%v)", disable, tc.systemd)
			}
			_, statErr := os.Stat(policy)
			if tc.ownPolicy != (statErr == nil) {
				t.Fatalf("policy-rc.d after the install: %v (there before: %v)", statErr, tc.ownPolicy)
			}
		})
	}
}
