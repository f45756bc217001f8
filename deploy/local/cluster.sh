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
#
# Nothing listens without credentials. Each secret is made at random on the
# first `up` and kept in the state directory, mode 0600: nats-password (user
# herald; nats-route-password for the HA routes, user route), redis-password
# (Redis, its replica and Sentinel), etcd-root-password, etcd-admin-password
# (user herald-admin: read and write under /herald/), etcd-edge-password
# (user herald-edge: read only), admin-token. Services get them in their
# environment, never on a command line (which any local user can read).
# etcd's peer port is a unix socket in the state directory.
set -euo pipefail
# Every file and directory the cluster makes — state, logs, configurations
# holding secrets, sockets — is its owner's alone.
umask 077

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
  # The working directory is the state directory, where etcd's peer socket
  # lives; exec keeps the pid the process's own.
  (cd "$DIR" && exec "$@") >>"$logs/$name.log" 2>&1 &
  echo $! >"$pids/$name.pid"
}

# secret NAME: the secret kept in $DIR/NAME, made on first use.
secret() {
  local f=$DIR/$1
  [ -s "$f" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f"
  chmod 600 "$f"
  cat "$f"
}

# secrets: every secret of the cluster, made if missing, in this script's
# environment for the processes it starts (the services read HERALD_*).
secrets() {
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  nats_password=$(secret nats-password)
  nats_route_password=$(secret nats-route-password)
  redis_password=$(secret redis-password)
  etcd_root_password=$(secret etcd-root-password)
  etcd_admin_password=$(secret etcd-admin-password)
  etcd_edge_password=$(secret etcd-edge-password)
  admin_token=$(secret admin-token)
  export HERALD_NATS_USER=herald HERALD_NATS_PASSWORD=$nats_password HERALD_REDIS_PASSWORD=$redis_password
  if [ "$HA" = 1 ]; then export HERALD_REDIS_SENTINEL_PASSWORD=$redis_password; fi
}

# nats_conf FILE [ROUTE_PORT]: the server's users, and for the HA shape its
# cluster block: routes authenticate too, or any local process could join
# the cluster as a server and see every message.
nats_conf() {
  local file=$1 route=${2:-}
  {
    printf 'authorization { users = [ { user: herald, password: "%s" } ] }\n' "$nats_password"
    if [ -n "$route" ]; then
      local m routes=()
      for m in 1 2 3; do
        local p; p=$(eval echo "\$NATS_ROUTE_PORT_$m")
        [ "$p" = "$route" ] || routes+=("\"nats://route:$nats_route_password@127.0.0.1:$p\"")
      done
      printf 'cluster {\n  name: herald-local\n  listen: "127.0.0.1:%s"\n  no_advertise: true\n' "$route"
      printf '  authorization { user: route, password: "%s" }\n' "$nats_route_password"
      printf '  routes = [ %s ]\n}\n' "$(IFS=,; echo "${routes[*]}")"
    fi
  } >"$file"
}

# redis_conf FILE: the password of Redis and its replica (masterauth: a
# replica, or a primary demoted by a failover, authenticates to its primary).
redis_conf() {
  printf 'requirepass "%s"\nmasterauth "%s"\n' "$redis_password" "$redis_password" >"$1"
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
# every server's URL and told nothing else (no_advertise), so a client's
# URLs are exactly the ones it was configured with.
nats_node() {
  local n=$1 port
  port=$(port_of "nats-$n")
  mkdir -p "$DIR/nats-$n"
  nats_conf "$DIR/nats-$n.conf" "$(eval echo "\$NATS_ROUTE_PORT_$n")"
  start "nats-$n" "$BIN/nats-server" -c "$DIR/nats-$n.conf" -a 127.0.0.1 -p "$port" -js -sd "$DIR/nats-$n" \
    --server_name "herald-local-$n"
}

# etcd_flags: etcd's command line, but for its client URL. The peer port is
# a unix socket in the state directory (etcd's unix://localhost:PORT names a
# file in its working directory), so no other user can reach raft.
etcd_flags() {
  local peer="unix://localhost:$ETCD_PEER_PORT"
  echo --name herald-local --data-dir "$DIR/etcd" --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "herald-local=$peer" --log-level warn
}

# etcd_auth: turns etcd's authentication on, once per state directory, with
# the root user, herald-admin (read and write under /herald/) and herald-edge
# (read only). It runs before etcd ever listens on TCP: etcd is started
# with its client URL on a unix socket in the state directory, set up
# through its JSON gateway (passwords on curl's stdin, not its command
# line), and stopped.
etcd_auth() {
  [ -f "$DIR/etcd-auth" ] && return 0
  local sock=$DIR/etcd-setup.sock
  # shellcheck disable=SC2046 # etcd_flags is a word list
  start etcd "$BIN/etcd" $(etcd_flags) --listen-client-urls "unix://$sock" --advertise-client-urls "unix://$sock"
  local pid; pid=$(cat "$pids/etcd.pid")
  for _ in $(seq 1 150); do
    curl -sf --unix-socket "$sock" http://localhost/health >/dev/null 2>&1 && break
    alive "$pid" || { echo "cluster: etcd exited; last lines of $logs/etcd.log:" >&2; tail -20 "$logs/etcd.log" >&2; return 1; }
    sleep 0.1
  done
  api() { curl -sSf --unix-socket "$sock" -X POST "http://localhost/v3/auth/$1" --data-binary @- >/dev/null; }
  local prefix end
  prefix=$(printf /herald/ | base64) end=$(printf /herald0 | base64)
  printf '{"name":"root"}' | api role/add
  printf '{"name":"herald-admin"}' | api role/add
  printf '{"name":"herald-edge"}' | api role/add
  printf '{"name":"herald-admin","perm":{"permType":"READWRITE","key":"%s","range_end":"%s"}}' "$prefix" "$end" | api role/grant
  printf '{"name":"herald-edge","perm":{"permType":"READ","key":"%s","range_end":"%s"}}' "$prefix" "$end" | api role/grant
  printf '{"name":"root","password":"%s"}' "$etcd_root_password" | api user/add
  printf '{"name":"herald-admin","password":"%s"}' "$etcd_admin_password" | api user/add
  printf '{"name":"herald-edge","password":"%s"}' "$etcd_edge_password" | api user/add
  printf '{"user":"root","role":"root"}' | api user/grant
  printf '{"user":"herald-admin","role":"herald-admin"}' | api user/grant
  printf '{"user":"herald-edge","role":"herald-edge"}' | api user/grant
  printf '{}' | api enable
  kill -TERM "$pid"
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  rm -f "$pids/etcd.pid" "$sock"
  : >"$DIR/etcd-auth"
}

# launch NAME: start one process as `up` does.
launch() {
  case $1 in
    nats)
      nats_conf "$DIR/nats.conf"
      start nats "$BIN/nats-server" -c "$DIR/nats.conf" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$DIR/nats" --server_name herald-local ;;
    nats-1|nats-2|nats-3) nats_node "${1#nats-}" ;;
    redis)
      redis_conf "$DIR/redis.conf"
      start redis redis-server "$DIR/redis.conf" --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" \
        --appendonly yes --save '' --daemonize no ;;
    redis-replica)
      mkdir -p "$DIR/redis-replica"
      redis_conf "$DIR/redis.conf"
      start redis-replica redis-server "$DIR/redis.conf" --bind 127.0.0.1 --port "$REDIS_REPLICA_PORT" --dir "$DIR/redis-replica" \
        --appendonly yes --save '' --daemonize no --replicaof 127.0.0.1 "$REDIS_PORT" ;;
    sentinel)
      # Sentinel rewrites its file with what it learns (the current primary),
      # so a restarted Sentinel keeps following the failed-over primary. Its
      # clients authenticate (requirepass), and it authenticates to Redis; a
      # file from before Sentinel had a password is made again.
      grep -q '^requirepass' "$DIR/sentinel.conf" 2>/dev/null || rm -f "$DIR/sentinel.conf"
      [ -s "$DIR/sentinel.conf" ] || cat >"$DIR/sentinel.conf" <<CONF
