#!/usr/bin/env bash
# make bench: the same load scenarios against Mosquitto (Debian), nats-server's
# own MQTT listener and Herald (embedded default; local cluster with one and
# two edges), on loopback, one after the other, then the store benchmarks
# against real Redis, and docs/benchmarks.md from it all.
# Bounded: every scenario has a fixed duration; how long the whole run
# takes is in the Makefile (make help).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$root/bin
OUT=${BENCH_OUT:-$root/data/bench}
DUR=${BENCH_DURATION:-10s}
# 50,000 idle connections need that many descriptors in the server and in
# the load generator; where the hard limit is lower, as many as it allows.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 52000 ]; then def_idle=50000; else def_idle=$((hard - 2000)); fi
IDLE=${BENCH_IDLE_CONNS:-$def_idle}
FANOUT_SUBS=${BENCH_FANOUT_SUBS:-1000}
FANIN_PUBS=${BENCH_FANIN_PUBS:-1000}
rm -rf "$OUT"; mkdir -p "$OUT"
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()
PY
}
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
stop() { kill -INT "$1" 2>/dev/null || true; for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null || true; }

lg() { # target scenario args...
  local target=$1 scenario=$2; shift 2
  echo "== $target / $scenario" >&2
  "$BIN/loadgen" "$@" --name "$target/$scenario" > "$OUT/$target--$scenario.json" || echo "   failed" >&2
}

# The throughput, fan-out and fan-in scenarios against one MQTT address.
# MQTT 3.1.1 throughout, since nats-server's listener speaks nothing newer.
mqtt_scenarios() { # target mqttaddr pid
  local t=$1 a=$2 p=$3 v=(--version 3)
  lg "$t" s1-qos0 run "${v[@]}" --mqtt "$a" --pid "$p" --duration "$DUR" --qos 0 --size 100
  lg "$t" s1-qos1 run "${v[@]}" --mqtt "$a" --pid "$p" --duration "$DUR" --qos 1 --size 100
  lg "$t" s1-latency run "${v[@]}" --mqtt "$a" --pid "$p" --duration "$DUR" --qos 1 --size 100 --rate 1000
  lg "$t" s2-fanout run "${v[@]}" --mqtt "$a" --pid "$p" --duration "$DUR" --pattern fanout --subs "$FANOUT_SUBS" --qos 0 --size 100 --rate 50
  lg "$t" s2-fanout-max run "${v[@]}" --mqtt "$a" --pid "$p" --duration "$DUR" --pattern fanout --subs 100 --qos 0 --size 100
  lg "$t" s3-fanin run "${v[@]}" --mqtt "$a" --pid "$p" --duration "$DUR" --pattern fanin --pubs "$FANIN_PUBS" --qos 0 --size 100 --rate 20
  lg "$t" s6-flood run "${v[@]}" --mqtt "$a" --pid "$p" --duration "$DUR" --pattern fanin --pubs 10 --qos 0 --size 100
}

# --- Mosquitto
port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n' "$port" > "$OUT/mosquitto.conf"
/usr/sbin/mosquitto -c "$OUT/mosquitto.conf" > "$OUT/mosquitto.log" 2>&1 & mp=$!; pids+=("$mp"); wait_port "$port"
mqtt_scenarios mosquitto "127.0.0.1:$port" "$mp"
stop "$mp"
/usr/sbin/mosquitto -c "$OUT/mosquitto.conf" > "$OUT/mosquitto.log" 2>&1 & mp=$!; pids+=("$mp"); wait_port "$port"
lg mosquitto s4-idle-mqtt idle --proto mqtt --addr "127.0.0.1:$port" --conns "$IDLE" --pid "$mp"
stop "$mp"
/usr/sbin/mosquitto -c "$OUT/mosquitto.conf" > "$OUT/mosquitto.log" 2>&1 & mp=$!; pids+=("$mp"); wait_port "$port"
lg mosquitto s4-idle-mqtt-sub idle --proto mqtt --subscribe --addr "127.0.0.1:$port" --conns "$IDLE" --pid "$mp"
stop "$mp"

