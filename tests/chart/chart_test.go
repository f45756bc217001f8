package chart

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// production is the production-like values file the README installs with.
const production = "../../charts/herald/examples/production.yaml"

// TestRenderDecodesStrictly ensures every manifest the chart renders, with
// default values and with a production-like values file, decodes into the
// Kubernetes API types with unknown fields refused, and that each setup
// renders the objects it promises.
func TestRenderDecodesStrictly(t *testing.T) {
	for _, tc := range []struct {
		name      string
		file      string
		overrides map[string]any
		want      []string
		absent    []string
	}{
		{
			name: "defaults",
			want: []string{
				"Deployment/herald-edge", "Deployment/herald-session", "Deployment/herald-admin",
				"Service/herald-mqtt", "Service/herald-http", "Service/herald-edge-ops", "Service/herald-session-ops", "Service/herald-admin", "Service/herald-admin-ops",
				"HorizontalPodAutoscaler/herald-edge",
				"PodDisruptionBudget/herald-edge", "PodDisruptionBudget/herald-session", "PodDisruptionBudget/herald-admin",
				"ConfigMap/herald-env", "ServiceAccount/herald", "Pod/herald-test-publish-poll",
			},
			absent: []string{"Secret/herald-credentials", "Ingress/herald", "ServiceMonitor/herald", "NetworkPolicy/herald-edge"},
		},
		{
			name: "production",
			file: production,
			want: []string{
				"Deployment/herald-edge", "Deployment/herald-session", "Deployment/herald-admin",
				"Ingress/herald", "ServiceMonitor/herald", "HorizontalPodAutoscaler/herald-edge",
				"NetworkPolicy/herald-edge", "NetworkPolicy/herald-session", "NetworkPolicy/herald-admin",
			},
			// The credentials come from a Secret managed outside the chart.
			absent: []string{"Secret/herald-credentials"},
		},
		{
			name: "inline credentials, no autoscaling",
			overrides: map[string]any{
				"credentials.redisPassword":  "redis-secret",
				"credentials.adminTokenHash": "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA",
				"edge.autoscaling.enabled":   false,
			},
			want:   []string{"Secret/herald-credentials", "Deployment/herald-edge"},
			absent: []string{"HorizontalPodAutoscaler/herald-edge"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.file, tc.overrides)
			for _, w := range tc.want {
				kind, name, _ := strings.Cut(w, "/")
				if !r.has(kind, name) {
					t.Errorf("missing %s; rendered %v", w, r.names())
				}
			}
			for _, a := range tc.absent {
				kind, name, _ := strings.Cut(a, "/")
				if r.has(kind, name) {
					t.Errorf("rendered %s, which this setup must not have", a)
				}
			}
			if !strings.Contains(r.notes, "helm test "+releaseName) {
				t.Errorf("NOTES.txt does not explain helm test:\n%s", r.notes)
			}
		})
	}
}

// TestStrictDecodeRefusesUnknownFields ensures the decoder the other tests
// rely on fails on a misspelt field, a wrong type and an unknown kind.
func TestStrictDecodeRefusesUnknownFields(t *testing.T) {
	for _, tc := range []struct{ name, doc string }{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 80, targetport: 80}]\n"},
		{"wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: eighty}]\n"},
		{"unknown kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n"},
		{"ServiceMonitor unknown field", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec:\n  endpoints: [{port: ops, intervall: 30s}]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeStrict(tc.name, []byte(tc.doc)); err == nil {
				t.Fatal("decoded without error")
			}
		})
	}
	if _, err := decodeStrict("valid", []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 80}]\n")); err != nil {
		t.Fatalf("a valid Service: %v", err)
	}
}

// TestLint ensures Helm's linter finds no error and no warning in the chart,
// with default and production values.
func TestLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"", production} {
		t.Run("values="+file, func(t *testing.T) {
			// The linter cannot be told that the ServiceMonitor CRD is
			// served, and reports the chart's refusal as a mere INFO
			// without linting further: lint without it.
			vals := userValues(t, file, map[string]any{"serviceMonitor.enabled": false})
			l := lint.AllWithKubeVersion(chartDir, vals, namespace, kv)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev || strings.Contains(m.Err.Error(), "Fail:") {
					t.Errorf("lint: %v", m)
				} else {
					t.Logf("lint: %v", m)
				}
			}
		})
	}
}

