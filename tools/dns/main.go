// Command coredns is the local Kubernetes cluster's DNS (`make k8s-up`):
// CoreDNS with the few plugins a cluster's DNS needs, so that pods find
// Services by name (nats, redis, herald-http.messaging.svc.cluster.local)
// as on any cluster. CoreDNS's own main compiles in every plugin (the cloud
// providers' SDKs among them); this is its documented way to build a
// smaller server: the same core, a chosen plugin list.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The plugins' order in a query, as in CoreDNS's plugin.cfg.
var directives = []string{"bind", "ready", "health", "errors", "log", "cache", "kubernetes", "forward"}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