bind 127.0.0.1
port $SENTINEL_PORT
dir $DIR
requirepass "$redis_password"
sentinel monitor $REDIS_MASTER_NAME 127.0.0.1 $REDIS_PORT 1
sentinel auth-pass $REDIS_MASTER_NAME "$redis_password"
sentinel down-after-milliseconds $REDIS_MASTER_NAME 1000
sentinel failover-timeout $REDIS_MASTER_NAME 5000
CONF
      start sentinel redis-server "$DIR/sentinel.conf" --sentinel ;;
    etcd)
      etcd_auth
      # shellcheck disable=SC2046 # etcd_flags is a word list
      start etcd "$BIN/etcd" $(etcd_flags) \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" ;;
    admin) HERALD_ADMIN_TOKEN=$admin_token HERALD_ETCD_USERNAME=herald-admin HERALD_ETCD_PASSWORD=$etcd_admin_password \
      start admin "$BIN/herald-admin" --addr "127.0.0.1:$ADMIN_PORT" --ops-addr "127.0.0.1:$ADMIN_OPS_PORT" \
      --etcd-endpoints "$etcd_addr" --bootstrap-tenant "$ANON_TENANT" --nats-url "$nats_url" "${redis_flags[@]}" ;;
    session)
      local lease=()
      [ "$HA" = 1 ] && lease=(--lease-replicas 3)
      start session "$BIN/herald-session" --nats-url "$nats_url" "${redis_flags[@]}" "${lease[@]}" \
        --ops-addr "127.0.0.1:$SESSION_OPS_PORT" ;;
    edge-a) HERALD_ETCD_USERNAME=herald-edge HERALD_ETCD_PASSWORD=$etcd_edge_password \
      start edge-a "$BIN/herald-edge" --id edge-a --nats-url "${EDGE_A_NATS_URL:-$nats_url}" "${redis_flags[@]}" "${ha_flags[@]}" \
      --mqtt-addr "127.0.0.1:$EDGE_A_MQTT" --http-addr "127.0.0.1:$EDGE_A_HTTP" --ops-addr "127.0.0.1:$EDGE_A_OPS" \
      --etcd-endpoints "$etcd_addr" --anonymous-tenant "$ANON_TENANT" ;;
    edge-b) HERALD_ETCD_USERNAME=herald-edge HERALD_ETCD_PASSWORD=$etcd_edge_password \
      start edge-b "$BIN/herald-edge" --id edge-b --nats-url "${EDGE_B_NATS_URL:-$nats_url}" "${redis_flags[@]}" "${ha_flags[@]}" \
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