// TestSchemaRefusesBadValues ensures values.schema.json turns away wrong
// types, unknown keys, negative counts and values outside an enum, while the
// production values pass.
func TestSchemaRefusesBadValues(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct {
		name      string
		overrides map[string]any
		wantErr   string // a fragment of the schema error: the offending path
	}{
		{"wrong type", map[string]any{"edge.replicas": "two"}, "replicas"},
		{"unknown top-level key", map[string]any{"edges": map[string]any{"replicas": 3}}, "edges"},
		{"unknown nested key (typo)", map[string]any{"edge.drain.preStopSecond": 5}, "preStopSecond"},
		{"negative replicas", map[string]any{"session.replicas": -1}, "replicas"},
		{"zero drain timeout", map[string]any{"edge.drain.timeoutSeconds": 0}, "timeoutSeconds"},
		{"port out of range", map[string]any{"edge.ports.mqtt": 70000}, "mqtt"},
		{"bad log format", map[string]any{"logFormat": "xml"}, "logFormat"},
		{"bad service type", map[string]any{"edge.service.mqtt.type": "External"}, "type"},
		{"bad OTLP protocol", map[string]any{"telemetry.otlp.protocol": "http/json"}, "protocol"},
		{"bad sampler", map[string]any{"telemetry.traces.sampler": "sometimes"}, "sampler"},
		{"no Redis address", map[string]any{"redis.addrs": []any{}}, "addrs"},
		{"bad duration", map[string]any{"session.leaseTTL": "ten seconds"}, "leaseTTL"},
		{"extra arg not a flag", map[string]any{"edge.extraArgs": []any{"sse-heartbeat=30s"}}, "extraArgs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderValues(t, c, userValues(t, "", tc.overrides))
			if err == nil {
				t.Fatal("rendered without a schema error")
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error does not name %q as a schema violation: %v", tc.wantErr, err)
			}
		})
	}
	if _, err := renderValues(t, c, userValues(t, production, nil)); err != nil {
		t.Fatalf("production values: %v", err)
	}
}

