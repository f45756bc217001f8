# syntax=docker/dockerfile:1
# herald-session: Herald session service: the single writer of retained messages, sessions and replay buffers.
# Build from the repository root (the workspace in go.work is needed):
#   docker build -f deploy/images/herald-session.Dockerfile -t herald-session .
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
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/herald-session ./services/session/cmd/herald-session

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="herald-session" \
      org.opencontainers.image.description="Herald session service: the single writer of retained messages, sessions and replay buffers." \
      org.opencontainers.image.source="https://github.com/heraldmq/herald"
COPY --from=build /out/herald-session /usr/local/bin/herald-session
USER 65532:65532
EXPOSE 9092
ENTRYPOINT ["/usr/local/bin/herald-session"]
