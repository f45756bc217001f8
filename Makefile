# Herald — build, run and test. `make run` and `make test` need nothing but Go
# and (for tests) root or sudo for apt-get on Debian; see README.md.
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
DATA  ?= $(CURDIR)/data
export PATH := $(BIN):$(PATH)

empty :=
space := $(empty) $(empty)
# Every module of the workspace, as import-path patterns.
MODULES = $(shell $(GO) list -m -f '{{.Path}}/...')
# The end-to-end suites each start a local cluster (and Chromium): they run
# one at a time, after the rest, so that two clusters never share the 2 cores.
E2E_SUITES = e2e mqtt browser tenancy rolling hostile
E2E_PKGS = $(patsubst %,./tests/%/...,$(E2E_SUITES))

.PHONY: all build servers run test test-deps check vet fmt-check lint proto \
        bench bench-store cluster-up cluster-down cluster-status clean

all: build

## build: the herald binaries into ./bin
build:
	cd services/herald  && $(GO) build -o $(BIN)/herald ./cmd/herald
	cd services/edge    && $(GO) build -o $(BIN)/herald-edge ./cmd/herald-edge
	cd services/session && $(GO) build -o $(BIN)/herald-session ./cmd/herald-session
	cd services/admin   && $(GO) build -o $(BIN)/herald-admin ./cmd/herald-admin
	cd tools/loadgen    && $(GO) build -o $(BIN)/loadgen .

## servers: nats-server and etcd, built from the versions pinned in pkg/go.mod
servers: $(BIN)/nats-server $(BIN)/etcd
$(BIN)/nats-server: pkg/go.mod
	cd pkg && $(GO) build -o $(BIN)/nats-server github.com/nats-io/nats-server/v2
$(BIN)/etcd: pkg/go.mod
	cd pkg && $(GO) build -o $(BIN)/etcd go.etcd.io/etcd/server/v3

## run: the embedded default — one process, nothing to install, data in ./data
run: build
	$(BIN)/herald --data-dir $(DATA)

## test: install what the tests need, then run every test
test: test-deps build servers check
	$(GO) test -count=1 -timeout 20m $$($(GO) list $(MODULES) | grep -v -E '/tests/($(subst $(space),|,$(E2E_SUITES)))(/|$$)')
	$(GO) test -count=1 -timeout 20m -p 1 $(E2E_PKGS)
	$(MAKE) --no-print-directory chaos-short
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_CI)

test-deps:
	bash tools/install-test-deps.sh
	cd tests/mqttjs && npm ci --no-audit --no-fund

## check: formatting and vet
check: fmt-check vet
fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.\|\.pb\.gw\.')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
vet:
	$(GO) vet $(MODULES)

## lint: staticcheck (fetched through the module proxy at a pinned version)
lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(MODULES)

## bench: Herald side by side with Mosquitto and nats-server's MQTT, into docs/benchmarks.md (~10 min)
bench: test-deps build servers
	bash tools/bench/bench.sh

## bench-store: store and offline-delivery benchmarks against real Redis and NATS (~1 min)
bench-store:
	cd pkg && $(GO) test -run '^$$' -bench . -benchtime 500x ./store/

## fuzz: every fuzz target for FUZZTIME each (default 60s), one after the other
FUZZTIME ?= 60s
# make test fuzzes every target briefly too (beyond the seed corpora that
# its go test runs already replay), for a count of inputs, not a duration:
# with a duration, Go 1.26's fuzz coordinator can report its own deadline
# as a failure ("context deadline exceeded", no crasher; golang/go#75804,
# fixed in Go 1.27), which it did here once in a few runs.
FUZZTIME_CI ?= 2000x
FUZZ_TARGETS = pkg/message:FuzzParsePosition pkg/message:FuzzUnmarshal pkg/topic:FuzzFromSubject \
	pkg/authz:FuzzCovers pkg/authz:FuzzVerifyJWT \
	services/edge/internal/mqtt:FuzzReadPacket services/edge/internal/mqtt:FuzzConnectProperties \
	services/edge/internal/ws:FuzzClientFrame services/edge/internal/sse:FuzzRequest \
	services/edge/internal/poll:FuzzParse services/edge/internal/httpapi:FuzzPublish services/admin:FuzzREST
## soak: bin/herald at half its measured capacity with churning clients for SOAK_DURATION (default 10m)
SOAK_DURATION ?= 10m
.PHONY: fuzz soak
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do echo "== $${t%%:*} $${t##*:}"; \
		(cd $${t%%:*} && $(GO) test -run '^$$' -fuzz "^$${t##*:}$$" -fuzztime $(FUZZTIME) .); done
soak: build servers
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -v -run '^TestSoak$$' -timeout 0 ./tests/soak/

## proto: regenerate gRPC, gateway and OpenAPI code (offline, pinned generators)
proto:
	bash proto/generate.sh

## chaos: fault tests — kill and cut parts of an HA local cluster under traffic (~5 min;
## HERALD_CHAOS_RESULTS=file for the table; the CI form adds -short)
.PHONY: chaos chaos-short
chaos: build servers
	cd tests && HERALD_CHAOS=1 $(GO) test -count=1 -timeout 15m -v -run TestFaults ./chaos/
## chaos-short: the CI form (part of make test): every fault, shorter (~2 min)
chaos-short: build servers
	cd tests && HERALD_CHAOS=1 $(GO) test -count=1 -short -timeout 10m -run TestFaults ./chaos/

## cluster-up / cluster-down: the local cluster as processes on loopback
cluster-up: build servers
	bash deploy/local/cluster.sh up
cluster-down:
	bash deploy/local/cluster.sh down
cluster-status:
	bash deploy/local/cluster.sh status

clean:
	rm -rf $(BIN)

## images: the container images (deploy/images/*.Dockerfile) with docker (BuildKit) or podman
CONTAINER_TOOL ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
IMAGE_REGISTRY ?=
IMAGE_TAG      ?= dev
.PHONY: images
images:
	@if [ -z "$(CONTAINER_TOOL)" ]; then \
		echo "make images: neither docker nor podman is on PATH; install one, or set CONTAINER_TOOL" >&2; exit 1; fi
	@for s in herald herald-edge herald-session herald-admin; do \
		img=$(if $(IMAGE_REGISTRY),$(IMAGE_REGISTRY)/)$$s:$(IMAGE_TAG); \
		echo "$(CONTAINER_TOOL) build -f deploy/images/$$s.Dockerfile -t $$img ."; \
		DOCKER_BUILDKIT=1 $(CONTAINER_TOOL) build -f deploy/images/$$s.Dockerfile -t $$img . || exit 1; \
	done