// TestRenderRefusesInconsistentValues ensures values that pass the schema
// one by one but contradict each other stop the rendering with a message
// naming them.
func TestRenderRefusesInconsistentValues(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct {
		name      string
		overrides map[string]any
		wantErr   string
	}{
		{"NATS URL from a Secret that does not exist", map[string]any{"nats.urlFromSecret": true}, "nats.urlFromSecret"},
		{"HPA minimum above maximum", map[string]any{"edge.autoscaling.minReplicas": 5, "edge.autoscaling.maxReplicas": 3}, "minReplicas"},
		{"CPU autoscaling without a CPU request", map[string]any{"edge.resources.requests": nil}, "requests.cpu"},
		{"no etcd and no anonymous tenant", map[string]any{"edge.authenticated": false}, "anonymousTenant"},
		{"client CA without TLS", map[string]any{"edge.tls.clientCASecretName": "ca"}, "edge.tls.secretName"},
		{"admin client CA without TLS", map[string]any{"admin.tls.clientCASecretName": "ca"}, "admin.tls.secretName"},
		{"existing Secret and inline credentials", map[string]any{"credentials.existingSecret": "mine", "credentials.redisPassword": "x"}, "credentials.existingSecret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderValues(t, c, userValues(t, "", tc.overrides))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}

// TestEdgeDrainContract ensures the edge pod gives its drain time: a preStop
// sleep of edge.drain.preStopSeconds, --drain-timeout from
// edge.drain.timeoutSeconds, and a grace period of both plus 10 s.
func TestEdgeDrainContract(t *testing.T) {
	for _, tc := range []struct {
		name             string
		file             string
		overrides        map[string]any
		preStop, timeout int // what the values above amount to
	}{
		{name: "defaults", preStop: 5, timeout: 20},
		{name: "production", file: production, preStop: 10, timeout: 45},
		{name: "no preStop", overrides: map[string]any{"edge.drain.preStopSeconds": 0, "edge.drain.timeoutSeconds": 30}, preStop: 0, timeout: 30},
		{name: "long drain", overrides: map[string]any{"edge.drain.preStopSeconds": 15, "edge.drain.timeoutSeconds": 600}, preStop: 15, timeout: 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := render(t, tc.file, tc.overrides).deployment(t, "edge")
			spec := d.Spec.Template.Spec
			want := int64(tc.preStop + tc.timeout + 10)
			if got := spec.TerminationGracePeriodSeconds; got == nil || *got != want {
				t.Errorf("terminationGracePeriodSeconds = %s, want %d", fmtPtr(got), want)
			}
			c := container(t, spec, "edge")
			if got := flagValue(c.Args, "--drain-timeout"); got != fmt.Sprintf("%ds", tc.timeout) {
				t.Errorf("--drain-timeout = %q, want %ds", got, tc.timeout)
			}
			switch {
			case tc.preStop == 0:
				if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
					t.Errorf("preStop %+v with preStopSeconds 0", c.Lifecycle.PreStop)
				}
			case c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil:
				t.Errorf("no preStop sleep: %+v", c.Lifecycle)
			case c.Lifecycle.PreStop.Sleep.Seconds != int64(tc.preStop):
				t.Errorf("preStop sleeps %d s, want %d", c.Lifecycle.PreStop.Sleep.Seconds, tc.preStop)
			}
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil {
				t.Error("preStop execs a command: the images have no shell")
			}
		})
	}
}

// TestProbesOnOpsPort ensures liveness (/healthz) and readiness (/readyz)
// probe the port each service really listens on for them: the ops port of
// the edge and the session service, the API port of the admin service (whose
// /readyz checks etcd, which its ops port's does not), and that every
// service's ops port is the one its --ops-addr names.
func TestProbesOnOpsPort(t *testing.T) {
	for _, file := range []string{"", production} {
		r := render(t, file, map[string]any{"edge.ports.ops": 9190, "session.ports.ops": 9192, "admin.ports.api": 8181, "admin.ports.ops": 9193})
		for _, tc := range []struct {
			component, port, flag string
			want                  int32
		}{
			{"edge", "ops", "--ops-addr", 9190},
			{"session", "ops", "--ops-addr", 9192},
			{"admin", "api", "--addr", 8181},
		} {
			t.Run(fmt.Sprintf("%s/values=%s", tc.component, file), func(t *testing.T) {
				c := container(t, r.deployment(t, tc.component).Spec.Template.Spec, tc.component)
				if got := flagValue(c.Args, tc.flag); got != fmt.Sprintf(":%d", tc.want) {
					t.Errorf("%s = %q, want :%d", tc.flag, got, tc.want)
				}
				if p := namedPort(c, tc.port); p != tc.want {
					t.Errorf("container port %q = %d, want %d", tc.port, p, tc.want)
				}
				if ops := namedPort(c, "ops"); ops == 0 || flagValue(c.Args, "--ops-addr") != fmt.Sprintf(":%d", ops) {
					t.Errorf("ops port %d, --ops-addr %q", ops, flagValue(c.Args, "--ops-addr"))
				}
				for _, pr := range []struct {
					name  string
					probe *corev1.Probe
					path  string
				}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
					if pr.probe == nil || pr.probe.HTTPGet == nil {
						t.Errorf("no %s HTTP probe", pr.name)
						continue
					}
					if pr.probe.HTTPGet.Path != pr.path || pr.probe.HTTPGet.Port.String() != tc.port {
						t.Errorf("%s probe %s on %s, want %s on %s", pr.name, pr.probe.HTTPGet.Path, pr.probe.HTTPGet.Port.String(), pr.path, tc.port)
					}
				}
			})
		}
	}
}

// TestPodsRunAsNonRoot ensures every pod the chart makes, the helm test pod
// included, runs as a non-root user with a read-only root file system, no
// privilege escalation and no capabilities.
func TestPodsRunAsNonRoot(t *testing.T) {
	for _, file := range []string{"", production} {
		for name, spec := range render(t, file, nil).pods() {
			t.Run(name+"/values="+file, func(t *testing.T) {
				psc := spec.SecurityContext
				if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
					t.Errorf("pod securityContext.runAsNonRoot not true: %+v", psc)
				}
				if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
					t.Errorf("pod runs as root or an image-chosen user: %+v", psc)
				}
				if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("pod seccomp profile is not RuntimeDefault")
				}
				for _, c := range spec.Containers {
					sc := c.SecurityContext
					switch {
					case sc == nil:
						t.Errorf("container %s has no securityContext", c.Name)
					case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
						t.Errorf("container %s: root file system writable", c.Name)
					case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
						t.Errorf("container %s: privilege escalation allowed", c.Name)
					case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0:
						t.Errorf("container %s: capabilities %+v, want drop ALL", c.Name, sc.Capabilities)
					}
					if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
						t.Errorf("container %s: no CPU request or memory limit", c.Name)
					}
				}
			})
		}
	}
}

