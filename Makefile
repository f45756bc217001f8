# Herald — build, run and test. `make run` and `make test` need nothing but Go
# and (for tests) root or sudo for apt-get on Debian; see README.md.
#
# `make help` lists the targets from their `## target: what it does` lines
# below (the README shows that list; tests/docs checks that they agree), so
# each such line says what a person needs before running the target: what
# it installs, and how long it takes when that is more than a moment.
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
DATA  ?= $(CURDIR)/data
export PATH := $(BIN):$(PATH)

empty :=
space := $(empty) $(empty)
# Every module of the workspace, as import-path patterns. The repository's
# root is a go.work workspace, not a module: `go vet ./...` there finds no
# package; `make vet` (or `go vet $$(go list -m -f '{{.Path}}/...')`) vets
# every module.
MODULES = $(shell $(GO) list -m -f '{{.Path}}/...')
# The end-to-end suites each start a local cluster (and Chromium): they run
# one at a time, after the rest, so that two clusters never share the 2 cores.
E2E_SUITES = e2e mqtt browser tenancy rolling hostile docs
E2E_PKGS = $(patsubst %,./tests/%/...,$(E2E_SUITES))

.PHONY: all help build servers run test test-deps cluster-deps check vet fmt-check lint proto \
        test-unit test-e2e bench bench-compare bench-store cluster-up cluster-down cluster-status clean

all: build

# Each program: its module's directory and its package. Go decides what is
# stale; tools/build-progress.sh shows what it compiles (a first build is
# minutes, see COMPILE_RATE) and says what it built.
herald_SRC         = services/herald ./cmd/herald
herald-edge_SRC    = services/edge ./cmd/herald-edge
herald-session_SRC = services/session ./cmd/herald-session
herald-admin_SRC   = services/admin ./cmd/herald-admin
loadgen_SRC        = tools/loadgen .
PROGRAMS = herald herald-edge herald-session herald-admin loadgen
# Packages compiled per minute by a cold build on 2 cores: bin/herald is
# 711 packages (with the standard library), built in 1m53s, 2m02s and
# 2m12s with a cold build cache and a warm module cache on the shared
# 2-core machine (load average 3.4-5.5) on 2026-12-07. Only used to say
# how long a first build takes; the module download before it depends on
# the network.
export COMPILE_RATE = 350
BUILD = bash tools/build-progress.sh
# What --version prints, stamped into every Herald program by the linker
# (bin/* here, the images through deploy/images/build.sh): the release this
# tree is (the chart's appVersion) and the commit, -dirty with changes not
# committed. A binary built otherwise says what Go recorded (pkg/version).
APP_VERSION := $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*/\1/p' charts/herald/Chart.yaml)
VERSION ?= $(APP_VERSION)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
HERALD_LDFLAGS = -X github.com/heraldmq/herald/pkg/version.Version=$(VERSION) -X github.com/heraldmq/herald/pkg/version.Commit=$(COMMIT)
.PHONY: $(PROGRAMS)

## run: build bin/herald and start it: one process, nothing to install, data in ./data (a first build takes minutes; it says how many)
run: herald
	@echo "starting bin/herald --data-dir $(DATA) (Ctrl-C stops it; it drains its clients first, up to 20 s)"
	@$(BIN)/herald --data-dir $(DATA)

## test: install what the tests need, then run every test, phase by phase (~$(TEST_TIME) on 2 cores)
# Its phases, in order, as TARGET:USUAL: each is a target of its own (make
# test-e2e runs one phase), and USUAL is what it took in a fresh clone with
# a cold build cache (as on CI) on the shared 2-core machine on 2026-12-07,
# load average 1.4-5.6: test-deps 4 s (all installed already; apt-get adds
# its own time), build 191 s (seconds once cached), servers 7 s, check
# 105 s, test-unit 93 s, test-e2e 174 s, fuzz-ci 61 s; chaos-short is its
# own target's figure. tools/phases.sh prints the plan, each phase's
# header and usual time, a line every 2 minutes while one runs, what each
# took, and a summary.
TEST_PHASES = test-deps:5s build:3m servers:10s check:2m test-unit:1m30s test-e2e:3m chaos-short:2m fuzz-ci:1m
TEST_TIME = $(shell bash tools/phases.sh --total $(TEST_PHASES))
test:
	@MAKE="$(MAKE)" bash tools/phases.sh $(TEST_PHASES)
# A phase run by make test (IN_TEST=1) relies on the build phase before it,
# rather than checking every program again; run alone, it builds first.
BUILT = $(if $(IN_TEST),,build servers)

