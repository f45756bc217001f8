#!/usr/bin/env bash
# The local cluster: Herald's cluster mode as plain processes on loopback —
# one NATS server with JetStream, Redis, etcd, two edges, the session service
# and admin. No Docker. Every port and the state directory can be set from the
# environment (the end-to-end tests run it on free ports in a temp dir).
#
#   deploy/local/cluster.sh up | down | status
#
# Processes are started in the background, their PIDs kept under
# $HERALD_CLUSTER_DIR/pids; `down` stops exactly those, by PID.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${HERALD_BIN:-$root/bin}
DIR=${HERALD_CLUSTER_DIR:-$root/data/cluster}
NATS_PORT=${NATS_PORT:-4222}
REDIS_PORT=${REDIS_PORT:-6379}
ETCD_PORT=${ETCD_PORT:-2379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-2380}
ADMIN_PORT=${ADMIN_PORT:-8081}
SESSION_OPS_PORT=${SESSION_OPS_PORT:-9092}
EDGE_A_MQTT=${EDGE_A_MQTT:-1883}
EDGE_A_HTTP=${EDGE_A_HTTP:-8080}
EDGE_A_OPS=${EDGE_A_OPS:-9090}
EDGE_B_MQTT=${EDGE_B_MQTT:-1884}
EDGE_B_HTTP=${EDGE_B_HTTP:-8090}
EDGE_B_OPS=${EDGE_B_OPS:-9091}
# The local cluster is for development: anonymous clients land in this tenant.
ANON_TENANT=${HERALD_ANONYMOUS_TENANT:-dev}

pids=$DIR/pids
logs=$DIR/logs

start() { # name cmd...
  local name=$1; shift
  "$@" >"$logs/$name.log" 2>&1 &
  echo $! >"$pids/$name.pid"
}

wait_port() { # name port
  local name=$1 port=$2
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! alive "$(cat "$pids/$name.pid")"; then
      echo "cluster: $name exited; last lines of $logs/$name.log:" >&2
      tail -20 "$logs/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "cluster: $name not listening on $port after 15s" >&2
  return 1
}

up() {
  trap 'echo "cluster: start failed, stopping what was started" >&2; down' ERR
  for b in nats-server etcd herald-edge herald-session herald-admin; do
    [ -x "$BIN/$b" ] || { echo "cluster: $BIN/$b missing: run 'make build servers'" >&2; exit 1; }
  done
  command -v redis-server >/dev/null || { echo "cluster: redis-server missing: run 'make test-deps'" >&2; exit 1; }
  mkdir -p "$pids" "$logs" "$DIR/nats" "$DIR/redis" "$DIR/etcd"

  start nats "$BIN/nats-server" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$DIR/nats" --server_name herald-local
  start redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" \
    --appendonly yes --save '' --daemonize no
  start etcd "$BIN/etcd" --name herald-local --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "herald-local=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn
  wait_port nats "$NATS_PORT"
  wait_port redis "$REDIS_PORT"
  wait_port etcd "$ETCD_PORT"

  local nats="nats://127.0.0.1:$NATS_PORT" redis="127.0.0.1:$REDIS_PORT" etcd="127.0.0.1:$ETCD_PORT"
  # The operator token of this cluster's admin API, made once per state dir.
  [ -s "$DIR/admin-token" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/admin-token"
  chmod 600 "$DIR/admin-token"
  start admin env HERALD_ADMIN_TOKEN="$(cat "$DIR/admin-token")" "$BIN/herald-admin" --addr "127.0.0.1:$ADMIN_PORT" \
    --etcd-endpoints "$etcd" --bootstrap-tenant "$ANON_TENANT" --nats-url "$nats" --redis-addrs "$redis"
  start session "$BIN/herald-session" --nats-url "$nats" --redis-addrs "$redis" \
    --ops-addr "127.0.0.1:$SESSION_OPS_PORT"
  start edge-a "$BIN/herald-edge" --id edge-a --nats-url "$nats" --redis-addrs "$redis" \
    --mqtt-addr "127.0.0.1:$EDGE_A_MQTT" --http-addr "127.0.0.1:$EDGE_A_HTTP" --ops-addr "127.0.0.1:$EDGE_A_OPS" \
    --etcd-endpoints "$etcd" --anonymous-tenant "$ANON_TENANT"
  start edge-b "$BIN/herald-edge" --id edge-b --nats-url "$nats" --redis-addrs "$redis" \
    --mqtt-addr "127.0.0.1:$EDGE_B_MQTT" --http-addr "127.0.0.1:$EDGE_B_HTTP" --ops-addr "127.0.0.1:$EDGE_B_OPS" \
    --etcd-endpoints "$etcd" --anonymous-tenant "$ANON_TENANT"
  wait_port admin "$ADMIN_PORT"
  wait_port session "$SESSION_OPS_PORT"
  wait_port edge-a "$EDGE_A_HTTP"
  wait_port edge-b "$EDGE_B_HTTP"
  wait_port edge-a "$EDGE_A_MQTT"
  wait_port edge-b "$EDGE_B_MQTT"
  cat <<TXT
Herald local cluster is up (state in $DIR, logs in $logs):
  edge A   MQTT 127.0.0.1:$EDGE_A_MQTT   HTTP http://127.0.0.1:$EDGE_A_HTTP  (/sse /ws /mqtt /publish)
  edge B   MQTT 127.0.0.1:$EDGE_B_MQTT   HTTP http://127.0.0.1:$EDGE_B_HTTP
  admin    http://127.0.0.1:$ADMIN_PORT  (REST + gRPC; operator token in $DIR/admin-token:
           curl -H "Authorization: Bearer \$(cat $DIR/admin-token)" http://127.0.0.1:$ADMIN_PORT/v1/tenants)
  NATS $nats   Redis $redis   etcd http://$etcd
Anonymous clients land in tenant '$ANON_TENANT'. Stop with: make cluster-down
TXT
}

# alive: the process runs. An exited process whose parent has not reaped it
# yet (a zombie: the started processes outlive this script, and whoever
# inherits them may reap late) counts as stopped.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

down() {
  [ -d "$pids" ] || { echo "cluster: nothing started from $DIR"; return 0; }
  # Edges first so they drain before the backbone goes.
  for name in edge-a edge-b admin session etcd redis nats; do
    local f=$pids/$name.pid
    [ -f "$f" ] || continue
    local pid; pid=$(cat "$f")
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
      alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  echo "Herald local cluster stopped."
}

status() {
  [ -d "$pids" ] || { echo "cluster: not started"; return 0; }
  for f in "$pids"/*.pid; do
    [ -f "$f" ] || continue
    local name; name=$(basename "$f" .pid)
    if alive "$(cat "$f")"; then echo "$name: running (pid $(cat "$f"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
