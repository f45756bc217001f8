#!/usr/bin/env bash
# The local cluster: Herald's cluster mode as plain processes on loopback —
# one NATS server with JetStream, Redis, etcd, two edges, the session service
# and admin. No Docker. Every port and the state directory can be set from the
# environment (the end-to-end tests run it on free ports in a temp dir).
#
#   deploy/local/cluster.sh up | down | status | start NAME
#
# Processes are started in the background, their PIDs kept under
# $HERALD_CLUSTER_DIR/pids; `down` stops exactly those, by PID. `start NAME`
# starts one process again (after a crash or a kill) with the command line
# `up` gave it; NAME is a pid file's name (edge-a, session, nats, redis, ...).
#
# HERALD_HA=1 (off by default) runs the highly available shape the fault
# tests (tests/chaos) kill parts of: three NATS servers in one JetStream
# cluster (routes on loopback, tenant streams and the session lease bucket at
# 3 replicas), Redis with a replica and a Sentinel that fails over to it
# (services take the Sentinel as --redis-addrs with --redis-master-name), and
# one etcd. EDGE_A_NATS_URL / EDGE_B_NATS_URL override one edge's NATS URLs
# (the fault tests put a proxy there to cut the edge off).
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
ADMIN_OPS_PORT=${ADMIN_OPS_PORT:-9093}
EDGE_A_MQTT=${EDGE_A_MQTT:-1883}
EDGE_A_HTTP=${EDGE_A_HTTP:-8080}
EDGE_A_OPS=${EDGE_A_OPS:-9090}
EDGE_B_MQTT=${EDGE_B_MQTT:-1884}
EDGE_B_HTTP=${EDGE_B_HTTP:-8090}
EDGE_B_OPS=${EDGE_B_OPS:-9091}
# The local cluster is for development: anonymous clients land in this tenant.
ANON_TENANT=${HERALD_ANONYMOUS_TENANT:-dev}
# The HA shape (HERALD_HA=1): ports of the other NATS servers, the routes,
# the Redis replica and the Sentinel.
HA=${HERALD_HA:-0}
NATS_PORT_2=${NATS_PORT_2:-4223}
NATS_PORT_3=${NATS_PORT_3:-4224}
NATS_ROUTE_PORT_1=${NATS_ROUTE_PORT_1:-6222}
NATS_ROUTE_PORT_2=${NATS_ROUTE_PORT_2:-6223}
NATS_ROUTE_PORT_3=${NATS_ROUTE_PORT_3:-6224}
REDIS_REPLICA_PORT=${REDIS_REPLICA_PORT:-6380}
SENTINEL_PORT=${SENTINEL_PORT:-26379}
REDIS_MASTER_NAME=${REDIS_MASTER_NAME:-herald}

pids=$DIR/pids
logs=$DIR/logs

