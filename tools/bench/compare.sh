#!/usr/bin/env bash
# make bench-compare BASE=<commit>: Herald's embedded default at BASE beside
# the working tree's, on the same machine in one run, to tell whether a
# change made Herald slower. Each scenario runs on both builds one after the
# other, ROUNDS times alternating the order (base, head, head, base, ...), so
# that a load from elsewhere on the machine weighs on both alike; the table
# gives each build's median over the rounds and head/base.
# Bounded: scenarios × 2 × ROUNDS × BENCH_DURATION, plus two builds.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
BASE=${BASE:?BASE=<commit> is required}
DUR=${BENCH_DURATION:-10s}
ROUNDS=${ROUNDS:-3}
IDLE=${BENCH_IDLE_CONNS:-5000}
OUT=${BENCH_OUT:-$root/data/bench-compare}
rm -rf "$OUT"; mkdir -p "$OUT/bin"
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

wt=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  git -C "$root" worktree remove --force "$wt" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== building herald at $BASE (base) and at the working tree (head)" >&2
git -C "$root" worktree add -q --detach "$wt" "$BASE"
(cd "$wt/services/herald" && go build -o "$OUT/bin/herald-base" ./cmd/herald)
(cd "$root/services/herald" && go build -o "$OUT/bin/herald-head" ./cmd/herald)
(cd "$root/tools/loadgen" && go build -o "$OUT/bin/loadgen" .)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
stop() { kill -INT "$1" 2>/dev/null || true; for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null || true; }

start() { # build datadir -> hp hm hh
  hm=$(free_port); hh=$(free_port)
  HERALD_MQTT_ADDR=127.0.0.1:$hm HERALD_HTTP_ADDR=127.0.0.1:$hh HERALD_ADMIN_ADDR=127.0.0.1:$(free_port) \
  HERALD_OPS_ADDR=127.0.0.1:$(free_port) \
    "$OUT/bin/herald-$1" --data-dir "$2" > "$2.log" 2>&1 & hp=$!; pids+=("$hp"); wait_port "$hm"; wait_port "$hh"
}

scenario() { # build round name args...
  local b=$1 r=$2 s=$3; shift 3
  local d="$OUT/$b-$s-$r"
  start "$b" "$d"
  echo "== $b / $s / round $r" >&2
  local args=("$@")
  args=("${args[@]//@MQTT@/127.0.0.1:$hm}"); args=("${args[@]//@HTTP@/http://127.0.0.1:$hh}")
  "$OUT/bin/loadgen" "${args[@]}" --pid "$hp" --name "$b/$s" > "$OUT/$b--$s--$r.json" || echo "   failed" >&2
  stop "$hp"
}

declare -A SC=(
  [s1-qos0]="run --version 3 --mqtt @MQTT@ --duration $DUR --qos 0 --size 100"
  [s1-qos1]="run --version 3 --mqtt @MQTT@ --duration $DUR --qos 1 --size 100"
  [s1-latency]="run --version 3 --mqtt @MQTT@ --duration $DUR --qos 1 --size 100 --rate 1000"
  [s2-fanout-max]="run --version 3 --mqtt @MQTT@ --duration $DUR --pattern fanout --subs 100 --qos 0 --size 100"
  [s5-mixed]="run --mqtt @MQTT@ --http @HTTP@ --duration $DUR --pattern fanout --subs 300 --sub-proto sse,ws,mqtt --qos 1 --rate 200"
  [s4-idle-mqtt]="idle --proto mqtt --addr @MQTT@ --conns $IDLE"
  [s4-idle-ws]="idle --proto ws --addr @HTTP@ --conns $IDLE"
)
order=(s1-qos0 s1-qos1 s1-latency s2-fanout-max s5-mixed s4-idle-mqtt s4-idle-ws)
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then builds=(base head); else builds=(head base); fi
  for s in "${order[@]}"; do
    read -r -a a <<< "${SC[$s]}"
    for b in "${builds[@]}"; do scenario "$b" "$r" "$s" "${a[@]}"; done
  done
done

python3 - "$OUT" "$BASE" "$(git -C "$root" rev-parse --short HEAD)" "${order[@]}" <<'PY' | tee "$OUT/compare.md"
import json, glob, statistics, sys, os
out, base, head, order = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def load(b, s):
    rs = []
    for f in sorted(glob.glob(os.path.join(out, f"{b}--{s}--*.json"))):
        try: rs.append(json.load(open(f)))
        except Exception: pass
    return rs
def med(xs): return statistics.median(xs) if xs else float("nan")
print(f"Herald embedded default, base {base} vs head {head} (working tree), median of the rounds, same machine, same run.\n")
print("| scenario | measure | base | head | head/base | lost (base/head) |")
print("|---|---|---|---|---|---|")
for s in order:
    B, H = load("base", s), load("head", s)
    if s.startswith("s4-idle"):
        rows = [("bytes per connection", lambda r: r.get("bytes_per_conn", 0))]
    else:
        rows = [("delivered/s", lambda r: r.get("received_per_sec", 0)),
                ("p99 ms", lambda r: r.get("latency_us", {}).get("p99", 0) / 1000)]
    for name, f in rows:
        b, h = med([f(r) for r in B]), med([f(r) for r in H])
        ratio = h / b if b else float("nan")
        lost = "" if s.startswith("s4-idle") else f"{sum(r.get('lost',0) for r in B)}/{sum(r.get('lost',0) for r in H)}"
        print(f"| {s} | {name} | {b:.1f} | {h:.1f} | {ratio:.2f} | {lost} |")
PY
echo "wrote $OUT/compare.md" >&2