# --- nats-server's MQTT listener
port=$(free_port); nport=$(free_port)
printf 'listen: 127.0.0.1:%s\nserver_name: bench\njetstream { store_dir: "%s/nats" }\nmqtt { listen: 127.0.0.1:%s }\n' "$nport" "$OUT" "$port" > "$OUT/nats.conf"
"$BIN/nats-server" -c "$OUT/nats.conf" > "$OUT/nats.log" 2>&1 & np=$!; pids+=("$np"); wait_port "$port"
mqtt_scenarios nats-mqtt "127.0.0.1:$port" "$np"
stop "$np"

# --- Herald, embedded default
herald() { # datadir -> sets hp, hm, hh
  local d=$1; hm=$(free_port); hh=$(free_port)
  HERALD_MQTT_ADDR=127.0.0.1:$hm HERALD_HTTP_ADDR=127.0.0.1:$hh HERALD_ADMIN_ADDR=127.0.0.1:$(free_port) \
  HERALD_OPS_ADDR=127.0.0.1:$(free_port) \
    "$BIN/herald" --data-dir "$d" > "$d.log" 2>&1 & hp=$!; pids+=("$hp"); wait_port "$hm"; wait_port "$hh"
}
herald "$OUT/herald1"
mqtt_scenarios herald "127.0.0.1:$hm" "$hp"
# Latency at half of the QoS 1 throughput Herald just reached (the target's
# load), and Mosquitto again at the same rate, for comparison.
half=$(python3 -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["received_per_sec"] / 2)))' "$OUT/herald--s1-qos1.json" 2>/dev/null || echo 1000)
echo "$half" > "$OUT/s1-half.rate"
lg herald s1-half run --version 3 --mqtt "127.0.0.1:$hm" --pid "$hp" --duration "$DUR" --qos 1 --size 100 --rate "$half"
lg herald s5-mixed run --mqtt "127.0.0.1:$hm" --http "http://127.0.0.1:$hh" --pid "$hp" --duration "$DUR" \
  --pattern fanout --subs 300 --sub-proto sse,ws,mqtt --qos 1 --rate 200
stop "$hp"
herald "$OUT/herald2"
lg herald s4-idle-mqtt idle --proto mqtt --addr "127.0.0.1:$hm" --conns "$IDLE" --pid "$hp"
stop "$hp"
herald "$OUT/herald2s"
lg herald s4-idle-mqtt-sub idle --proto mqtt --subscribe --addr "127.0.0.1:$hm" --conns "$IDLE" --pid "$hp"
stop "$hp"
herald "$OUT/herald3"
lg herald s4-idle-sse idle --proto sse --addr "http://127.0.0.1:$hh" --conns "$IDLE" --pid "$hp"
stop "$hp"
herald "$OUT/herald4"
lg herald s4-idle-ws idle --proto ws --addr "http://127.0.0.1:$hh" --conns "$IDLE" --pid "$hp"
stop "$hp"
# --- Herald, embedded default with a WebTransport listener (a self-signed
# ECDSA certificate valid 10 days, trusted by its hash): the native protocol
# over WebTransport against the same over WebSocket, on one server.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 10 -nodes -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$OUT/wt.key" -out "$OUT/wt.crt" 2>/dev/null
export HERALD_WEBTRANSPORT_CERT=$OUT/wt.crt HERALD_WEBTRANSPORT_KEY=$OUT/wt.key
HERALD_WEBTRANSPORT_ADDR=127.0.0.1:$(free_port); export HERALD_WEBTRANSPORT_ADDR
herald "$OUT/herald5"
for p in ws wt; do
  lg herald s6-1to1-$p run --mqtt "127.0.0.1:$hm" --http "http://127.0.0.1:$hh" --pid "$hp" --duration "$DUR" --sub-proto $p --qos 1 --size 100
  lg herald s6-fanout-$p run --mqtt "127.0.0.1:$hm" --http "http://127.0.0.1:$hh" --pid "$hp" --duration "$DUR" \
    --pattern fanout --subs 300 --sub-proto $p --qos 0 --size 100 --rate 100
done
stop "$hp"
herald "$OUT/herald6"
lg herald s4-idle-wt idle --proto wt --addr "http://127.0.0.1:$hh" --conns "$(( IDLE < 5000 ? IDLE : 5000 ))" --pid "$hp"
stop "$hp"
unset HERALD_WEBTRANSPORT_ADDR HERALD_WEBTRANSPORT_CERT HERALD_WEBTRANSPORT_KEY

