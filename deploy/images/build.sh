#!/usr/bin/env bash
# build.sh builds every image Herald's chart and its tests run, offline and
# without Docker, into $OUT as image tarballs (docker save format, which
# `crane push` and `ctr images import` read), and pushes them when
# IMAGE_PUSH=1:
#
#   herald, herald-edge, herald-session, herald-admin   Herald, built by ko
#   nats-server, etcd      the dependencies, built by ko from the versions
#                          pinned in pkg/go.mod (as `make servers` builds them)
#   redis                  Debian's redis-server and the libraries it links
#   curl                   Debian's curl and busybox (sh, sed, date): the
#                          helm test pod's image on a cluster that cannot
#                          pull curlimages/curl
#   pause                  the pods' sandbox process (tools/images/pause)
#
# Every image sits on one base made here with crane: /etc/passwd and
# /etc/group with the nonroot user 65532, /tmp, and the host's CA bundle; it
# runs as 65532. ko labels each image (org.opencontainers.image.*) and
# writes its SPDX SBOM to $OUT/sbom. The base is served to ko by a crane
# registry on a free loopback port for the length of the build.
#
# Environment: KO, CRANE (the tools), OUT, IMAGE_REGISTRY (the images'
# repository prefix), IMAGE_TAG (Herald's images' tag), IMAGE_PUSH=1 (push
# every image to IMAGE_REGISTRY, over plain HTTP when it is on loopback),
# IMAGES (a subset of the names above), HERALD_LDFLAGS (linker flags of
# Herald's programs: the version stamps --version prints, from the Makefile).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
: "${KO:?path of ko}" "${CRANE:?path of crane}"
OUT=${OUT:-$ROOT/bin/images}
IMAGE_REGISTRY=${IMAGE_REGISTRY:-}
# The images' names: <registry>/<name>, or the bare <name> (as the chart's
# image.registry "" says).
PREFIX=${IMAGE_REGISTRY:+${IMAGE_REGISTRY%/}/}
IMAGE_TAG=${IMAGE_TAG:-dev}
IMAGE_PUSH=${IMAGE_PUSH:-0}
IMAGES=${IMAGES:-herald herald-edge herald-session herald-admin nats-server etcd redis curl pause}
SOURCE=https://github.com/heraldmq/herald

mkdir -p "$OUT/sbom"
# Scratch space beside the output (a shared /tmp may be swept by others).
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
REG_PID=
cleanup() {
	if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# The loopback registry that serves the base image to ko and crane.
mkdir -p "$WORK/registry"
"$CRANE" registry serve --address 127.0.0.1:0 --disk "$WORK/registry" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
	port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$WORK/registry.log")
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || { cat "$WORK/registry.log" >&2; echo "build.sh: the loopback registry did not start" >&2; exit 1; }
REG=127.0.0.1:$port
BASE=$REG/base/static:latest

# base: a root file system with no programs, like distroless/static.
mkdir -p "$WORK/base/etc/ssl/certs" "$WORK/base/tmp" "$WORK/base/home/nonroot"
cat >"$WORK/base/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$WORK/base/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
echo 'hosts: files dns' >"$WORK/base/etc/nsswitch.conf"
cp /etc/ssl/certs/ca-certificates.crt "$WORK/base/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$WORK/base/tmp"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$WORK/base" -cf "$WORK/base.tar" \
	--exclude=./home/nonroot .
tar --mtime=@0 --owner=65532 --group=65532 --numeric-owner -C "$WORK/base" -rf "$WORK/base.tar" ./home/nonroot
"$CRANE" append --oci-empty-base -f "$WORK/base.tar" -t "$REG/base/static:layer" >/dev/null
"$CRANE" mutate "$REG/base/static:layer" --set-platform linux/amd64 --user 65532:65532 \
	--env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt -t "$BASE" >/dev/null

want() { [[ " $IMAGES " == *" $1 "* ]]; }

# ko_image NAME TAG DIR IMPORTPATH DESCRIPTION [GOWORK]: a Go program as
# image NAME:TAG, built in module DIR. (ko splits a label flag at commas:
# the descriptions have none.)
ko_image() {
	local name=$1 tag=$2 dir=$3 path=$4 desc=$5 gowork=${6:-} ldflags=()
	want "$name" || return 0
	case $name in herald*) [ -z "${HERALD_LDFLAGS:-}" ] || ldflags=(--ldflags "$HERALD_LDFLAGS") ;; esac
	echo "ko build $path -> ${PREFIX}$name:$tag"
	(cd "$ROOT/$dir" && env ${gowork:+GOWORK=$gowork} KO_DEFAULTBASEIMAGE=$BASE KO_DOCKER_REPO=${PREFIX}$name \
		"$KO" build --bare --push=false --tarball "$OUT/$name.tar" --tags "$tag" --platform linux/amd64 \
		--sbom spdx --sbom-dir "$WORK/sbom-$name" --image-user 65532:65532 "${ldflags[@]}" \
		--image-label "org.opencontainers.image.title=$name" \
		--image-label "org.opencontainers.image.description=$desc" \
		--image-label "org.opencontainers.image.source=$SOURCE" \
		--image-label "org.opencontainers.image.version=$tag" \
		"$path" >"$WORK/ko-$name.log" 2>&1) || { cat "$WORK/ko-$name.log" >&2; exit 1; }
	# ko names the SBOM after the program's directory (v2 for nats-server/v2).
	mv "$WORK/sbom-$name"/*.spdx.json "$OUT/sbom/$name.spdx.json"
}

# debian_image NAME TAG DESCRIPTION ENTRYPOINT FILE...: Debian's programs
# and every shared library they load, on the base.
debian_image() {
	local name=$1 tag=$2 desc=$3 entrypoint=$4
	shift 4
	want "$name" || return 0
	echo "debian $* -> ${PREFIX}$name:$tag"
	local root=$WORK/$name files=("$@") f
	for f in "$@"; do
		[ -e "$f" ] || { echo "build.sh: $f is missing (apt-get install the package that has it)" >&2; exit 1; }
		# (ldd fails on a static program: it loads nothing.)
		files+=($({ ldd "$f" 2>/dev/null || true; } | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^\s*\(\/[^ ]*\) (.*/\1/p'))
	done
	mkdir -p "$root"
	for f in "${files[@]}"; do
		mkdir -p "$root$(dirname "$f")"
		cp -L "$f" "$root$f"
	done
	if [ -n "${DEBIAN_LINKS:-}" ]; then
		for f in $DEBIAN_LINKS; do mkdir -p "$root$(dirname "${f%%=*}")"; ln -sf "${f#*=}" "$root${f%%=*}"; done
	fi
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$WORK/$name.tar" .
	"$CRANE" append -b "$BASE" -f "$WORK/$name.tar" -t "$REG/$name:layer" >/dev/null
	"$CRANE" mutate "$REG/$name:layer" --entrypoint "$entrypoint" \
		-l "org.opencontainers.image.title=$name" -l "org.opencontainers.image.description=$desc" \
		-l "org.opencontainers.image.version=$tag" -t "${PREFIX}$name:$tag" -o "$OUT/$name.tar" >/dev/null
}