// TestDisruptionBudgets ensures each component has a PodDisruptionBudget
// whose selector picks exactly that component's pods.
func TestDisruptionBudgets(t *testing.T) {
	r := render(t, production, nil)
	for _, component := range []string{"edge", "session", "admin"} {
		t.Run(component, func(t *testing.T) {
			pdb := r.find(t, "PodDisruptionBudget", releaseName+"-"+component).(*policyv1.PodDisruptionBudget)
			if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
				t.Error("budget allows nothing and forbids nothing")
			}
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			for _, other := range []string{"edge", "session", "admin"} {
				podLabels := labels.Set(r.deployment(t, other).Spec.Template.Labels)
				if got := sel.Matches(podLabels); got != (other == component) {
					t.Errorf("selector %s matches %s pods: %v", sel, other, got)
				}
			}
		})
	}
}

// TestEdgeAutoscaling ensures the HPA scales the edge Deployment on CPU and,
// when enabled, on open connections per pod (herald_edge_connections).
func TestEdgeAutoscaling(t *testing.T) {
	r := render(t, production, nil)
	hpa := r.find(t, "HorizontalPodAutoscaler", releaseName+"-edge").(*autoscalingv2.HorizontalPodAutoscaler)
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != releaseName+"-edge" {
		t.Errorf("HPA scales %s/%s", ref.Kind, ref.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 3 || hpa.Spec.MaxReplicas != 30 {
		t.Errorf("HPA bounds %s..%d, want 3..30", fmtPtr(hpa.Spec.MinReplicas), hpa.Spec.MaxReplicas)
	}
	var cpu, conns bool
	for _, m := range hpa.Spec.Metrics {
		switch {
		case m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource.Name == corev1.ResourceCPU:
			cpu = m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && *m.Resource.Target.AverageUtilization == 65
		case m.Type == autoscalingv2.PodsMetricSourceType && m.Pods.Metric.Name == "herald_edge_connections":
			conns = m.Pods.Target.Type == autoscalingv2.AverageValueMetricType && m.Pods.Target.AverageValue.Value() == 25000
		}
	}
	if !cpu || !conns {
		t.Errorf("HPA metrics (cpu %v, connections %v): %+v", cpu, conns, hpa.Spec.Metrics)
	}
	if ru := r.deployment(t, "edge").Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("edge rolling update may take edges away before new ones are up: %+v", ru)
	}

	manual := render(t, "", map[string]any{"edge.autoscaling.enabled": false, "edge.replicas": 4})
	if manual.has("HorizontalPodAutoscaler", releaseName+"-edge") {
		t.Error("HPA rendered with autoscaling off")
	}
	if d := manual.deployment(t, "edge"); d.Spec.Replicas == nil || *d.Spec.Replicas != 4 {
		t.Errorf("manual replicas = %s, want 4", fmtPtr(d.Spec.Replicas))
	}
}

// TestEdgeReplicasUnderAutoscaling ensures the edge Deployment always
// carries a replica count, so that no upgrade or rollback removes the field
// (which resets a live Deployment to 1): under the HPA it is the live count
// kept within the HPA's bounds, or minReplicas when there is no Deployment
// yet; without the HPA, edge.replicas.
func TestEdgeReplicasUnderAutoscaling(t *testing.T) {
	live := func(replicas int32) []runtime.Object {
		return []runtime.Object{&appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Name: releaseName + "-edge", Namespace: namespace},
			Spec:       appsv1.DeploymentSpec{Replicas: &replicas},
		}}
	}
	hpa := map[string]any{"edge.autoscaling.minReplicas": 2, "edge.autoscaling.maxReplicas": 10, "edge.replicas": 7}
	manual := map[string]any{"edge.autoscaling.enabled": false, "edge.replicas": 7}
	for _, tc := range []struct {
		name      string
		live      []runtime.Object
		overrides map[string]any
		want      int32
	}{
		{"HPA, first install", nil, hpa, 2},
		{"HPA, HPA scaled to 4", live(4), hpa, 4},
		{"HPA turned on at 7 by hand", live(7), hpa, 7},
		{"HPA turned on below its minimum", live(1), hpa, 2},
		{"HPA turned on above its maximum", live(14), hpa, 10},
		{"HPA off, first install", nil, manual, 7},
		{"HPA turned off at 4", live(4), manual, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := renderObjects(t, cluster{live: tc.live}, "", tc.overrides)
			d := r.deployment(t, "edge")
			if d.Spec.Replicas == nil || *d.Spec.Replicas != tc.want {
				t.Errorf("replicas = %s, want %d", fmtPtr(d.Spec.Replicas), tc.want)
			}
		})
	}
}

