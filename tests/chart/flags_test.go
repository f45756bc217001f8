package chart

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// binaries maps each container the chart runs to the command that serves it
// and the arguments that print that command's flags.
var binaries = map[string]struct {
	pkg  string
	help []string
}{
	"edge":    {"./services/edge/cmd/herald-edge", []string{"--help"}},
	"session": {"./services/session/cmd/herald-session", []string{"--help"}},
	"admin":   {"./services/admin/cmd/herald-admin", []string{"serve", "--help"}},
}

var (
	helpFlag = regexp.MustCompile(`--[a-z0-9][a-z0-9-]*`)
	helpEnv  = regexp.MustCompile(`\$(HERALD_[A-Z0-9_]+)`)
)

// TestChartPassesRealFlags ensures every flag in a rendered container's
// arguments and every HERALD_* variable in its environment (the ConfigMap's
// included) is one the service binary declares, as its --help prints them:
// a renamed or missing flag fails here instead of crash-looping a pod.
func TestChartPassesRealFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the service binaries")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build the services")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	// One go build for the three: the workspace compiles them together.
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator))
	for _, b := range binaries {
		build.Args = append(build.Args, b.pkg)
	}
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", build.Args, err, out)
	}
	declared := map[string]map[string]bool{}
	for name, b := range binaries {
		exe := filepath.Join(bin, filepath.Base(b.pkg))
		out, err := exec.Command(exe, b.help...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, b.help, err, out)
		}
		set := map[string]bool{}
		for _, f := range helpFlag.FindAllString(string(out), -1) {
			set[f] = true
		}
		for _, m := range helpEnv.FindAllStringSubmatch(string(out), -1) {
			set[m[1]] = true
		}
		declared[name] = set
	}

	for _, tc := range []struct {
		name      string
		file      string
		overrides map[string]any
	}{
		{name: "defaults"},
		{name: "production", file: production},
		{name: "development", overrides: map[string]any{
			"edge.anonymousTenant": "dev", "edge.authenticated": false, "admin.liveState": false,
			"credentials.redisPassword": "x", "credentials.etcdPassword": "y", "credentials.adminTokenHash": "z",
			"credentials.redisSentinelPassword": "s",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.file, tc.overrides)
			cm := r.find(t, "ConfigMap", releaseName+"-env").(*corev1.ConfigMap)
			for component := range binaries {
				c := container(t, r.deployment(t, component).Spec.Template.Spec, component)
				used := map[string]bool{}
				for _, a := range c.Args {
					if strings.HasPrefix(a, "--") {
						name, _, _ := strings.Cut(a, "=")
						used[name] = true
					}
				}
				for _, e := range c.Env {
					if strings.HasPrefix(e.Name, "HERALD_") {
						used[e.Name] = true
					}
				}
				for k := range cm.Data {
					if strings.HasPrefix(k, "HERALD_") {
						used[k] = true
					}
				}
				var unknown []string
				for u := range used {
					if !declared[component][u] {
						unknown = append(unknown, u)
					}
				}
				sort.Strings(unknown)
				if len(unknown) > 0 {
					t.Errorf("%s: the chart passes what the binary does not declare: %v", component, unknown)
				}
			}
		})
	}
}