# ports: "VARIABLE name" for every TCP port `up` listens on (etcd's peer
# port is a unix socket).
ports() {
  local v
  for v in NATS_PORT:nats REDIS_PORT:redis ETCD_PORT:etcd ADMIN_PORT:admin ADMIN_OPS_PORT:admin \
    SESSION_OPS_PORT:session EDGE_A_MQTT:edge-a EDGE_A_HTTP:edge-a EDGE_A_OPS:edge-a \
    EDGE_B_MQTT:edge-b EDGE_B_HTTP:edge-b EDGE_B_OPS:edge-b; do
    echo "${v%%:*} ${v#*:}"
  done
  if [ "$HA" = 1 ]; then
    for v in NATS_PORT_2:nats-2 NATS_PORT_3:nats-3 NATS_ROUTE_PORT_1:nats-1 NATS_ROUTE_PORT_2:nats-2 \
      NATS_ROUTE_PORT_3:nats-3 REDIS_REPLICA_PORT:redis-replica SENTINEL_PORT:sentinel; do
      echo "${v%%:*} ${v#*:}"
    done
  fi
}

# port_owner PORT: who listens on TCP PORT, on any address, as "pid N
# (command line)"; fails when nobody does. From /proc, so that it needs
# neither ss nor lsof: the listening socket's inode in /proc/net/tcp{,6},
# then the process holding a descriptor of it.
port_owner() {
  local hex inode fd pid
  hex=$(printf '%04X' "$1")
  inode=$(awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10; exit }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null)
  [ -n "$inode" ] || return 1
  fd=$(find /proc/[0-9]*/fd -maxdepth 1 -lname "socket:\[$inode\]" -print -quit 2>/dev/null || true)
  if [ -z "$fd" ]; then
    echo "a process this user cannot see (as root: ss -ltnp 'sport = :$1')"
    return 0
  fi
  pid=${fd#/proc/} pid=${pid%%/*}
  echo "pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | tr -s ' ' | sed 's/ $//' | cut -c1-120))"
}