// TestServiceMonitorNeedsItsCRD ensures serviceMonitor.enabled on a cluster
// without the Prometheus Operator's CRDs stops the install with a message
// saying what to install, instead of the API server's "no matches for kind",
// and renders the ServiceMonitor where the CRD is served.
func TestServiceMonitorNeedsItsCRD(t *testing.T) {
	c := loadChart(t)
	vals := userValues(t, "", map[string]any{"serviceMonitor.enabled": true})
	if _, err := renderIn(t, cluster{}, c, vals); err == nil || !strings.Contains(err.Error(), "Prometheus Operator's CRDs") {
		t.Errorf("error %v, want one naming the Prometheus Operator's CRDs", err)
	}
	if r := renderObjects(t, withPrometheusOperator, "", map[string]any{"serviceMonitor.enabled": true}); !r.has("ServiceMonitor", releaseName) {
		t.Errorf("no ServiceMonitor with its CRD served: %v", r.names())
	}
	if r := renderObjects(t, cluster{}, "", nil); r.has("ServiceMonitor", releaseName) {
		t.Error("ServiceMonitor rendered by default")
	}
}

// TestDefaultsInstallAnywhere ensures the default values ask nothing of the
// cluster that a bare one lacks: no LoadBalancer Service (helm install
// --wait would wait for an address forever without a load-balancer
// provider), no topology constraint a zone-less node cannot meet, no
// ServiceMonitor; and that the production example asks for its
// LoadBalancer while keeping zone-less nodes schedulable.
func TestDefaultsInstallAnywhere(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		mqttType   corev1.ServiceType
		nodes      corev1.UnsatisfiableConstraintAction
	}{
		{"defaults", "", corev1.ServiceTypeClusterIP, corev1.ScheduleAnyway},
		{"production", production, corev1.ServiceTypeLoadBalancer, corev1.DoNotSchedule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := renderObjects(t, withPrometheusOperator, tc.file, nil)
			for _, m := range r.manifests {
				if svc, ok := m.obj.(*corev1.Service); ok && svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Name != releaseName+"-mqtt" {
					t.Errorf("Service %s is a LoadBalancer", svc.Name)
				}
			}
			if got := r.find(t, "Service", releaseName+"-mqtt").(*corev1.Service).Spec.Type; got != tc.mqttType {
				t.Errorf("MQTT Service type %s, want %s", got, tc.mqttType)
			}
			spread := map[string]corev1.UnsatisfiableConstraintAction{}
			for _, c := range r.deployment(t, "edge").Spec.Template.Spec.TopologySpreadConstraints {
				spread[c.TopologyKey] = c.WhenUnsatisfiable
			}
			if spread["topology.kubernetes.io/zone"] != corev1.ScheduleAnyway {
				t.Errorf("zone spread %q: edges stay Pending on nodes without a zone label", spread["topology.kubernetes.io/zone"])
			}
			if spread["kubernetes.io/hostname"] != tc.nodes {
				t.Errorf("node spread %q, want %s", spread["kubernetes.io/hostname"], tc.nodes)
			}
		})
	}
	if r := renderObjects(t, cluster{}, "", nil); r.has("ServiceMonitor", releaseName) {
		t.Error("defaults render a ServiceMonitor")
	}
}

// TestCredentialsSecretOwnership ensures the chart refuses to make its
// credentials Secret over one it did not make (instead of Helm's "invalid
// ownership metadata"), naming existingSecret as the way to use it, and
// still updates the Secret it made itself.
func TestCredentialsSecretOwnership(t *testing.T) {
	secret := func(annotations map[string]string) []runtime.Object {
		return []runtime.Object{&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: releaseName + "-credentials", Namespace: namespace, Annotations: annotations},
		}}
	}
	inline := map[string]any{"credentials.redisPassword": "redis-secret"}
	c := loadChart(t)
	_, err := renderIn(t, cluster{live: secret(nil)}, c, userValues(t, "", inline))
	if err == nil || !strings.Contains(err.Error(), "credentials.existingSecret="+releaseName+"-credentials") {
		t.Errorf("over a Secret of the user's: error %v, want one naming credentials.existingSecret", err)
	}
	r := renderObjects(t, cluster{live: secret(map[string]string{"meta.helm.sh/release-name": releaseName})}, "", inline)
	if !r.has("Secret", releaseName+"-credentials") {
		t.Error("the release's own Secret is not rendered on upgrade")
	}
	if r := renderObjects(t, cluster{live: secret(nil)}, "", map[string]any{"credentials.existingSecret": releaseName + "-credentials"}); r.has("Secret", releaseName+"-credentials") {
		t.Error("a Secret rendered over existingSecret")
	}
}