## build: every Herald program into ./bin (herald, herald-edge, herald-session, herald-admin, loadgen)
build: $(PROGRAMS)
$(PROGRAMS):
	@LDFLAGS='$(HERALD_LDFLAGS)' $(BUILD) $(BIN)/$@ $($@_SRC)

## servers: nats-server and etcd into ./bin, built from the versions pinned in pkg/go.mod
servers: $(BIN)/nats-server $(BIN)/etcd
$(BIN)/nats-server: pkg/go.mod
	@$(BUILD) $@ pkg github.com/nats-io/nats-server/v2
$(BIN)/etcd: pkg/go.mod
	@$(BUILD) $@ pkg go.etcd.io/etcd/server/v3

## test-deps: install what the tests need and is missing (apt-get, then npm ci in tests/mqttjs)
test-deps:
	bash tools/install-test-deps.sh
	cd tests/mqttjs && npm ci --no-audit --no-fund
## cluster-deps: install what the local cluster needs and is missing (Redis, curl; the mosquitto clients of the README)
cluster-deps:
	@bash tools/install-test-deps.sh cluster

## test-unit: unit and integration tests of every module, but the end-to-end suites
test-unit: $(BUILT)
	$(GO) test -count=1 -timeout 20m $$($(GO) list $(MODULES) | grep -v -E '/tests/($(subst $(space),|,$(E2E_SUITES)))(/|$$)')
## test-e2e: the end-to-end suites, one at a time: tests/{e2e,mqtt,browser,tenancy,rolling,hostile,docs}
test-e2e: $(BUILT)
	$(GO) test -count=1 -timeout 20m -p 1 $(E2E_PKGS)

## check: formatting (gofmt) and vet, on every module
check: fmt-check vet
fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.\|\.pb\.gw\.')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
## vet: go vet on every module (at the root, `go vet ./...` finds no module: the root is a go.work workspace)
vet:
	@echo "go vet on every module of the workspace (with a cold build cache it compiles them first)"
	$(GO) vet $(MODULES)
## lint: staticcheck on every module (fetched through the module proxy at a pinned version)
lint:
	@echo "staticcheck on every module of the workspace (go run builds staticcheck the first time)"
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(MODULES)

## proto: regenerate gRPC, gateway and OpenAPI code (offline, pinned generators)
proto:
	bash proto/generate.sh

## cluster-up: start the local cluster as processes on loopback (installs Redis first if missing; see README)
cluster-up: cluster-deps herald-edge herald-session herald-admin servers
	@bash deploy/local/cluster.sh up
## cluster-down: stop exactly the processes cluster-up started
cluster-down:
	@bash deploy/local/cluster.sh down
## cluster-status: which of the local cluster's processes run
cluster-status:
	@bash deploy/local/cluster.sh status

## chaos: fault tests, killing and cutting parts of an HA local cluster under traffic (~3 min; 169 s measured last)
# HERALD_CHAOS_RESULTS=file writes the table; the CI form adds -short.
.PHONY: chaos chaos-short
chaos: build servers
	cd tests && HERALD_CHAOS=1 $(GO) test -count=1 -timeout 15m -v -run TestFaults ./chaos/
## chaos-short: the CI form of chaos (part of make test): every fault, shorter (~2 min)
chaos-short: $(BUILT)
	cd tests && HERALD_CHAOS=1 $(GO) test -count=1 -short -timeout 10m -run TestFaults ./chaos/

## bench: Herald beside Mosquitto and nats-server's MQTT, into docs/benchmarks.md (~9 min; 530 s measured last)
bench: test-deps build servers
	bash tools/bench/bench.sh
## bench-compare: Herald at BASE=<commit> beside the working tree, alternating rounds in one run, into data/bench-compare/compare.md (~10 min)
bench-compare:
	bash tools/bench/compare.sh

## bench-store: store and offline-delivery benchmarks against real Redis, Redis Cluster and NATS, and the store writes of 10,000 idle MQTT sessions (~2 min; 114 s measured last)
bench-store:
	cd pkg && $(GO) test -run '^$$' -bench . -benchtime 500x ./store/
	cd services/edge && $(GO) test -run '^$$' -bench IdleSessionWrites -benchtime 3x ./internal/mqtt/
	cd services/session && $(GO) test -run '^$$' -bench IdleSessionSweeps -benchtime 3x .

