package k8s

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/tests/localcluster"
)

// cluster is the Kubernetes cluster under test and what the test knows of it.
type cluster struct {
	root     string // the repository
	registry string // host:port of the loopback registry
	nodeIP   string
	env      []string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Getenv("HERALD_K8S") != "1" {
		t.Skip("needs a Kubernetes cluster: make k8s-test")
	}
	c := &cluster{root: localcluster.RepoRoot(), registry: os.Getenv("HERALD_K8S_REGISTRY"), nodeIP: os.Getenv("HERALD_K8S_NODE_IP")}
	if c.registry == "" || c.nodeIP == "" || os.Getenv("KUBECONFIG") == "" {
		t.Fatal("HERALD_K8S_REGISTRY, HERALD_K8S_NODE_IP and KUBECONFIG must describe the cluster (make k8s-test sets them)")
	}
	c.env = os.Environ()
	c.must(t, "", "kubectl", "get", "nodes")
	return c
}

// run runs a program (kubectl, helm, bash) in dir with extra environment,
// and returns its combined output.
func (c *cluster) run(dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if dir == "" {
		cmd.Dir = c.root
	}
	cmd.Env = append(slices.Clone(c.env), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs a program and fails t if it fails.
func (c *cluster) must(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	start := time.Now()
	out, err := c.run(dir, nil, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	t.Logf("%s %s (%v)", name, strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond))
	return out
}

// releaseObjects lists what a release left in a namespace: every object of
// the kinds the chart makes with its instance label, and the helm test pod.
func (c *cluster) releaseObjects(t *testing.T, namespace, release string) []string {
	t.Helper()
	kinds := "deployments,replicasets,pods,services,endpointslices,configmaps,secrets,serviceaccounts," +
		"poddisruptionbudgets,horizontalpodautoscalers,networkpolicies,ingresses"
	if out, err := c.run("", nil, "kubectl", "get", "crd", "servicemonitors.monitoring.coreos.com"); err == nil && out != "" {
		kinds += ",servicemonitors"
	}
	out := c.must(t, "", "kubectl", "-n", namespace, "get", kinds, "-l", "app.kubernetes.io/instance="+release, "-o", "name")
	objs := strings.Fields(out)
	if pod, err := c.run("", nil, "kubectl", "-n", namespace, "get", "pod", release+"-test-publish-poll", "-o", "name"); err == nil {
		objs = append(objs, strings.Fields(pod)...)
	}
	return objs
}

// waitGone waits until the release has left nothing in the namespace
// (terminating edges drain first), or fails t.
func (c *cluster) waitGone(t *testing.T, namespace, release string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		left := c.releaseObjects(t, namespace, release)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("release %s left in %s after %v: %v", release, namespace, within, left)
		}
		time.Sleep(2 * time.Second)
	}
}

// deploymentReplicas is the edge Deployment's spec.replicas.
func (c *cluster) deploymentReplicas(t *testing.T, namespace, name string) int {
	t.Helper()
	out := c.must(t, "", "kubectl", "-n", namespace, "get", "deployment", name, "-o", "jsonpath={.spec.replicas}")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("replicas of %s: %q", name, out)
	}
	return n
}