port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n' "$port" > "$OUT/mosquitto.conf"
/usr/sbin/mosquitto -c "$OUT/mosquitto.conf" > "$OUT/mosquitto.log" 2>&1 & mp=$!; pids+=("$mp"); wait_port "$port"
lg mosquitto s1-half run --version 3 --mqtt "127.0.0.1:$port" --pid "$mp" --duration "$DUR" --qos 1 --size 100 --rate "$half"
stop "$mp"

# --- Herald, local cluster: one edge, then two edges
cdir="$OUT/cluster"
ports=(); for i in $(seq 1 12); do ports+=("$(free_port)"); done
export HERALD_CLUSTER_DIR=$cdir NATS_PORT=${ports[0]} REDIS_PORT=${ports[1]} ETCD_PORT=${ports[2]} ETCD_PEER_PORT=${ports[3]} \
  ADMIN_PORT=${ports[4]} SESSION_OPS_PORT=${ports[5]} EDGE_A_MQTT=${ports[6]} EDGE_A_HTTP=${ports[7]} EDGE_A_OPS=${ports[8]} \
  EDGE_B_MQTT=${ports[9]} EDGE_B_HTTP=${ports[10]} EDGE_B_OPS=${ports[11]}
bash "$root/deploy/local/cluster.sh" up > "$OUT/cluster-up.log"
trap 'bash "$root/deploy/local/cluster.sh" down >/dev/null; cleanup' EXIT
ea=$(cat "$cdir/pids/edge-a.pid"); eb=$(cat "$cdir/pids/edge-b.pid")
lg cluster-1edge s1-qos0 run --version 3 --mqtt "127.0.0.1:$EDGE_A_MQTT" --pid "$ea" --duration "$DUR" --qos 0 --size 100
lg cluster-1edge s1-qos1 run --version 3 --mqtt "127.0.0.1:$EDGE_A_MQTT" --pid "$ea" --duration "$DUR" --qos 1 --size 100
lg cluster-2edge s1-qos1 run --version 3 --mqtt "127.0.0.1:$EDGE_A_MQTT,127.0.0.1:$EDGE_B_MQTT" --pubs 2 --subs 2 --pid "$ea,$eb" --duration "$DUR" --qos 1 --size 100
lg cluster-2edge s5-mixed run --mqtt "127.0.0.1:$EDGE_A_MQTT" --http "http://127.0.0.1:$EDGE_A_HTTP,http://127.0.0.1:$EDGE_B_HTTP" \
  --pid "$ea,$eb" --duration "$DUR" --pattern fanout --subs 300 --sub-proto sse,ws,mqtt --qos 1 --rate 200
bash "$root/deploy/local/cluster.sh" down > /dev/null

# Store operations against the same kind of Redis (real servers, started by the benchmarks).
echo "== store benchmarks" >&2
(cd "$root/pkg" && go test -run '^$' -bench . -benchtime 500x ./store/) > "$OUT/store-bench.txt" 2>&1 || echo "   store benchmarks failed" >&2

# The load report replaces the file, except the hand-written sections between
# their markers: the store section (make bench-store) and the analysis.
store=$(sed -n '/store-benchmarks:begin/,/store-benchmarks:end/p' "$root/docs/benchmarks.md" 2>/dev/null || true)
analysis=$(sed -n '/bench-analysis:begin/,/bench-analysis:end/p' "$root/docs/benchmarks.md" 2>/dev/null || true)
{ "$BIN/loadgen" report --dir "$OUT" --commit "$(git -C "$root" rev-parse --short HEAD)"
  printf '## Store benchmarks of this run\n\n`go test -bench` in pkg/store, raw output:\n\n```\n%s\n```\n' "$(grep -E '^(Benchmark|goos|goarch|cpu|ok|FAIL)' "$OUT/store-bench.txt")"
  if [ -n "$store" ]; then printf '\n%s\n' "$store"; fi
  if [ -n "$analysis" ]; then printf '\n%s\n' "$analysis"; fi; } > "$OUT/benchmarks.md"
cp "$OUT/benchmarks.md" "$root/docs/benchmarks.md"
echo "wrote docs/benchmarks.md" >&2