ko_image herald "$IMAGE_TAG" services/herald ./cmd/herald "Herald in one process with embedded NATS JetStream and etcd and store"
ko_image herald-edge "$IMAGE_TAG" services/edge ./cmd/herald-edge "Herald edge: MQTT and WebSocket and SSE and HTTP in front of NATS JetStream"
ko_image herald-session "$IMAGE_TAG" services/session ./cmd/herald-session "Herald session service: retained messages and sessions and replay buffers"
ko_image herald-admin "$IMAGE_TAG" services/admin ./cmd/herald-admin "Herald admin API (gRPC and REST) and its client"
nats_version=$(cd "$ROOT/pkg" && go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
etcd_version=$(cd "$ROOT/pkg" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
ko_image nats-server "$nats_version" pkg github.com/nats-io/nats-server/v2 "NATS server $nats_version (JetStream) built from pkg/go.mod"
ko_image etcd "$etcd_version" pkg go.etcd.io/etcd/server/v3 "etcd $etcd_version built from pkg/go.mod"
ko_image pause "$IMAGE_TAG" tools/images ./pause "The local node's pod sandbox process" off
redis_version=$(dpkg-query -W -f '${source:Upstream-Version}' redis-server 2>/dev/null | sed 's/[^0-9.].*//')
debian_image redis "${redis_version:-7}" "Debian's redis-server" /usr/bin/redis-server /usr/bin/redis-server
curl_version=$(dpkg-query -W -f '${source:Upstream-Version}' curl 2>/dev/null | sed 's/[^0-9.].*//')
DEBIAN_LINKS="/bin/sh=busybox /bin/sed=busybox /bin/date=busybox /bin/cat=busybox /bin/echo=busybox /bin/sleep=busybox" \
	debian_image curl "${curl_version:-8}" "Debian's curl with busybox sh, for helm test" /usr/bin/curl /usr/bin/curl /bin/busybox

if [ "$IMAGE_PUSH" = 1 ]; then
	for name in $IMAGES; do
		echo "push $OUT/$name.tar"
		# A tarball holds its own name; crane pushes to it.
		ref=$(tar -xOf "$OUT/$name.tar" manifest.json | sed -n 's/.*"RepoTags":\["\([^"]*\)".*/\1/p')
		"$CRANE" push "$OUT/$name.tar" "$ref" >/dev/null
	done
fi
ls -l "$OUT"/*.tar
