#!/usr/bin/env bash
# Installs, on a Debian machine, the programs Herald's tests run for real:
# redis-server (standalone and Cluster), the mosquitto clients (and broker,
# the benchmark peer), Node for MQTT.js, chromium (headless, for the browser
# tests) and haproxy (the load balancer in front of the local cluster's
# edges). nats-server and etcd are built from Go by the Makefile at the
# versions pinned in pkg/go.mod (Debian's are too old).
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v stdbuf >/dev/null || need+=(coreutils)
# MQTT.js tests (tests/mqttjs) run on Node.
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v chromium >/dev/null || need+=(chromium)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)

if [ ${#need[@]} -eq 0 ]; then
  echo "test dependencies: all present"
  exit 0
fi
echo "test dependencies: installing ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
