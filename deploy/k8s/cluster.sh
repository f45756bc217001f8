#!/usr/bin/env bash
# cluster.sh runs a real single-node Kubernetes on this machine, without
# Docker or systemd: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler on loopback; containerd (with runc and a CNI bridge) under
# the kubelet; kube-proxy (iptables); CoreDNS for Service names; a crane
# image registry on loopback that containerd pulls from over plain HTTP.
#
#   cluster.sh up       start it all (certificates on first use), wait for the node
#   cluster.sh down     stop exactly what `up` started, by PID, and remove what
#                       it leaves: pods, mounts, the bridge, iptables chains,
#                       cgroups, the cluster's objects (etcd), and the
#                       ip_forward setting it changed
#   cluster.sh status   what runs
#   cluster.sh env      the KUBECONFIG, PATH and registry to use it
#
# The node's address is the gateway of the pods' bridge (herald0,
# $NODE_IP): an address of this cluster's own network, not of the machine,
# which the kubelet needs (it refuses loopback). NodePorts are served on it:
# clients on this machine reach a Service at $NODE_IP:<nodePort>.
#
# Environment: KUBE_TOOLS, DNS_TOOLS, IMAGE_TOOLS (directories of the built
# programs), ETCD (the etcd binary), K8S_STATE (state, logs, certificates).
# Ports: K8S_API_PORT (16443), K8S_ETCD_PORT (12379, and the next one for
# peers), K8S_REGISTRY_PORT (15000). Everything listens on 127.0.0.1 but
# the kubelet's and kube-proxy's node-facing parts and DNS (on $NODE_IP).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STATE=${K8S_STATE:-$ROOT/data/k8s}
KT=${KUBE_TOOLS:?directory of the Kubernetes programs}
DNS=${DNS_TOOLS:?directory of coredns}/coredns
IT=${IMAGE_TOOLS:?directory of ko and crane}
ETCD=${ETCD:?path of etcd}
API_PORT=${K8S_API_PORT:-16443}
ETCD_PORT=${K8S_ETCD_PORT:-12379}
REGISTRY_PORT=${K8S_REGISTRY_PORT:-15000}
REGISTRY=127.0.0.1:$REGISTRY_PORT
BRIDGE=herald0
POD_SUBNET=10.244.0.0/24
NODE_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
NODE=$(hostname)
PKI=$STATE/pki
RUN=$STATE/run
LOGS=$STATE/logs
CTRD=$STATE/containerd
SOCK=$CTRD/containerd.sock
PAUSE_IMAGE=$REGISTRY/k8s/pause:v1
export KUBECONFIG=$STATE/admin.kubeconfig

log() { echo "k8s: $*" >&2; }

# --- certificates ------------------------------------------------------------

# cert NAME SUBJECT [SANS]: a key and a certificate signed by the cluster CA.
cert() {
	local name=$1 subj=$2 sans=${3:-}
	[ -f "$PKI/$name.crt" ] && return 0
	openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
	local ext="$PKI/$name.ext"
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=serverAuth,clientAuth"
		[ -n "$sans" ] && echo "subjectAltName=$sans"
	} >"$ext"
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 365 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr" "$ext"
}

pki() {
	mkdir -p "$PKI"
	if [ ! -f "$PKI/ca.crt" ]; then
		openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=herald-k8s-ca" \
			-days 365 -out "$PKI/ca.crt" 2>/dev/null
	fi
	cert apiserver "/CN=kube-apiserver" \
		"DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,IP:$NODE_IP"
	cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
	cert admin "/O=system:masters/CN=kubernetes-admin"
	cert controller-manager "/CN=system:kube-controller-manager"
	cert scheduler "/CN=system:kube-scheduler"
	cert kube-proxy "/CN=system:kube-proxy"
	cert coredns "/CN=herald:coredns"
	cert kubelet-client "/O=system:nodes/CN=system:node:$NODE"
	cert kubelet "/CN=$NODE" "DNS:$NODE,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP"
	[ -f "$PKI/sa.key" ] || { openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null; openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null; }
	for who in admin controller-manager scheduler kube-proxy coredns kubelet-client; do
		kubeconfig "$who" >"$STATE/$who.kubeconfig"
	done
}

kubeconfig() {
	cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: herald
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $1
  user:
    client-certificate: $PKI/$1.crt
    client-key: $PKI/$1.key
contexts:
- name: herald
  context: {cluster: herald, user: $1}
current-context: herald
EOF
}

# --- processes -----------------------------------------------------------------

# start NAME COMMAND...: run it in the background, its PID in $RUN/NAME.pid.
start() {
	local name=$1
	shift
	if running "$name"; then log "$name already runs (pid $(cat "$RUN/$name.pid"))"; return 0; fi
	"$@" >"$LOGS/$name.log" 2>&1 &
	echo $! >"$RUN/$name.pid"
}

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# stop NAME: SIGTERM, then SIGKILL after 15 s, by the PID start recorded.
stop() {
	local name=$1 pid
	[ -f "$RUN/$name.pid" ] || return 0
	pid=$(cat "$RUN/$name.pid")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && { log "$name (pid $pid) ignored SIGTERM: SIGKILL"; kill -9 "$pid" 2>/dev/null || true; }
	fi
	rm -f "$RUN/$name.pid"
}