## soak: bin/herald at half its measured capacity with churning clients for SOAK_DURATION (default 10m)
SOAK_DURATION ?= 10m
.PHONY: fuzz fuzz-ci soak
soak: build servers
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -v -run '^TestSoak$$' -timeout 0 ./tests/soak/

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
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do echo "== $${t%%:*} $${t##*:}"; \
		(cd $${t%%:*} && $(GO) test -run '^$$' -fuzz "^$${t##*:}$$" -fuzztime $(FUZZTIME) .); done
## fuzz-ci: every fuzz target for $(FUZZTIME_CI) inputs, the form make test runs (its test binaries built at once)
# tools/fuzz-ci.sh builds the targets' test binaries in one go test -c,
# with Herald's own packages instrumented, rather than one instrumented
# build of everything per target. Measured on 2026-12-07, the build cache
# warmed by the packages' plain test builds (as the phases before leave
# it) but cold for fuzzing: 47 s instead of 299 s and 84 s instead of
# 244 s (load average 4-9); fuzzing again with everything cached: 18 s
# instead of 47 s and 28 s instead of 57 s.
fuzz-ci:
	@bash tools/fuzz-ci.sh $(FUZZTIME_CI) $(FUZZ_TARGETS)

## clean: remove ./bin
clean:
	rm -rf $(BIN)

## help: this list, from the `## target:` lines of the Makefile
# $(NAME) in a line is the variable's value, passed in the environment.
help:
	@TEST_TIME='$(TEST_TIME)' FUZZTIME_CI='$(FUZZTIME_CI)' K8S_TEST_BUDGET='$(K8S_TEST_BUDGET)' \
	awk '/^## [a-z0-9-]+: / { t = $$2; sub(/:$$/, "", t); d = $$0; sub(/^## [a-z0-9-]+: /, "", d); \
		while (match(d, /\$$\([A-Z0-9_]+\)/)) d = substr(d, 1, RSTART - 1) ENVIRON[substr(d, RSTART + 2, RLENGTH - 3)] substr(d, RSTART + RLENGTH); \
		gsub(/\$$\$$/, "$$", d); printf "make %-15s %s\n", t, d }' $(firstword $(MAKEFILE_LIST))
	@echo "make test and make test-deps install, when missing, with apt-get: $$(bash tools/install-test-deps.sh --list);" \
		"then npm ci in tests/mqttjs (MQTT.js)"
	@echo "make cluster-up installs, when missing: $$(bash tools/install-test-deps.sh --list cluster)"

# Tools built from source on first use and cached outside the tree, one
# directory per pinned module set (the hash of its go.sum): a new pin
# builds anew, an old one is reused across worktrees and clones.
TOOLS_CACHE ?= $(HOME)/.cache/herald
sumof = $(shell cat $(1) | sha256sum | cut -c1-12)
IMAGE_TOOLS = $(TOOLS_CACHE)/images-$(call sumof,tools/images/go.sum)
KUBE_TOOLS  = $(TOOLS_CACHE)/k8s-$(call sumof,tools/k8s/go.sum)
DNS_TOOLS   = $(TOOLS_CACHE)/dns-$(call sumof,tools/dns/go.sum tools/dns/main.go)
KUBE_VERSION = v1.37.2
KUBE_LDFLAGS = -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X helm.sh/helm/v3/internal/version.version=v3.22.0 -X sigs.k8s.io/cri-tools/pkg/version.Version=v1.37.0
KUBE_CMDS = k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
	k8s.io/kubernetes/cmd/kubectl sigs.k8s.io/cri-tools/cmd/crictl helm.sh/helm/v3/cmd/helm

$(IMAGE_TOOLS)/.built:
	@echo "building ko and crane into $(IMAGE_TOOLS) (once; ~4 min on 2 cores)"
	cd tools/images && GOWORK=off $(GO) build -trimpath -ldflags '-s -w' -o $(IMAGE_TOOLS)/ \
		github.com/google/ko github.com/google/go-containerregistry/cmd/crane
	touch $@
$(KUBE_TOOLS)/.built:
	@echo "building Kubernetes $(KUBE_VERSION), crictl and helm into $(KUBE_TOOLS)"
	@echo "(once; ~25 min on 2 busy cores; log: $(KUBE_TOOLS).log)"
	mkdir -p $(KUBE_TOOLS)
	cd tools/k8s && GOWORK=off $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $(KUBE_TOOLS)/ $(KUBE_CMDS) \
		> $(KUBE_TOOLS).log 2>&1 || { tail -30 $(KUBE_TOOLS).log; exit 1; }
	touch $@
