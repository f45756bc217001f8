#!/usr/bin/env bash
# make fuzz-ci: every fuzz target briefly, the form make test runs.
#
#   tools/fuzz-ci.sh FUZZTIME DIR:FuzzTarget...
#
# `go test -fuzz` builds one test binary per target, one after the other,
# each with every package it imports instrumented for coverage (the
# dependencies too, so a cold build cache compiles the whole tree a second
# time). Here the test binaries of all the targets' packages are built at
# once by one `go test -c`, with only Herald's own packages instrumented
# (the parsers whose coverage guides the fuzzing; the dependencies come from
# the build cache the other phases filled), and each target then runs from
# its binary, in its package's directory, with the corpus cache `go test
# -fuzz` uses. `make fuzz` keeps go test's full instrumentation for long
# runs. Measured: README, "make test".
set -euo pipefail

GO=${GO:-go}
[ $# -ge 2 ] || { echo "usage: $0 FUZZTIME DIR:FuzzTarget..." >&2; exit 2; }
fuzztime=$1
shift

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

dirs=()
for t in "$@"; do
  d=${t%%:*}
  case " ${dirs[*]} " in *" ./$d "*) ;; *) dirs+=("./$d") ;; esac
done

t0=$SECONDS
echo "fuzz-ci: building the test binaries of ${#dirs[@]} packages at once (Herald's packages instrumented for fuzzing)"
$GO test -c -o "$out/" -gcflags='github.com/heraldmq/herald/...=-d=libfuzzer' "${dirs[@]}"
echo "fuzz-ci: built in $((SECONDS - t0)) s; fuzzing ${#} targets for $fuzztime each"

cache=$($GO env GOCACHE)/fuzz
for t in "$@"; do
  d=${t%%:*} fn=${t##*:}
  echo "== $d $fn"
  pkg=$(cd "$d" && $GO list -f '{{.ImportPath}}' .)
  (cd "$d" && "$out/$(basename "$d").test" -test.run='^$' -test.fuzz="^$fn\$" -test.fuzztime="$fuzztime" \
    -test.fuzzcachedir="$cache/$pkg")
done
echo "fuzz-ci: done in $((SECONDS - t0)) s"