start() { # name cmd...
  local name=$1; shift
  # Appends: a process started again after a kill keeps its earlier log.
  "$@" >>"$logs/$name.log" 2>&1 &
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

nats_url="nats://127.0.0.1:$NATS_PORT"
redis_flags=(--redis-addrs "127.0.0.1:$REDIS_PORT")
ha_flags=()
if [ "$HA" = 1 ]; then
  nats_url="nats://127.0.0.1:$NATS_PORT,nats://127.0.0.1:$NATS_PORT_2,nats://127.0.0.1:$NATS_PORT_3"
  redis_flags=(--redis-addrs "127.0.0.1:$SENTINEL_PORT" --redis-master-name "$REDIS_MASTER_NAME")
  ha_flags=(--stream-replicas 3)
fi
etcd_addr="127.0.0.1:$ETCD_PORT"

# nats_node N: one server of the HA JetStream cluster. Clients are given
# every server's URL and told nothing else (--no_advertise), so a client's
# URLs are exactly the ones it was configured with.
nats_node() {
  local n=$1 port route routes=()
  port=$(port_of "nats-$n")
  route=$(eval echo "\$NATS_ROUTE_PORT_$n")
  for m in 1 2 3; do
    [ "$m" = "$n" ] || routes+=("nats://127.0.0.1:$(eval echo "\$NATS_ROUTE_PORT_$m")")
  done
  mkdir -p "$DIR/nats-$n"
  start "nats-$n" "$BIN/nats-server" -a 127.0.0.1 -p "$port" -js -sd "$DIR/nats-$n" --server_name "herald-local-$n" \
    --cluster_name herald-local --cluster "nats://127.0.0.1:$route" \
    --routes "$(IFS=,; echo "${routes[*]}")" --no_advertise
}

# launch NAME: start one process as `up` does.
launch() {
  case $1 in
    nats) start nats "$BIN/nats-server" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$DIR/nats" --server_name herald-local ;;
    nats-1|nats-2|nats-3) nats_node "${1#nats-}" ;;
    redis) start redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" \
      --appendonly yes --save '' --daemonize no ;;
    redis-replica)
      mkdir -p "$DIR/redis-replica"
      start redis-replica redis-server --bind 127.0.0.1 --port "$REDIS_REPLICA_PORT" --dir "$DIR/redis-replica" \
        --appendonly yes --save '' --daemonize no --replicaof 127.0.0.1 "$REDIS_PORT" ;;
    sentinel)
      # Sentinel rewrites its file with what it learns (the current primary),
      # so a restarted Sentinel keeps following the failed-over primary.
      [ -s "$DIR/sentinel.conf" ] || cat >"$DIR/sentinel.conf" <<CONF
bind 127.0.0.1
port $SENTINEL_PORT
dir $DIR
sentinel monitor $REDIS_MASTER_NAME 127.0.0.1 $REDIS_PORT 1
sentinel down-after-milliseconds $REDIS_MASTER_NAME 1000
sentinel failover-timeout $REDIS_MASTER_NAME 5000
CONF
      start sentinel redis-server "$DIR/sentinel.conf" --sentinel ;;
    etcd) start etcd "$BIN/etcd" --name herald-local --data-dir "$DIR/etcd" \
      --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster "herald-local=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn ;;
    admin) start admin env HERALD_ADMIN_TOKEN="$(cat "$DIR/admin-token")" "$BIN/herald-admin" --addr "127.0.0.1:$ADMIN_PORT" --ops-addr "127.0.0.1:$ADMIN_OPS_PORT" \
      --etcd-endpoints "$etcd_addr" --bootstrap-tenant "$ANON_TENANT" --nats-url "$nats_url" "${redis_flags[@]}" ;;
    session)
      local lease=()
      [ "$HA" = 1 ] && lease=(--lease-replicas 3)
      start session "$BIN/herald-session" --nats-url "$nats_url" "${redis_flags[@]}" "${lease[@]}" \
        --ops-addr "127.0.0.1:$SESSION_OPS_PORT" ;;
    edge-a) start edge-a "$BIN/herald-edge" --id edge-a --nats-url "${EDGE_A_NATS_URL:-$nats_url}" "${redis_flags[@]}" "${ha_flags[@]}" \
      --mqtt-addr "127.0.0.1:$EDGE_A_MQTT" --http-addr "127.0.0.1:$EDGE_A_HTTP" --ops-addr "127.0.0.1:$EDGE_A_OPS" \
      --etcd-endpoints "$etcd_addr" --anonymous-tenant "$ANON_TENANT" ;;
    edge-b) start edge-b "$BIN/herald-edge" --id edge-b --nats-url "${EDGE_B_NATS_URL:-$nats_url}" "${redis_flags[@]}" "${ha_flags[@]}" \
      --mqtt-addr "127.0.0.1:$EDGE_B_MQTT" --http-addr "127.0.0.1:$EDGE_B_HTTP" --ops-addr "127.0.0.1:$EDGE_B_OPS" \
      --etcd-endpoints "$etcd_addr" --anonymous-tenant "$ANON_TENANT" ;;
    *) echo "cluster: no process named $1" >&2; return 2 ;;
  esac
}

