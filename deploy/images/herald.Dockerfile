# syntax=docker/dockerfile:1
# herald: Herald in one process with embedded NATS JetStream, etcd and store (development and small installs).
# Build from the repository root (the workspace in go.work is needed):
#   docker build -f deploy/images/herald.Dockerfile -t herald .
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
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/herald ./services/herald/cmd/herald
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="herald" \
      org.opencontainers.image.description="Herald in one process with embedded NATS JetStream, etcd and store (development and small installs)." \
      org.opencontainers.image.source="https://github.com/heraldmq/herald"
COPY --from=build /out/herald /usr/local/bin/herald
# The data directory, writable by the image's user; mount a volume here.
COPY --from=build --chown=65532:65532 /out/data /var/lib/herald
VOLUME /var/lib/herald
USER 65532:65532
EXPOSE 1883 8080 8081 8082
ENTRYPOINT ["/usr/local/bin/herald"]
# Listen on every interface inside the container; the embedded NATS and etcd
# stay on loopback.
CMD ["--data-dir=/var/lib/herald", "--mqtt-addr=:1883", "--http-addr=:8080", "--admin-addr=:8081", "--ops-addr=:8082"]