# wait_for WHAT SECONDS COMMAND...: until the command succeeds.
wait_for() {
	local what=$1 secs=$2
	shift 2
	for _ in $(seq $((secs * 5))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	log "$what not ready after ${secs}s; its log:"
	tail -20 "$LOGS/$what.log" >&2 2>/dev/null || true
	return 1
}

k() { "$KT/kubectl" "$@"; }

# --- up ----------------------------------------------------------------------------

up() {
	for b in "$KT/kube-apiserver" "$KT/kubelet" "$KT/kubectl" "$DNS" "$IT/crane" "$ETCD" containerd runc /usr/lib/cni/bridge iptables; do
		command -v "$b" >/dev/null || { log "missing $b (make k8s-tools)"; exit 1; }
	done
	mkdir -p "$RUN" "$LOGS" "$CTRD" "$STATE/cni/net.d" "$STATE/kubelet" "$STATE/registry"
	pki

	# Pods reach Services and each other through this host: forwarding on,
	# restored by down.
	[ -f "$RUN/ip_forward" ] || cat /proc/sys/net/ipv4/ip_forward >"$RUN/ip_forward"
	echo 1 >/proc/sys/net/ipv4/ip_forward

	# The pods' bridge, made before the kubelet: its address is the node's.
	if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
		ip link add "$BRIDGE" type bridge
		ip addr add "$NODE_IP/24" dev "$BRIDGE"
	fi
	ip link set "$BRIDGE" up

	start etcd "$ETCD" --name herald-k8s --data-dir "$STATE/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
		--initial-cluster "herald-k8s=http://127.0.0.1:$((ETCD_PORT + 1))" --listen-metrics-urls "" \
		--quota-backend-bytes 2147483648 --log-level warn
	start registry "$IT/crane" registry serve --address "$REGISTRY" --disk "$STATE/registry"
	wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

	start kube-apiserver "$KT/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address "$NODE_IP" \
		--endpoint-reconciler-type none \
		--service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
		--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
		--client-ca-file "$PKI/ca.crt" \
		--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types Hostname,InternalIP \
		--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
		--allow-privileged=false --profiling=false
	wait_for kube-apiserver 90 k get --raw /readyz

	start kube-controller-manager "$KT/kube-controller-manager" \
		--kubeconfig "$STATE/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
		--authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port 10257 \
		--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
		--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
		--use-service-account-credentials \
		--leader-elect=false
	start kube-scheduler "$KT/kube-scheduler" \
		--kubeconfig "$STATE/scheduler.kubeconfig" \
		--authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
		--authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false

	# What the node identities need beyond the built-in roles: the kubelet
	# its node role (the Node authorizer covers the rest), CoreDNS reading
	# Services and EndpointSlices.
	k apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: herald-k8s:nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:node}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:nodes}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: herald-k8s:coredns}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: herald-k8s:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: herald-k8s:coredns}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "herald:coredns"}]
EOF

	cat >"$STATE/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:18054
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE/coredns.kubeconfig herald
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    forward . /etc/resolv.conf
}
EOF
	start coredns "$DNS" -conf "$STATE/Corefile"

	# containerd with the CRI plugin: its own root, state and socket; pods
	# on the CNI bridge; images from the loopback registry over HTTP.
	cat >"$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # runc cannot lower oom_score_adj here (no CAP_SYS_RESOURCE).
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REGISTRY"]
    endpoint = ["http://$REGISTRY"]
EOF
	cat >"$STATE/cni/net.d/10-herald.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "herald",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$NODE_IP"}]],
               "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$STATE/cni/ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
	start containerd containerd --config "$CTRD/config.toml"
	wait_for containerd 30 test -S "$SOCK"

	# The sandbox image, before any pod needs it.
	if ! "$IT/crane" digest "$PAUSE_IMAGE" >/dev/null 2>&1; then
		wait_for registry 10 curl -sf "http://$REGISTRY/v2/"
		KO="$IT/ko" CRANE="$IT/crane" OUT="$STATE/images" IMAGE_REGISTRY="$REGISTRY/k8s" IMAGE_TAG=v1 \
			IMAGES=pause IMAGE_PUSH=1 bash "$ROOT/deploy/images/build.sh" >"$LOGS/pause-image.log" 2>&1 ||
			{ cat "$LOGS/pause-image.log" >&2; exit 1; }
	fi

	cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$SOCK