# port_of NAME: the port that says NAME is serving.
port_of() {
  case $1 in
    nats|nats-1) echo "$NATS_PORT" ;; nats-2) echo "$NATS_PORT_2" ;; nats-3) echo "$NATS_PORT_3" ;;
    redis) echo "$REDIS_PORT" ;; redis-replica) echo "$REDIS_REPLICA_PORT" ;; sentinel) echo "$SENTINEL_PORT" ;;
    etcd) echo "$ETCD_PORT" ;; admin) echo "$ADMIN_PORT" ;; session) echo "$SESSION_OPS_PORT" ;;
    edge-a) echo "$EDGE_A_MQTT" ;; edge-b) echo "$EDGE_B_MQTT" ;;
  esac
}

up() {
  trap 'echo "cluster: start failed, stopping what was started" >&2; down' ERR
  for b in nats-server etcd herald-edge herald-session herald-admin; do
    [ -x "$BIN/$b" ] || { echo "cluster: $BIN/$b missing: run 'make build servers'" >&2; exit 1; }
  done
  command -v redis-server >/dev/null || { echo "cluster: redis-server missing: run 'make test-deps'" >&2; exit 1; }
  mkdir -p "$pids" "$logs" "$DIR/nats" "$DIR/redis" "$DIR/etcd"

  local backing=(nats redis etcd)
  [ "$HA" = 1 ] && backing=(nats-1 nats-2 nats-3 redis redis-replica etcd)
  for name in "${backing[@]}"; do launch "$name"; done
  for name in "${backing[@]}"; do wait_port "$name" "$(port_of "$name")"; done
  if [ "$HA" = 1 ]; then
    launch sentinel
    wait_port sentinel "$SENTINEL_PORT"
  fi

  # The operator token of this cluster's admin API, made once per state dir.
  [ -s "$DIR/admin-token" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/admin-token"
  chmod 600 "$DIR/admin-token"
  for name in admin session edge-a edge-b; do launch "$name"; done
  wait_port admin "$ADMIN_PORT"
  wait_port session "$SESSION_OPS_PORT"
  wait_port edge-a "$EDGE_A_HTTP"
  wait_port edge-b "$EDGE_B_HTTP"
  wait_port edge-a "$EDGE_A_MQTT"
  wait_port edge-b "$EDGE_B_MQTT"
  local redis_desc="127.0.0.1:$REDIS_PORT"
  [ "$HA" = 1 ] && redis_desc="127.0.0.1:$REDIS_PORT (replica :$REDIS_REPLICA_PORT, Sentinel :$SENTINEL_PORT master '$REDIS_MASTER_NAME')"
  cat <<TXT
Herald local cluster is up (state in $DIR, logs in $logs):
  edge A   MQTT 127.0.0.1:$EDGE_A_MQTT   HTTP http://127.0.0.1:$EDGE_A_HTTP  (/sse /ws /mqtt /publish)
  edge B   MQTT 127.0.0.1:$EDGE_B_MQTT   HTTP http://127.0.0.1:$EDGE_B_HTTP
  admin    http://127.0.0.1:$ADMIN_PORT  (REST + gRPC; operator token in $DIR/admin-token:
           curl -H "Authorization: Bearer \$(cat $DIR/admin-token)" http://127.0.0.1:$ADMIN_PORT/v1/tenants)
  NATS $nats_url   Redis $redis_desc   etcd http://$etcd_addr
Anonymous clients land in tenant '$ANON_TENANT'. Stop with: make cluster-down
TXT
}

# start_one NAME: start NAME again unless it runs, and wait for its port.
start_one() {
  local name=$1
  if [ -f "$pids/$name.pid" ] && alive "$(cat "$pids/$name.pid")"; then
    echo "cluster: $name is running" >&2; return 0
  fi
  launch "$name"
  wait_port "$name" "$(port_of "$name")"
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
  for name in edge-a edge-b admin session etcd sentinel redis-replica redis nats nats-1 nats-2 nats-3; do
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
  start) [ -n "${2:-}" ] || { echo "usage: $0 start NAME" >&2; exit 2; }; mkdir -p "$pids" "$logs"; start_one "$2" ;;
  *) echo "usage: $0 up|down|status|start NAME" >&2; exit 2 ;;
esac