# ports_free: every port `up` needs is free, or it says which is taken by
# whom and stops before starting anything. A distribution's service (Debian
# starts redis-server and mosquitto on 6379 and 1883) is the usual owner.
ports_free() {
  local v name port owner taken=0 service=0
  while read -r v name; do
    port=${!v}
    owner=$(port_owner "$port") || continue
    echo "cluster: port $port ($v, for $name) is taken by $owner" >&2
    case $owner in *redis-server*|*mosquitto*) service=1 ;; esac
    taken=1
  done < <(ports)
  [ $taken = 1 ] || return 0
  echo "cluster: nothing started. Stop what holds those ports, or move the cluster: each port is an" \
    "environment variable (e.g. REDIS_PORT=16379 make cluster-up)." >&2
  if [ $service = 1 ]; then
    echo "cluster: a Redis or Mosquitto of the system (Debian starts them as services)? They stop with:" \
      "systemctl disable --now redis-server mosquitto" >&2
  fi
  exit 1
}

# running: stops `up` when this state directory's cluster already runs.
running() {
  [ -d "$pids" ] || return 0
  local f live=()
  for f in "$pids"/*.pid; do
    [ -f "$f" ] || continue
    if alive "$(cat "$f")"; then live+=("$(basename "$f" .pid)"); fi
  done
  [ ${#live[@]} -eq 0 ] && return 0
  echo "cluster: already running from $DIR (${live[*]}): make cluster-down first" >&2
  exit 1
}

up() {
  for b in nats-server etcd herald-edge herald-session herald-admin; do
    [ -x "$BIN/$b" ] || { echo "cluster: $BIN/$b missing: run 'make build servers'" >&2; exit 1; }
  done
  command -v redis-server >/dev/null || { echo "cluster: redis-server missing: run 'make cluster-deps'" >&2; exit 1; }
  command -v curl >/dev/null || { echo "cluster: curl missing (it sets up etcd's users): run 'make cluster-deps'" >&2; exit 1; }
  running
  ports_free
  trap 'echo "cluster: start failed, stopping what was started" >&2; down' ERR
  secrets
  mkdir -p "$pids" "$logs" "$DIR/nats" "$DIR/redis"

  local backing=(nats redis etcd)
  [ "$HA" = 1 ] && backing=(nats-1 nats-2 nats-3 redis redis-replica etcd)
  [ -f "$DIR/etcd-auth" ] || echo "cluster: first start in $DIR: setting up etcd's users (a few seconds)"
  echo "cluster: starting ${backing[*]}; waiting for their ports (at most 15 s each)"
  for name in "${backing[@]}"; do launch "$name"; done
  for name in "${backing[@]}"; do wait_port "$name" "$(port_of "$name")"; done
  if [ "$HA" = 1 ]; then
    launch sentinel
    wait_port sentinel "$SENTINEL_PORT"
  fi

  echo "cluster: starting admin, session, edge-a, edge-b; waiting for their ports"
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
  credentials (mode 0600) in $DIR: NATS user herald (nats-password), Redis (redis-password),
  etcd users root, herald-admin, herald-edge (etcd-*-password)
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

# stop NAME PID: SIGTERM, then wait for it to exit, saying what it waits
# for, and SIGKILL after a bound: an edge drains first, asking its clients
# to leave over the first half of its --drain-timeout (20 s) and exiting
# once they have, or at the timeout; the others stop at once.
stop() {
  local name=$1 pid=$2 t0=$EPOCHREALTIME bound=10 what="waiting for it to exit"
  case $name in edge-*) bound=25 what="it drains its clients, up to 20 s" ;; esac
  printf 'cluster: stopping %s (pid %s): SIGTERM; %s... ' "$name" "$pid" "$what"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((bound * 10))); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    echo "still running after $bound s: SIGKILL"
  else
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "stopped in %.1f s\n", b - a }'
  fi
}

down() {
  [ -d "$pids" ] || { echo "cluster: nothing started from $DIR"; return 0; }
  # Edges first so they drain before the backbone goes.
  for name in edge-a edge-b admin session etcd sentinel redis-replica redis nats nats-1 nats-2 nats-3; do
    local f=$pids/$name.pid
    [ -f "$f" ] || continue
    local pid; pid=$(cat "$f")
    if alive "$pid"; then stop "$name" "$pid"; fi
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
  start) [ -n "${2:-}" ] || { echo "usage: $0 start NAME" >&2; exit 2; }; secrets; mkdir -p "$pids" "$logs"; start_one "$2" ;;
  *) echo "usage: $0 up|down|status|start NAME" >&2; exit 2 ;;
esac
