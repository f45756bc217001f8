#!/usr/bin/env bash
# Runs make test's phases one after the other and says where it is:
#
#   tools/phases.sh TARGET:USUAL [TARGET:USUAL ...]
#   tools/phases.sh --total TARGET:USUAL...     the sum of USUAL, in minutes
#
# Each TARGET is a make target of its own (so `make test-unit` runs one
# phase), run with IN_TEST=1 (the Makefile then skips what an earlier
# phase did); USUAL is how long it took on 2 quiet cores (the Makefile says
# when it was measured). Before anything runs the plan is printed; each
# phase opens with its number, description (the target's line of `make
# help`) and usual time, says every HEARTBEAT seconds (default 120)
# that it is still running and for how long, and closes with the time it
# took; at the end, or at the first failure, a table of every phase.
set -euo pipefail

# seconds D: a duration written 90s, 6m or 1m30s, in seconds.
seconds() {
  local d=$1 s=0
  [[ $d =~ ^(([0-9]+)m)?(([0-9]+)s)?$ ]] || { echo "phases: bad duration $d" >&2; exit 2; }
  echo $((${BASH_REMATCH[2]:-0} * 60 + ${BASH_REMATCH[4]:-0}))
}

# --total: the sum of the usual times, for make help.
if [ "${1:-}" = --total ]; then
  shift
  total=0
  for p in "$@"; do total=$((total + $(seconds "${p#*:}"))); done
  echo "$(((total + 30) / 60)) min"
  exit 0
fi

MAKE=${MAKE:-make}
HEARTBEAT=${HEARTBEAT:-120}
[ $# -gt 0 ] || { echo "usage: $0 TARGET:USUAL..." >&2; exit 2; }

tty=0
[ -t 1 ] && tty=1
clock() { local s=$1; printf '%dm%02ds' $((s / 60)) $((s % 60)); }
# describe TARGET: its line of `make help` (the `## TARGET:` comment, with
# the variables in it expanded).
help=$(MAKEFLAGS= "$MAKE" --no-print-directory -s help 2>/dev/null || true)
describe() { awk -v t="$1" '$1 == "make" && $2 == t { sub(/^make +[^ ]+ +/, ""); print; exit }' <<<"$help"; }

targets=() usual=()
for p in "$@"; do
  seconds "${p#*:}" >/dev/null
  targets+=("${p%%:*}") usual+=("${p#*:}")
done
n=${#targets[@]}

echo "make test: $n phases, one after the other:"
for i in "${!targets[@]}"; do
  printf '  %d. %-12s usually ~%-5s %s\n' $((i + 1)) "${targets[$i]}" "${usual[$i]}" "$(describe "${targets[$i]}")"
done

start=$SECONDS
took=()
beat=""
stop_beat() {
  if [ -n "$beat" ]; then
    kill "$beat" 2>/dev/null || true
    wait "$beat" 2>/dev/null || true
    beat=""
  fi
}
trap stop_beat EXIT

summary() { # status
  echo "make test $1 after $(clock $((SECONDS - start))):"
  for i in "${!targets[@]}"; do
    local t="not run"
    [ -z "${took[$i]:-}" ] || t=${took[$i]}
    printf '  %d. %-12s %-10s (usually ~%s)\n' $((i + 1)) "${targets[$i]}" "$t" "${usual[$i]}"
  done
}

for i in "${!targets[@]}"; do
  t=${targets[$i]} u=${usual[$i]}
  echo
  echo "── make test $((i + 1))/$n: $t — $(describe "$t") (usually ~$u) ──"
  t0=$SECONDS
  # The heartbeat: a line every HEARTBEAT seconds while the phase runs; on
  # a terminal it first clears the line (a build's progress line).
  (
    trap 'kill $sp 2>/dev/null; exit 0' TERM
    while :; do
      sleep "$HEARTBEAT" & sp=$!
      wait $sp
      [ $tty = 0 ] || printf '\r\033[K'
      echo "   … $t still running: $(clock $((SECONDS - t0))) so far (usually ~$u; make test $(clock $((SECONDS - start))))"
    done
  ) &
  beat=$!
  set +e
  "$MAKE" --no-print-directory "$t" IN_TEST=1
  rc=$?
  set -e
  stop_beat
  if [ $rc != 0 ]; then
    took[$i]="FAILED after $(clock $((SECONDS - t0)))"
    echo "── make test $((i + 1))/$n: $t FAILED after $(clock $((SECONDS - t0))) ──"
    echo
    summary FAILED
    exit $rc
  fi
  took[$i]=$(clock $((SECONDS - t0)))
  echo "── make test $((i + 1))/$n: $t passed in ${took[$i]} (usually ~$u; make test so far $(clock $((SECONDS - start)))) ──"
done
echo
summary passed