$(DNS_TOOLS)/.built:
	@echo "building CoreDNS into $(DNS_TOOLS) (once; ~3 min)"
	cd tools/dns && GOWORK=off $(GO) build -trimpath -ldflags '-s -w' -o $(DNS_TOOLS)/coredns .
	touch $@

## images: every image the chart and its tests run, built offline without Docker into bin/images (ko and crane: ~4 min to build once)
# ko for the Go programs, crane for the base and Debian's Redis and curl,
# into bin/images/*.tar, with SBOMs in bin/images/sbom; IMAGE_PUSH=1 also
# pushes them to IMAGE_REGISTRY (see deploy/images/build.sh).
IMAGE_REGISTRY ?=
IMAGE_TAG      ?= $(APP_VERSION)
IMAGE_PUSH     ?= 0
.PHONY: images
images: $(IMAGE_TOOLS)/.built
	@command -v redis-server >/dev/null && command -v curl >/dev/null && command -v busybox >/dev/null || \
		apt-get install -y -qq redis-server curl busybox-static
	KO=$(IMAGE_TOOLS)/ko CRANE=$(IMAGE_TOOLS)/crane OUT=$(BIN)/images IMAGE_REGISTRY=$(IMAGE_REGISTRY) \
		IMAGE_TAG=$(IMAGE_TAG) IMAGE_PUSH=$(IMAGE_PUSH) HERALD_LDFLAGS='$(HERALD_LDFLAGS)' bash deploy/images/build.sh

# k8s-up / k8s-down: a real single-node Kubernetes $(KUBE_VERSION) on this
# machine (API server, etcd, controller manager, scheduler, CoreDNS, kubelet
# over containerd and runc, kube-proxy, a CNI bridge, an image registry on
# loopback), from binaries built on first use; state in K8S_STATE. k8s-down
# stops exactly what k8s-up started and removes what it left (pods,
# mounts, the bridge, iptables chains, cgroups). See deploy/k8s/cluster.sh.
K8S_STATE ?= $(DATA)/k8s
K8S_ENV = KUBE_TOOLS=$(KUBE_TOOLS) DNS_TOOLS=$(DNS_TOOLS) IMAGE_TOOLS=$(IMAGE_TOOLS) ETCD=$(BIN)/etcd \
	K8S_STATE=$(K8S_STATE)
.PHONY: k8s-tools k8s-up k8s-down k8s-status k8s-env k8s-test
k8s-tools: $(KUBE_TOOLS)/.built $(DNS_TOOLS)/.built $(IMAGE_TOOLS)/.built $(BIN)/etcd
	@command -v containerd >/dev/null && command -v runc >/dev/null && [ -x /usr/lib/cni/bridge ] && \
		command -v iptables >/dev/null && command -v openssl >/dev/null || \
		apt-get install -y -qq containerd runc containernetworking-plugins iptables openssl
## k8s-up: a real single-node Kubernetes on this machine (its tools built once: ~25 min on 2 busy cores)
k8s-up: k8s-tools
	$(K8S_ENV) bash deploy/k8s/cluster.sh up
## k8s-down: stop exactly what k8s-up started and remove what it left
k8s-down:
	$(K8S_ENV) bash deploy/k8s/cluster.sh down
k8s-status:
	$(K8S_ENV) bash deploy/k8s/cluster.sh status
## k8s-env: eval "$$(make -s k8s-env)" puts kubectl and helm on PATH with the cluster's KUBECONFIG
k8s-env:
	@$(K8S_ENV) bash deploy/k8s/cluster.sh env

## k8s-test: Herald's chart on that cluster, end to end, as the README says (not part of make test; budget $(K8S_TEST_BUDGET))
# tests/k8s; its budget is printed at its start: it starts the cluster if
# it is not up (and stops it after), builds and pushes the images, installs
# NATS, Redis and etcd, then the chart as the README says, under load.
K8S_TEST_BUDGET ?= 25m
.PHONY: k8s-test-budget
k8s-test-budget:
	@echo "make k8s-test: budget $(K8S_TEST_BUDGET) for the test itself (go test -timeout; ~1.5 min when it ran here),"
	@echo "after the one-time tool builds (~25 min for Kubernetes on 2 busy cores) and make images (~1-8 min)"
k8s-test: k8s-test-budget k8s-tools build images
	$(K8S_ENV) K8S_TEST_BUDGET=$(K8S_TEST_BUDGET) bash deploy/k8s/k8s-test.sh