// TestEdgeSpreadAndServices ensures edges spread over zones and nodes, MQTT
// and MQTT/TLS reach them through a LoadBalancer, and HTTP through the
// Service the Ingress points at.
func TestEdgeSpreadAndServices(t *testing.T) {
	r := render(t, production, nil)
	spec := r.deployment(t, "edge").Spec.Template.Spec
	keys := map[string]bool{}
	for _, c := range spec.TopologySpreadConstraints {
		keys[c.TopologyKey] = true
		if !labels.SelectorFromSet(c.LabelSelector.MatchLabels).Matches(labels.Set(r.deployment(t, "edge").Spec.Template.Labels)) {
			t.Errorf("spread constraint on %s does not select edge pods", c.TopologyKey)
		}
	}
	if !keys["topology.kubernetes.io/zone"] || !keys["kubernetes.io/hostname"] {
		t.Errorf("edges not spread over zones and nodes: %v", keys)
	}
	mqtt := r.find(t, "Service", releaseName+"-mqtt").(*corev1.Service)
	if mqtt.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("MQTT Service type %s", mqtt.Spec.Type)
	}
	ports := map[string]int32{}
	for _, p := range mqtt.Spec.Ports {
		ports[p.Name] = p.Port
	}
	if ports["mqtt"] != 1883 || ports["mqtts"] != 8883 {
		t.Errorf("MQTT Service ports %v, want mqtt 1883 and mqtts 8883", ports)
	}
	ing := r.find(t, "Ingress", releaseName).(*networkingv1.Ingress)
	backend := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service
	http := r.find(t, "Service", backend.Name).(*corev1.Service)
	if http.Spec.Ports[0].Name != backend.Port.Name {
		t.Errorf("Ingress backend port %q not on Service %s", backend.Port.Name, http.Name)
	}
	c := container(t, spec, "edge")
	if got := flagValue(c.Args, "--drain-reference"); got != "realtime.example.com:8883" {
		t.Errorf("--drain-reference = %q", got)
	}
	if flagValue(c.Args, "--mqtt-tls-addr") != ":8883" || flagValue(c.Args, "--tls-cert") == "" {
		t.Errorf("TLS configured but the edge serves no MQTT/TLS: %v", c.Args)
	}
}

// TestNetworkPolicy ensures edges take client traffic from anywhere, the
// session service and admin only from chosen peers, and every component may
// reach its dependencies' ports.
func TestNetworkPolicy(t *testing.T) {
	r := render(t, production, nil)
	for _, tc := range []struct {
		component  string
		openPorts  []string // reachable from anywhere
		egressPort []int32
	}{
		{"edge", []string{"mqtt", "mqtts", "http"}, []int32{53, 4222, 6379, 2379, 4317}},
		{"session", nil, []int32{53, 4222, 6379, 4317}},
		{"admin", nil, []int32{53, 4222, 6379, 2379, 4317}},
	} {
		t.Run(tc.component, func(t *testing.T) {
			np := r.find(t, "NetworkPolicy", releaseName+"-"+tc.component).(*networkingv1.NetworkPolicy)
			open := map[string]bool{}
			for _, rule := range np.Spec.Ingress {
				if len(rule.From) > 0 {
					continue
				}
				for _, p := range rule.Ports {
					open[p.Port.String()] = true
				}
			}
			if len(open) != len(tc.openPorts) {
				t.Errorf("open to anyone on %v, want exactly %v", open, tc.openPorts)
			}
			for _, p := range tc.openPorts {
				if !open[p] {
					t.Errorf("port %s not open to clients", p)
				}
			}
			egress := map[int32]bool{}
			for _, rule := range np.Spec.Egress {
				for _, p := range rule.Ports {
					egress[p.Port.IntVal] = true
				}
			}
			for _, p := range tc.egressPort {
				if !egress[p] {
					t.Errorf("no egress to port %d: %v", p, egress)
				}
			}
		})
	}
}