// edgePods lists the release's edge pods: those running, and those
// terminating (draining).
func (c *cluster) edgePods(t *testing.T, namespace string) (live, terminating []string) {
	t.Helper()
	out := c.must(t, "", "kubectl", "-n", namespace, "get", "pods", "-l", "app.kubernetes.io/component=edge",
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}`)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		switch f := strings.Fields(line); len(f) {
		case 1:
			live = append(live, f[0])
		case 2:
			terminating = append(terminating, f[0])
		}
	}
	return live, terminating
}

// nodePort is the node port of a Service's named port.
func (c *cluster) nodePort(t *testing.T, namespace, service, port string) string {
	t.Helper()
	out := c.must(t, "", "kubectl", "-n", namespace, "get", "service", service, "-o",
		fmt.Sprintf(`jsonpath={.spec.ports[?(@.name=="%s")].nodePort}`, port))
	if strings.TrimSpace(out) == "" {
		t.Fatalf("service %s has no node port %s", service, port)
	}
	return c.nodeIP + ":" + strings.TrimSpace(out)
}

// readmeBlocks returns the shell blocks of README.md that the README marks
// as run by this test, in order.
func readmeBlocks(t *testing.T, root string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- tests/k8s runs this block as it is -->\n```sh\n(.*?)```")
	var blocks []string
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) < 2 {
		t.Fatalf("README.md has %d blocks marked for tests/k8s, want the install and the helm test ones", len(blocks))
	}
	return blocks
}

// TestChartOnKubernetes ensures the chart works on a real cluster as the
// README tells a user to install it: with the default values (no load
// balancer, no CRD), helm install --wait finishes and a failed helm test
// leaves no pod; with the production example, its prerequisites made by
// the README's own commands, helm install and helm test pass; MQTT and SSE
// clients keep every acknowledged message while helm upgrade rolls every
// edge; turning autoscaling off and on keeps the edges that run; helm
// rollback leaves only the revision's objects and helm uninstall nothing.
func TestChartOnKubernetes(t *testing.T) {
	c := newCluster(t)
	start := time.Now()
	t.Run("defaults", func(t *testing.T) { testDefaults(t, c) })
	if t.Failed() {
		return
	}
	t.Run("production", func(t *testing.T) { testProduction(t, c) })
	t.Logf("took %v", time.Since(start).Round(time.Second))
}

// testDefaults installs the chart with no values at all beside NATS, Redis
// and etcd at the names the defaults use, from images under their bare names.
func testDefaults(t *testing.T, c *cluster) {
	const ns = "herald-defaults"
	c.must(t, "", "helm", "install", "deps", "tests/k8s/deps", "-n", ns, "--create-namespace", "--wait", "--timeout", "3m")
	t.Cleanup(func() {
		_, _ = c.run("", nil, "helm", "uninstall", "deps", "-n", ns, "--wait")
		_, _ = c.run("", nil, "kubectl", "delete", "namespace", ns, "--wait=false")
	})
	// The README's development install, with this namespace's services.
	c.must(t, "", "helm", "install", "herald", "charts/herald", "-n", ns, "--wait", "--timeout", "5m")
	if got := c.must(t, "", "kubectl", "-n", ns, "get", "service", "herald-mqtt", "-o", "jsonpath={.spec.type}"); got != "ClusterIP" {
		t.Errorf("default MQTT Service type %q", got)
	}
	// The test pod's default image (curlimages/curl) cannot be pulled
	// offline: the one value this cluster needs for helm test is the curl
	// image of make images. The edges require credentials and the defaults
	// give the test none: it fails, prints its pod's log, and leaves no pod
	// behind.
	c.must(t, "", "helm", "upgrade", "herald", "charts/herald", "-n", ns, "--wait", "--reuse-values",
		"--set", "tests.image.repository="+c.registry+"/herald/curl", "--set", "tests.image.tag=7.88.1")
	out, err := c.run("", nil, "helm", "test", "herald", "-n", ns, "--timeout", "2m")
	if err == nil {
		t.Errorf("helm test passed without a credential:\n%s", out)
	}
	if !strings.Contains(out, "no cursor from /poll") {
		t.Errorf("helm test did not print the failed pod's log:\n%s", out)
	}
	if pod, err := c.run("", nil, "kubectl", "-n", ns, "get", "pod", "herald-test-publish-poll", "-o", "name"); err == nil {
		t.Errorf("failed test pod left behind: %s", pod)
	}
	c.must(t, "", "helm", "uninstall", "herald", "-n", ns, "--wait", "--timeout", "3m")
	c.waitGone(t, ns, "herald", 2*time.Minute)
}

// testProduction installs the production example as the README says, with
// an override of what differs here (registry, endpoints, sizes, NodePorts),
// then upgrades it under load, toggles autoscaling, rolls back and
// uninstalls it.
func testProduction(t *testing.T, c *cluster) {
	const ns, depsNS = "messaging", "messaging-deps"
	work := t.TempDir()
	pki := newPKI(t, work)
	natsPassword, redisPassword := randomHex(t), randomHex(t)

	// NATS, Redis and etcd over TLS, with passwords (etcd: a user limited
	// to Herald's prefix), in their own namespace.
	c.must(t, "", "kubectl", "create", "namespace", depsNS)
	t.Cleanup(func() {
		_, _ = c.run("", nil, "helm", "uninstall", "deps", "-n", depsNS, "--wait")
		_, _ = c.run("", nil, "kubectl", "delete", "namespace", depsNS, ns, "--wait=false")
		_, _ = c.run("", nil, "kubectl", "delete", "-f", "tests/k8s/testdata/servicemonitor-crd.yaml", "--wait=false")
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, args := range [][]string{
				{"-n", ns, "get", "pods,events", "-o", "wide"},
				{"-n", ns, "logs", "-l", "app.kubernetes.io/instance=herald", "--all-containers", "--prefix", "--tail", "40"},
				{"-n", depsNS, "logs", "-l", "app in (nats,redis,etcd)", "--prefix", "--tail", "20"},
			} {
				out, _ := c.run("", nil, "kubectl", args...)
				t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
			}
		}
	})
	c.must(t, work, "kubectl", "-n", depsNS, "create", "secret", "tls", "deps-tls", "--cert=deps.crt", "--key=deps.key")
	c.must(t, "", "helm", "install", "deps", "tests/k8s/deps", "-n", depsNS, "--wait", "--timeout", "3m",
		"--set", "image.registry="+c.registry+"/herald", "--set", "tls.secretName=deps-tls",
		"--set", "nats.user=herald", "--set", "nats.password="+natsPassword, "--set", "redis.password="+redisPassword)

	etcdPassword := randomHex(t)
	enableEtcdAuth(t, c, depsNS, pki, "herald", etcdPassword)

	// The Prometheus Operator's ServiceMonitor CRD, which the README has
	// users install from the operator's release; this cluster is offline,
	// so a copy of its name and version with an open schema stands in.
	c.must(t, "", "kubectl", "apply", "-f", "tests/k8s/testdata/servicemonitor-crd.yaml")
	c.must(t, "", "kubectl", "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com")

	if err := os.WriteFile(filepath.Join(work, "my-values.yaml"), []byte(myValues(c.registry, depsNS)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{"charts", "bin"} {
		if err := os.Symlink(filepath.Join(c.root, link), filepath.Join(work, link)); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{
		"NATS_URL=tls://herald:" + natsPassword + "@nats." + depsNS + ":4222",
		"REDIS_PASSWORD=" + redisPassword, "ETCD_PASSWORD=" + etcdPassword,
		"REGISTRY_USER=herald", "REGISTRY_PASSWORD=" + randomHex(t),
	}
	for i, block := range readmeBlocks(t, c.root) {
		t0 := time.Now()
		out, err := c.run(work, env, "bash", "-euo", "pipefail", "-c", block)
		if err != nil {
			t.Fatalf("README block %d: %v\n%s\n--- the block:\n%s", i+1, err, out, block)
		}
		t.Logf("README block %d ran in %v:\n%s", i+1, time.Since(t0).Round(100*time.Millisecond), out)
	}
	values := []string{"-f", "charts/herald/examples/production.yaml", "-f", filepath.Join(work, "my-values.yaml")}

	t.Run("upgrade under load", func(t *testing.T) { testUpgradeUnderLoad(t, c, ns, work, pki, values) })
	t.Run("autoscaling off and on", func(t *testing.T) { testAutoscalingToggle(t, c, ns, values) })
	t.Run("rollback", func(t *testing.T) {
		c.must(t, "", "helm", "rollback", "herald", "1", "-n", ns, "--wait", "--timeout", "5m")
		manifest := c.must(t, "", "helm", "get", "manifest", "herald", "-n", ns)
		want := manifestObjects(manifest)
		got := c.releaseObjects(t, ns, "herald")
		for _, o := range got {
			kind, _, _ := strings.Cut(o, "/")
			if kind == "pod" || kind == "replicaset.apps" || strings.HasPrefix(kind, "endpointslice") {
				continue // made by controllers, not by the release
			}
			if !want[o] {
				t.Errorf("after rollback to revision 1, %s is not in its manifest", o)
			}
		}
		if n := c.deploymentReplicas(t, ns, "herald-edge"); n < 2 {
			t.Errorf("edge replicas %d after rollback, below the HPA's minimum", n)
		}
	})
	t.Run("uninstall", func(t *testing.T) {
		c.must(t, "", "helm", "uninstall", "herald", "-n", ns, "--wait", "--timeout", "5m")
		c.waitGone(t, ns, "herald", 2*time.Minute)
	})
}
