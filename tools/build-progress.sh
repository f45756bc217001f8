#!/usr/bin/env bash
# Builds one Go program and shows what it is doing in a few lines a person
# can read, instead of minutes of silence or a screen of `go: downloading`:
#
#   tools/build-progress.sh OUTPUT MODULE_DIR PACKAGE
#   tools/build-progress.sh bin/herald services/herald ./cmd/herald
#
# First the packages to compile are counted (`go list -deps`, which also
# downloads the modules they need: shown as one counting line); when that
# is most of the program (a first build, a new Go), it says roughly how long
# it will take. Then `go build -v` runs, its package lines summarised as
# one progress line that rewrites itself on a terminal, or a line every
# quarter elsewhere (logs, CI); anything else go prints (an error) is shown
# as it is. It ends with one line: built, how many packages, how long.
set -euo pipefail

out=$1 dir=$2 pkg=$3
GO=${GO:-go}
# LDFLAGS, if set, go to the linker (the Makefile's version stamps); go
# list gets them too, or it would call the program stale every time.
flags=()
[ -z "${LDFLAGS:-}" ] || flags=(-ldflags "$LDFLAGS")
name=${out#"$PWD"/}

# Packages compiled per minute on 2 cores, from the cold builds of
# bin/herald measured here (COMPILE_RATE in the Makefile says when); used
# only to say roughly how long a first build takes.
rate=${COMPILE_RATE:-350}

tty=0
[ -t 1 ] && tty=1
cols=80
if [ $tty = 1 ]; then cols=$(tput cols 2>/dev/null || echo 80); fi

since() { local s=$((SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# line TEXT: the progress line; on a terminal it replaces the previous one.
line() {
  if [ $tty = 1 ]; then
    local t=$1
    [ ${#t} -lt "$cols" ] || t=${t:0:$((cols - 1))}
    printf '\r\033[K%s' "$t"
  else
    printf '%s\n' "$1"
  fi
}
# say TEXT: a line that stays (clears a progress line first).
say() {
  if [ $tty = 1 ]; then printf '\r\033[K'; fi
  printf '%s\n' "$1"
}

cd "$dir"
start=$SECONDS
list=$(mktemp)
trap 'rm -f "$list"' EXIT

# 1. What is there to compile (and the module downloads that needs).
set +e
$GO list "${flags[@]}" -deps -f '{{if .Stale}}{{.ImportPath}}{{end}}' "$pkg" 2>&1 >"$list" | {
  n=0
  while IFS= read -r l; do
    case $l in
      "go: downloading "*)
        n=$((n + 1))
        line "$name: downloading modules: $n ($(since "$start"); ${l#go: downloading })" ;;
      *) say "$l" ;;
    esac
  done
  [ $n = 0 ] || say "$name: downloaded $n modules in $(since "$start")"
}
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || exit "$rc"
total=$(grep -c . "$list" || true)
total=$((total > 0 ? total : 1))
if [ "$total" -ge 100 ]; then
  mins=$(((total + rate / 2) / rate))
  say "$name: compiling $total packages; a first build takes about $((mins > 0 ? mins : 1)) min on 2 quiet cores, more on busy ones (later builds take seconds)"
fi

# 2. The build, one progress line. go build rewrites its output every
# time, so its checksum tells whether the program changed (not `go tool
# buildid`: Go builds that tool on first use, which on a cold cache
# compiles part of the standard library out of sight of the count).
before=$(cksum 2>/dev/null <"$out" || true)
t0=$SECONDS
set +e
$GO build "${flags[@]}" -v -o "$out" "$pkg" 2>&1 | {
  n=0 next=$((total / 4))
  while IFS= read -r l; do
    case $l in
      "go: downloading "*) line "$name: downloading ${l#go: downloading }" ;;
      *[!A-Za-z0-9_./~+-]* | "") say "$l" ;; # not an import path: an error, or a message of go's
      *)
        n=$((n + 1))
        if [ $tty = 1 ]; then
          line "$name: compiling [$n/$total] $(since "$t0")  $l"
        elif [ $n -ge $next ] && [ $n -lt "$total" ]; then
          line "$name: compiling [$n/$total] $(since "$t0")"
          next=$((next + total / 4))
        fi ;;
    esac
  done
  if [ $tty = 1 ]; then printf '\r\033[K'; fi
  echo $n >"$list"
}
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
  echo "$name: build failed after $(since "$start")" >&2
  exit "$rc"
fi
compiled=$(cat "$list")
if [ "$(cksum 2>/dev/null <"$out" || true)" != "$before" ]; then
  what="$compiled package$([ "$compiled" = 1 ] || echo s) compiled"
  [ "$compiled" != 0 ] || what="from the build cache"
  say "$name: built in $(since "$start") ($what)"
else
  say "$name: up to date"
fi
