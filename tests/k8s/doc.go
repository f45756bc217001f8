// Package k8s tests Herald's Helm chart on a real Kubernetes cluster, as a
// user installs it: `make k8s-test` starts a single-node cluster on this
// machine (deploy/k8s/cluster.sh), builds the images (make images) and runs
// TestImages, which reads them, and TestChartOnKubernetes, which drives
// kubectl and helm (the programs a user
// runs, built by the Makefile) and real clients: Eclipse Paho for MQTT 5,
// an SSE reader following Last-Event-ID as a browser's EventSource does.
//
// It runs only with HERALD_K8S=1 and a cluster described by KUBECONFIG,
// HERALD_K8S_REGISTRY (the loopback registry the images were pushed to,
// under herald/) and HERALD_K8S_NODE_IP (where NodePorts answer); the
// images must also be in the node's containerd under their bare names
// (herald-edge:0.1.0), which the default values ask for.
package k8s