// TestHelmTestHook ensures the helm test pod is a test hook that talks to
// the HTTP Service the chart renders, with the test credential when one is
// configured, and is deleted when it ends, its log printed on a failure.
func TestHelmTestHook(t *testing.T) {
	r := render(t, production, nil)
	pod := r.find(t, "Pod", releaseName+"-test-publish-poll").(*corev1.Pod)
	if pod.Annotations["helm.sh/hook"] != "test" {
		t.Errorf("hook annotation %q", pod.Annotations["helm.sh/hook"])
	}
	for _, policy := range []string{"hook-succeeded", "hook-failed"} {
		if !slices.Contains(strings.Split(pod.Annotations["helm.sh/hook-delete-policy"], ","), policy) {
			t.Errorf("hook-delete-policy %q lacks %s: the pod outlives the test (and helm uninstall)", pod.Annotations["helm.sh/hook-delete-policy"], policy)
		}
	}
	if pod.Annotations["helm.sh/hook-output-log-policy"] != "hook-failed" {
		t.Errorf("hook-output-log-policy %q: a failed test's log is lost with its pod", pod.Annotations["helm.sh/hook-output-log-policy"])
	}
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %s", pod.Spec.RestartPolicy)
	}
	script := strings.Join(pod.Spec.Containers[0].Args, "\n")
	svc := r.find(t, "Service", releaseName+"-http").(*corev1.Service)
	if want := fmt.Sprintf("https://%s:%d", svc.Name, svc.Spec.Ports[0].Port); !strings.Contains(script, want) {
		t.Errorf("test script does not call %s:\n%s", want, script)
	}
	for _, step := range []string{"/poll?topic=", "/publish?topic=", "cursor="} {
		if !strings.Contains(script, step) {
			t.Errorf("test script lacks %s", step)
		}
	}
	var token bool
	for _, e := range pod.Spec.Containers[0].Env {
		token = token || (e.Name == "HERALD_TEST_TOKEN" && e.ValueFrom.SecretKeyRef.Name == "herald-credentials")
	}
	if !token {
		t.Error("test pod gets no test token from the credentials Secret")
	}
}

// TestTelemetryEnvironment ensures the OpenTelemetry settings reach every
// Herald container through the shared ConfigMap, with the pod's identity in
// the resource attributes.
func TestTelemetryEnvironment(t *testing.T) {
	r := render(t, production, nil)
	cm := r.find(t, "ConfigMap", releaseName+"-env").(*corev1.ConfigMap)
	for k, want := range map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.monitoring:4317",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     "0.05",
		"HERALD_LOG_FORMAT":           "json",
	} {
		if cm.Data[k] != want {
			t.Errorf("%s = %q, want %q", k, cm.Data[k], want)
		}
	}
	for _, component := range []string{"edge", "session", "admin"} {
		c := container(t, r.deployment(t, component).Spec.Template.Spec, component)
		if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != cm.Name {
			t.Errorf("%s does not take its environment from %s", component, cm.Name)
		}
		attrs := envValue(c, "OTEL_RESOURCE_ATTRIBUTES")
		for _, want := range []string{"k8s.pod.name=$(POD_NAME)", "deployment.environment=production"} {
			if !strings.Contains(attrs, want) {
				t.Errorf("%s: OTEL_RESOURCE_ATTRIBUTES %q lacks %s", component, attrs, want)
			}
		}
		ann := r.deployment(t, component).Spec.Template.Annotations
		if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != fmt.Sprint(namedPort(c, "ops")) || ann["prometheus.io/path"] != "/metrics" {
			t.Errorf("%s: scrape annotations %v do not name the ops port %d", component, ann, namedPort(c, "ops"))
		}
		if flagValue(c.Args, "--metrics-tenant-limit") != "200" {
			t.Errorf("%s: --metrics-tenant-limit = %q, want 200", component, flagValue(c.Args, "--metrics-tenant-limit"))
		}
	}
	sm := r.find(t, "ServiceMonitor", releaseName).(*serviceMonitor)
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"herald-edge-ops", "herald-session-ops", "herald-admin-ops"} {
		svc := r.find(t, "Service", name).(*corev1.Service)
		if !sel.Matches(labels.Set(svc.Labels)) || svc.Spec.Ports[0].Name != sm.Spec.Endpoints[0].Port {
			t.Errorf("ServiceMonitor does not scrape %s", name)
		}
	}
}

