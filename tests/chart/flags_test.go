package chart

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
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
	// helpEnv is a variable a binary's --help names: its flags' ($HERALD_*)
	// and the others it reads (the OpenTelemetry ones, $OTEL_*).
	helpEnv = regexp.MustCompile(`\$([A-Z][A-Z0-9_]*)`)
	// interpolated is a variable an argument or an env value refers to,
	// which Kubernetes expands: the chart's own plumbing (POD_NAME).
	interpolated = regexp.MustCompile(`\$\(([A-Z][A-Z0-9_]*)\)`)
)

// runtimeEnv are read by the Go runtime and standard library, not by a
// flag: the chart may pass them to any binary.
var runtimeEnv = map[string]string{
	"SSL_CERT_DIR":  "crypto/x509 reads extra CA directories from it",
	"SSL_CERT_FILE": "crypto/x509 reads an extra CA file from it",
	"GOMEMLIMIT":    "the Go runtime's soft memory limit (the edge's shedding follows it)",
	"GOMAXPROCS":    "the Go runtime's parallelism",
}

// everyOption turns on every optional branch of the chart that passes a
// flag or a variable, on top of the production values: the rendering the
// check runs on covers all the chart can pass.
// (The inline credentials are the development case's: production's come
// from an existing Secret, and the chart refuses both at once.)
var everyOption = map[string]any{
	"redis.masterName":             "herald-master",
	"edge.corsCredentials":         true,
	"edge.anonymousTenant":         "dev",
	"admin.tls.secretName":         "herald-admin-tls",
	"admin.tls.clientCASecretName": "herald-admin-client-ca",
}

// TestChartPassesRealFlags ensures everything the chart passes to a Herald
// binary is something the binary declares, as its --help prints it: every
// argument is a flag, every environment variable of the container (its
// env and the ConfigMap it loads) one the binary names — a flag's, or one
// it reads otherwise (OpenTelemetry's) — unless Kubernetes expands it
// into the pod spec itself ($(POD_NAME)) or the Go runtime reads it. It
// renders the defaults, a production install, a development one and one
// with every option on, and checks every container and init container of
// every workload that runs a Herald binary: a renamed or missing flag
// fails here instead of crash-looping a pod.
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
		{name: "every option", file: production, overrides: everyOption},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.file, tc.overrides)
			cm := r.find(t, "ConfigMap", releaseName+"-env").(*corev1.ConfigMap)
			checked := map[string]bool{}
			for _, m := range r.manifests {
				spec, ok := podSpec(m.obj)
				if !ok {
					continue
				}
				for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
					component, herald := heraldBinary(c)
					if !herald {
						continue
					}
					checked[component] = true
					if unknown := undeclared(c, cm, declared[component], binaries[component].help); len(unknown) > 0 {
						t.Errorf("%s %s/%s: the chart passes what %s does not declare: %v", m.kind, m.name, c.Name,
							component, unknown)
					}
				}
			}
			for component := range binaries {
				if !checked[component] {
					t.Errorf("no container runs %s", component)
				}
			}
		})
	}
}

// podSpec returns the pod template of a workload, or a pod's spec.
func podSpec(obj any) (corev1.PodSpec, bool) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Template.Spec, true
	case *appsv1.StatefulSet:
		return o.Spec.Template.Spec, true
	case *appsv1.DaemonSet:
		return o.Spec.Template.Spec, true
	case *batchv1.Job:
		return o.Spec.Template.Spec, true
	case *corev1.Pod:
		return o.Spec, true
	}
	return corev1.PodSpec{}, false
}

// heraldBinary names the component whose binary a container runs, from
// its image (<registry>/herald-<component>:<tag>).
func heraldBinary(c corev1.Container) (string, bool) {
	image := c.Image[strings.LastIndex(c.Image, "/")+1:]
	image, _, _ = strings.Cut(image, ":")
	image, _, _ = strings.Cut(image, "@")
	component, ok := strings.CutPrefix(image, "herald-")
	if _, known := binaries[component]; !ok || !known {
		return "", false
	}
	return component, true
}

// undeclared returns what container c is given that the binary does not
// declare: arguments that are not declared flags (but the command words of
// its help, "serve"), and variables neither declared nor expanded by
// Kubernetes nor read by the Go runtime.
func undeclared(c corev1.Container, cm *corev1.ConfigMap, declared map[string]bool, help []string) []string {
	var unknown []string
	expanded := map[string]bool{}
	note := func(v string) {
		for _, m := range interpolated.FindAllStringSubmatch(v, -1) {
			expanded[m[1]] = true
		}
	}
	for _, a := range c.Args {
		note(a)
		if !strings.HasPrefix(a, "--") {
			if !slices.Contains(help, a) {
				unknown = append(unknown, "argument "+a)
			}
			continue
		}
		name, _, _ := strings.Cut(a, "=")
		if !declared[name] {
			unknown = append(unknown, name)
		}
	}
	vars := map[string]bool{}
	for _, e := range c.Env {
		note(e.Value)
		vars[e.Name] = true
	}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef != nil && from.ConfigMapRef.Name == cm.Name {
			for k, v := range cm.Data {
				note(v)
				vars[k] = true
			}
		}
	}
	for v := range vars {
		if !declared[v] && !expanded[v] && runtimeEnv[v] == "" {
			unknown = append(unknown, "$"+v)
		}
	}
	sort.Strings(unknown)
	return unknown
}
