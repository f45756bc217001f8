# syntax=docker/dockerfile:1
# herald-admin: Herald admin API: gRPC and REST on one port, and its command-line client.
# Build from the repository root (the workspace in go.work is needed):
#   docker build -f deploy/images/herald-admin.Dockerfile -t herald-admin .
# or `make images`. The result is one static binary on a distroless base,
# running as UID 65532, with no shell.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY . .
# Static: no libc in the final image. The caches keep module downloads and
# compiled packages between builds.
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/herald-admin ./services/admin/cmd/herald-admin

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="herald-admin" \
      org.opencontainers.image.description="Herald admin API: gRPC and REST on one port, and its command-line client." \
      org.opencontainers.image.source="https://github.com/heraldmq/herald"
COPY --from=build /out/herald-admin /usr/local/bin/herald-admin
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/herald-admin"]