func container(t testing.TB, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

// flagValue returns the value of --name=value among args ("" if absent,
// "true" for a bare boolean flag).
func flagValue(args []string, name string) string {
	for _, a := range args {
		if a == name {
			return "true"
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func namedPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// TestAdminTLS ensures admin.tls serves the admin API over TLS from the
// Secret's files (and, with a client CA, mutual TLS), with probes that
// still reach it: HTTPS on the API port, or the ops port under mutual TLS,
// where the kubelet has no client certificate to present.
func TestAdminTLS(t *testing.T) {
	for _, tc := range []struct {
		name      string
		overrides map[string]any
		args      map[string]string
		scheme    corev1.URIScheme
		port      string
		mounts    []string
	}{
		{"plain", nil, map[string]string{"--tls-cert": "", "--tls-client-ca": ""}, "", "api", nil},
		{"tls", map[string]any{"admin.tls.secretName": "admin-tls"},
			map[string]string{"--tls-cert": "/etc/herald/tls/tls.crt", "--tls-key": "/etc/herald/tls/tls.key", "--tls-client-ca": ""},
			corev1.URISchemeHTTPS, "api", []string{"/etc/herald/tls"}},
		{"mutual tls", map[string]any{"admin.tls.secretName": "admin-tls", "admin.tls.clientCASecretName": "admin-ca"},
			map[string]string{"--tls-cert": "/etc/herald/tls/tls.crt", "--tls-client-ca": "/etc/herald/client-ca/ca.crt"},
			"", "ops", []string{"/etc/herald/tls", "/etc/herald/client-ca"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := render(t, "", tc.overrides).deployment(t, "admin").Spec.Template.Spec
			c := container(t, spec, "admin")
			for flag, want := range tc.args {
				if got := flagValue(c.Args, flag); got != want {
					t.Errorf("%s = %q, want %q", flag, got, want)
				}
			}
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
				if p.HTTPGet.Scheme != tc.scheme || p.HTTPGet.Port.String() != tc.port {
					t.Errorf("probe %s on %s %s, want %s on %s", p.HTTPGet.Path, p.HTTPGet.Scheme, p.HTTPGet.Port.String(), tc.scheme, tc.port)
				}
			}
			var mounts []string
			for _, m := range c.VolumeMounts {
				if strings.HasPrefix(m.MountPath, "/etc/herald/") && !strings.Contains(m.MountPath, "backend") {
					mounts = append(mounts, m.MountPath)
				}
			}
			if strings.Join(mounts, " ") != strings.Join(tc.mounts, " ") {
				t.Errorf("mounts %v, want %v", mounts, tc.mounts)
			}
		})
	}
}

// TestEdgeWebTransport ensures edge.webTransport.enabled serves
// WebTransport with the edge's certificate: --webtransport-addr on the
// UDP port, the port on the pod, on the MQTT Service (the L4 one: an
// Ingress carries no UDP) and open in the NetworkPolicy; and that asking
// for it without TLS stops the rendering.
func TestEdgeWebTransport(t *testing.T) {
	r := render(t, production, map[string]any{"edge.webTransport.enabled": true})
	spec := r.deployment(t, "edge").Spec.Template.Spec
	c := container(t, spec, "edge")
	if got := flagValue(c.Args, "--webtransport-addr"); got != ":8443" || flagValue(c.Args, "--tls-cert") == "" {
		t.Errorf("--webtransport-addr = %q (args %v), want :8443 beside --tls-cert", got, c.Args)
	}
	udp := func(ports []corev1.ServicePort) bool {
		for _, p := range ports {
			if p.Name == "webtransport" && p.Protocol == corev1.ProtocolUDP && p.Port == 8443 {
				return true
			}
		}
		return false
	}
	if !udp(r.find(t, "Service", releaseName+"-mqtt").(*corev1.Service).Spec.Ports) {
		t.Error("the MQTT Service has no UDP port webtransport 8443")
	}
	pod := false
	for _, p := range c.Ports {
		pod = pod || (p.Name == "webtransport" && p.Protocol == corev1.ProtocolUDP && p.ContainerPort == 8443)
	}
	if !pod {
		t.Errorf("the edge container has no UDP port webtransport: %v", c.Ports)
	}
	np := r.find(t, "NetworkPolicy", releaseName+"-edge").(*networkingv1.NetworkPolicy)
	open := false
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			open = open || (p.Port.String() == "webtransport" && p.Protocol != nil && *p.Protocol == corev1.ProtocolUDP)
		}
	}
	if !open {
		t.Error("the edge NetworkPolicy does not open webtransport (UDP)")
	}
	if _, err := renderValues(t, loadChart(t), userValues(t, "", map[string]any{"edge.webTransport.enabled": true})); err == nil ||
		!strings.Contains(err.Error(), "edge.tls.secretName") {
		t.Errorf("WebTransport without TLS rendered (%v), want an error naming edge.tls.secretName", err)
	}
}
