package k8s

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// myValues is the my-values.yaml of the README for this cluster: what a
// user changes in the production example — the registry, the dependencies'
// endpoints, sizes that fit one 2-core node, NodePorts (no load-balancer
// provider here), no OTLP collector, and a shorter drain.
func myValues(registry, depsNS string) string {
	return fmt.Sprintf(`image:
  registry: %[1]s/herald
# No OpenTelemetry collector on this cluster.
telemetry:
  otlp:
    endpoint: ""
nats:
  streamReplicas: 1
redis:
  addrs: [redis.%[2]s:6379]
etcd:
  endpoints: [https://etcd.%[2]s:2379]
session:
  replicas: 2
  leaseReplicas: 1
  resources:
    requests: {cpu: 50m, memory: 64Mi}
    limits: {memory: 512Mi}
admin:
  resources:
    requests: {cpu: 50m, memory: 64Mi}
    limits: {memory: 512Mi}
edge:
  resources:
    requests: {cpu: 100m, memory: 64Mi}
    limits: {memory: 1Gi}
  autoscaling:
    minReplicas: 2
  drain:
    preStopSeconds: 3
    timeoutSeconds: 16
  service:
    mqtt:
      type: NodePort
    http:
      type: NodePort
networkPolicy:
  egress:
    natsTo: &deps
      - namespaceSelector:
          matchLabels:
            kubernetes.io/metadata.name: %[2]s
    redisTo: *deps
    etcdTo: *deps
tests:
  image:
    repository: %[1]s/herald/curl
    tag: "7.88.1"
`, registry, depsNS)
}

// manifestObjects names the objects of a rendered manifest as kubectl get
// -o name does (deployment.apps/herald-edge).
func manifestObjects(manifest string) map[string]bool {
	groups := map[string]string{"Deployment": "deployment.apps", "Service": "service", "ConfigMap": "configmap",
		"Secret": "secret", "ServiceAccount": "serviceaccount", "PodDisruptionBudget": "poddisruptionbudget.policy",
		"HorizontalPodAutoscaler": "horizontalpodautoscaler.autoscaling", "NetworkPolicy": "networkpolicy.networking.k8s.io",
		"Ingress": "ingress.networking.k8s.io", "ServiceMonitor": "servicemonitor.monitoring.coreos.com"}
	out := map[string]bool{}
	for _, doc := range strings.Split(manifest, "\n---") {
		var m struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		}
		if yaml.Unmarshal([]byte(doc), &m) != nil || m.Kind == "" {
			continue
		}
		out[groups[m.Kind]+"/"+m.Metadata.Name] = true
	}
	return out
}
