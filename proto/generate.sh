#!/usr/bin/env bash
# generate.sh regenerates the Go, gRPC, grpc-gateway and OpenAPI code from the
# .proto files under proto/. Run it from anywhere: bash proto/generate.sh.
#
# It needs only protoc (Debian protobuf-compiler) and the module cache: the
# plugins are the versions pinned by the tool directives in proto/go.mod, run
# with `go tool`; google/api annotations are vendored under
# third_party/googleapis; the OpenAPI options come from the pinned
# grpc-gateway/v2 module.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

command -v protoc >/dev/null || {
	echo "generate.sh: protoc not found (apt-get install -y protobuf-compiler)" >&2
	exit 1
}

# protoc runs plugins by path: `go tool -n` builds the pinned version into the
# build cache (offline, from the module cache) and prints where it is.
plugins=()
for p in protoc-gen-go protoc-gen-go-grpc protoc-gen-grpc-gateway protoc-gen-openapiv2; do
	plugins+=("--plugin=$p=$(go tool -n "$p")")
done

gateway=$(go list -m -f '{{.Dir}}' github.com/grpc-ecosystem/grpc-gateway/v2)

# Sorted, repository-relative names keep the output stable.
mapfile -t files < <(find herald -name '*.proto' | LC_ALL=C sort)

# Remove what an earlier run produced, so deleted protos leave nothing behind.
find herald -name '*.pb.go' -o -name '*.pb.gw.go' | xargs -r rm -f
rm -f openapi/*.swagger.json

protoc \
	-I . \
	-I third_party/googleapis \
	-I "$gateway" \
	"${plugins[@]}" \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	--grpc-gateway_out=. --grpc-gateway_opt=paths=source_relative \
	--openapiv2_out=openapi \
	--openapiv2_opt=allow_merge=true,merge_file_name=admin \
	"${files[@]}"

gofmt -l herald | (! grep .) || { echo "generate.sh: generated code not gofmt-clean" >&2; exit 1; }
