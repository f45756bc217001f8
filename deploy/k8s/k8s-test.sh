#!/usr/bin/env bash
# k8s-test.sh runs tests/k8s (TestChartOnKubernetes) on the local cluster of
# cluster.sh: starts it if it is not up (and stops it afterwards), gives it
# the images of `make images` — pushed to its loopback registry under
# herald/, and imported into its containerd under their bare names, as
# `kind load` does, for the chart's default values — then runs the test
# within K8S_TEST_BUDGET.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLUSTER="bash $ROOT/deploy/k8s/cluster.sh"
BUDGET=${K8S_TEST_BUDGET:-25m}

if ! $CLUSTER status | grep -q '^kubelet: running'; then
	$CLUSTER up
	trap '$CLUSTER down' EXIT
fi
eval "$($CLUSTER env)"

for tarball in "$ROOT"/bin/images/*.tar; do
	ref=$(tar -xOf "$tarball" manifest.json | sed -n 's/.*"RepoTags":\["\([^"]*\)".*/\1/p')
	"$IMAGE_TOOLS/crane" push "$tarball" "$HERALD_K8S_REGISTRY/herald/$ref" >/dev/null 2>&1
	ctr --address "$HERALD_K8S_CONTAINERD" -n k8s.io images import "$tarball" >/dev/null
	echo "k8s-test: image $ref in the registry and the node"
done

cd "$ROOT"
HERALD_K8S=1 go test -count=1 -v -timeout "$BUDGET" -run '^(TestImages|TestChartOnKubernetes)$' ./tests/k8s/
