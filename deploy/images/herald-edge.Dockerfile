# syntax=docker/dockerfile:1
# herald-edge: Herald edge: MQTT, MQTT over WebSocket, WebSocket, SSE and HTTP publish/poll in front of NATS JetStream.
# Build from the repository root (the workspace in go.work is needed):
#   docker build -f deploy/images/herald-edge.Dockerfile -t herald-edge .
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
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/herald-edge ./services/edge/cmd/herald-edge

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="herald-edge" \
      org.opencontainers.image.description="Herald edge: MQTT, MQTT over WebSocket, WebSocket, SSE and HTTP publish/poll in front of NATS JetStream." \
      org.opencontainers.image.source="https://github.com/heraldmq/herald"
COPY --from=build /out/herald-edge /usr/local/bin/herald-edge
USER 65532:65532
EXPOSE 1883 8883 8080 9090
ENTRYPOINT ["/usr/local/bin/herald-edge"]
