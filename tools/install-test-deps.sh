#!/usr/bin/env bash
# Installs, on a Debian machine, the programs Herald's tests run for real:
# redis-server (standalone and Cluster) and redis-cli, the mosquitto clients
# (and broker, the reference and benchmark peer), Node and npm for MQTT.js,
# chromium (headless, for the browser tests), haproxy (the load balancer in
# front of the local cluster's edges) and curl. nats-server and etcd are
# built from Go by the Makefile at the versions pinned in pkg/go.mod
# (Debian's are too old).
#
#   tools/install-test-deps.sh [test|cluster]          install what is missing
#   tools/install-test-deps.sh --list [test|cluster]   the packages, one line
#
# "cluster" is what `make cluster-up` and the README's cluster example need.
#
# Debian's redis-server, mosquitto and haproxy come with system services
# that start at install and at boot, on the very ports of the local cluster
# (6379, 1883). Herald's tests and scripts start their own servers, so
# those services are installed neither started (a policy-rc.d that denies
# it, during the install) nor enabled (systemctl disable, after): only for
# the packages this script installs, never for ones already there.
set -euo pipefail

# COMMAND PACKAGE: the package is installed when the command is missing
# (from PATH, or /usr/sbin where Debian puts daemons).
cluster_deps=(
  "redis-server redis-server"
  "redis-cli redis-tools"
  "mosquitto_sub mosquitto-clients"
  "curl curl"
)
test_deps=(
  "${cluster_deps[@]}"
  "mosquitto mosquitto"
  "stdbuf coreutils"
  "node nodejs"
  "npm npm"
  "chromium chromium"
  "haproxy haproxy"
)
# The packages whose system service would take a port of the local cluster
# or of a test.
services=(redis-server mosquitto haproxy)

list=0
if [ "${1:-}" = --list ]; then list=1; shift; fi
group=${1:-test}
case $group in
  test) pairs=("${test_deps[@]}") ;;
  cluster) pairs=("${cluster_deps[@]}") ;;
  *) echo "usage: $0 [--list] [test|cluster]" >&2; exit 2 ;;
esac

if [ $list = 1 ]; then
  for p in "${pairs[@]}"; do printf '%s ' "${p#* }"; done | sed 's/ $//'
  echo
  exit 0
fi

need=()
for p in "${pairs[@]}"; do
  cmd=${p%% *} pkg=${p#* }
  command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done

if [ ${#need[@]} -eq 0 ]; then
  echo "$group dependencies: all present"
  exit 0
fi
echo "$group dependencies: installing ${need[*]} with apt-get"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# No service starts during the install: invoke-rc.d (and deb-systemd-invoke)
# ask policy-rc.d, and 101 means "not allowed". One already there (a
# container's) is left as it is.
policy=${POLICY_RC_D:-/usr/sbin/policy-rc.d}
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# Written by Herald'"'"'s tools/install-test-deps.sh for the length of an install.\nexit 101\n' |
    $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  made_policy=1
fi
cleanup() { if [ $made_policy = 1 ]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT

$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"

# Nor at boot: the units the packages enabled are disabled again (and
# stopped, were one running anyway). systemctl does that on the unit files
# even where systemd is not running.
disabled=()
for s in "${services[@]}"; do
  for n in "${need[@]}"; do
    if [ "$n" = "$s" ]; then disabled+=("$s"); fi
  done
done
if [ ${#disabled[@]} -gt 0 ] && command -v systemctl >/dev/null; then
  now=()
  if [ -d "${SYSTEMD_RUN_DIR:-/run/systemd/system}" ]; then now=(--now); fi
  $sudo systemctl disable "${now[@]}" --quiet "${disabled[@]}" ||
    echo "$group dependencies: could not disable the system services of ${disabled[*]}" >&2
  echo "$group dependencies: the system services of ${disabled[*]} are disabled: Herald starts its own" \
    "servers (to use Debian's: systemctl enable --now ${disabled[*]})"
fi
