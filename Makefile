# Herald — build, run and test. `make run` and `make test` need nothing but Go
# and (for tests) root or sudo for apt-get on Debian; see README.md.
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
DATA  ?= $(CURDIR)/data
export PATH := $(BIN):$(PATH)

# Every module of the workspace, as import-path patterns.
MODULES = $(shell $(GO) list -m -f '{{.Path}}/...')
# The end-to-end suites each start a local cluster (and Chromium): they run
# one at a time, after the rest, so that two clusters never share the 2 cores.
E2E_PKGS = ./tests/e2e/... ./tests/mqtt/... ./tests/browser/... ./tests/tenancy/...

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
	$(GO) test -count=1 -timeout 20m $$($(GO) list $(MODULES) | grep -v '/tests/\(e2e\|mqtt\|browser\|tenancy\)')
	$(GO) test -count=1 -timeout 20m -p 1 $(E2E_PKGS)

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

## proto: regenerate gRPC, gateway and OpenAPI code (offline, pinned generators)
proto:
	bash proto/generate.sh

## cluster-up / cluster-down: the local cluster as processes on loopback
cluster-up: build servers
	bash deploy/local/cluster.sh up
cluster-down:
	bash deploy/local/cluster.sh down
cluster-status:
	bash deploy/local/cluster.sh status

clean:
	rm -rf $(BIN)