# cgroups v1 here; no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
# No CAP_SYS_RESOURCE: the kubelet cannot lower its own oom_score_adj.
oomScoreAdj: 0
failSwapOn: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# Images loaded into containerd by hand (ctr images import, as kind load
# does) serve pods without a pull, even after a first pull of them failed.
imagePullCredentialsVerificationPolicy: NeverVerify
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
maxPods: 60
podLogsDir: $STATE/pod-logs
EOF
	start kubelet "$KT/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet-client.kubeconfig" \
		--root-dir "$STATE/kubelet" --node-ip "$NODE_IP" --hostname-override "$NODE"
	start kube-proxy "$KT/kube-proxy" --kubeconfig "$STATE/kube-proxy.kubeconfig" --hostname-override "$NODE" \
		--proxy-mode iptables --cluster-cidr 10.244.0.0/16 \
		--conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
		--iptables-localhost-nodeports=false --nodeport-addresses primary \
		--healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249
	wait_for kubelet 90 k wait --for=condition=Ready "node/$NODE" --timeout=1s
	wait_for coredns 30 curl -sf http://127.0.0.1:18181/ready
	log "up: node $NODE Ready at $NODE_IP; API https://127.0.0.1:$API_PORT; registry $REGISTRY"
	log "use it: eval \"\$(make -s k8s-env)\"  or  KUBECONFIG=$KUBECONFIG $KT/kubectl get nodes"
}

# --- down ------------------------------------------------------------------------

down() {
	# Pods first, while containerd runs: the kubelet leaves them running
	# when it exits. crictl stops each sandbox (CNI DEL frees its address and
	# its iptables rules) and removes it.
	stop kube-proxy
	stop kubelet
	if running containerd; then
		"$KT/crictl" --runtime-endpoint "unix://$SOCK" rmp -f -a >/dev/null 2>&1 || true
	fi
	stop containerd
	# containerd-shim processes of this containerd (found by its socket
	# path in their command line) exit with their pods; any left is ours.
	for pid in $(pgrep -f -- "-address $SOCK" || true); do kill "$pid" 2>/dev/null || true; done
	for name in coredns kube-scheduler kube-controller-manager kube-apiserver registry etcd; do stop "$name"; done

	# Mounts under the state directory (the kubelet's own bind mount of its
	# root, pods' volumes, containerd's overlay and shm mounts), deepest first.
	local m
	for m in $(awk -v s="$STATE/" 'index($2, s) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	# Pod network namespaces the CNI DEL did not reach.
	for m in $(awk '$2 ~ "^/run/netns/cni-" {print $2}' /proc/self/mounts); do umount "$m" 2>/dev/null || true; rm -f "$m"; done

	ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
	# kube-proxy's chains (KUBE-*), and the CNI plugins' chains of this
	# network (rules commented name: "herald") that a pod's CNI DEL missed.
	local table chain rule
	for table in nat filter mangle; do
		local chains
		chains=$(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}')
		chains+=" $(iptables -t "$table" -S 2>/dev/null | { grep -F 'name: \"herald\"' || true; } | sed -n 's/.* -j \(CNI-[^ ]*\).*/\1/p; s/^-A \(CNI-[^ ]*\) .*/\1/p' | sort -u)"
		# Rules of other chains that jump to them, then the chains.
		iptables -t "$table" -S 2>/dev/null | awk '$1 == "-A" && $2 !~ /^KUBE-/' | while read -r rule; do
			for chain in $chains; do
				if [[ " $rule " == *" -j $chain "* ]]; then eval "iptables -t $table ${rule/-A/-D}" 2>/dev/null || true; break; fi
			done
		done
		for chain in $chains; do iptables -t "$table" -F "$chain" 2>/dev/null || true; done
		for chain in $chains; do iptables -t "$table" -X "$chain" 2>/dev/null || true; done
	done
	# The kubelet's cgroups (cgroups v1: one tree per controller).
	local d
	for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
		[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	# The cluster's state: the next `up` starts empty (the certificates,
	# containerd's images and the registry stay).
	rm -rf "$STATE/etcd" "$STATE/kubelet" "$STATE/pod-logs" "$STATE/cni/ipam"
	if [ -f "$RUN/ip_forward" ]; then
		cat "$RUN/ip_forward" >/proc/sys/net/ipv4/ip_forward
		rm -f "$RUN/ip_forward"
	fi
	log "down"
}

status() {
	local name
	for name in etcd registry kube-apiserver kube-controller-manager kube-scheduler coredns containerd kubelet kube-proxy; do
		if running "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
	done
	running kube-apiserver && k get nodes -o wide 2>/dev/null || true
}

env_() {
	echo "export KUBECONFIG=$KUBECONFIG"
	echo "export PATH=$KT:\$PATH"
	echo "export HERALD_K8S_REGISTRY=$REGISTRY HERALD_K8S_NODE_IP=$NODE_IP HERALD_K8S_CONTAINERD=$SOCK"
}

case ${1:-status} in
up) up ;;
down) down ;;
status) status ;;
env) env_ ;;
*) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
