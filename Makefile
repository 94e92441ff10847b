# goray build, test and benchmark targets.
GO        ?= go
PROTOC_GEN_GO_VERSION := v1.36.12
NATSCLI_VERSION   := v0.5.0
BIN       := bin
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)

.PHONY: generate all build install test test-tls nats-cli chromium fuzz bench chaos demo proto vet fmt clean tools

all: build

# The whole suite, under the race detector: unit tests of each package and
# the end-to-end tests in tests/ (real clusters, real worker processes).
test: nats-cli chromium
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) test-tls

# The suite again with mutual TLS on every connection (NATS, wire TCP,
# object transfer, metrics): certificates from `goray tls generate` in a
# temporary directory, handed to every process through GORAY_TLS_*.
test-tls: nats-cli chromium
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	$(GO) run ./cmd/goray tls generate "$$dir" --hosts localhost,127.0.0.1,::1 >/dev/null; \
	GORAY_TLS_CERT=$$dir/node.pem GORAY_TLS_KEY=$$dir/node-key.pem GORAY_TLS_CA=$$dir/ca.pem \
		$(GO) test -count=1 -timeout 20m ./tests/ ./sdk/... ./cmd/...

# Debian's chromium: the dashboard's browser tests (tests/dashboard_test.go)
# drive it headless, as a person's browser.
chromium:
	@test -x /usr/bin/chromium || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y chromium >/dev/null 2>&1 || { $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y chromium >/dev/null; }; }

# The stock nats CLI: the security tests drive it as an operator would.
nats-cli:
	@command -v nats >/dev/null || $(GO) install github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)

# Every native fuzz target of the module (func FuzzXxx(f *testing.F)),
# found afresh each run so that new ones join by themselves, fuzzed for
# FUZZTIME each; fails if any fails, after running the others. Their seed
# corpora (f.Add and testdata/fuzz) run with the unit tests in `make test`.
# Coverage of concurrent code varies from run to run, so the minimizer
# rarely finishes with an input before its default minute is up: a short
# FUZZMINIMIZETIME leaves the time to fuzzing. Go before 1.27 may end a
# clean run with a bare "context deadline exceeded" and no failing input
# (golang/go#75804, a race in its fuzz coordinator); that alone is not a
# failure.
FUZZTIME         ?= 1m
FUZZMINIMIZETIME ?= 2s
fuzz:
	@set -e; \
	list=$$($(GO) test -vet=off -run '^$$' -list '^Fuzz' ./...); \
	targets=$$(printf '%s\n' "$$list" | awk '/^Fuzz[A-Za-z0-9_]*$$/ { names[n++] = $$1; next } /^ok / { for (i = 0; i < n; i++) print $$2 ":" names[i]; n = 0 }'); \
	[ -n "$$targets" ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }; \
	log=$$(mktemp); trap 'rm -f "$$log" "$$log.rc"' EXIT; \
	failed=; \
	for t in $$targets; do \
		pkg=$${t%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg)"; \
		{ rc=0; $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg || rc=$$?; echo $$rc >"$$log.rc"; } 2>&1 | tee "$$log"; \
		[ "$$(cat "$$log.rc")" = 0 ] && continue; \
		if grep -q '^    context deadline exceeded$$' "$$log" && ! grep -q 'Failing input written' "$$log"; then \
			echo "fuzz: $$name: only Go's coordinator deadline race (golang/go#75804), no failing input"; \
		else \
			failed="$$failed $$name($$pkg)"; \
		fi; \
	done; \
	[ -z "$$failed" ] || { echo "fuzz: failed:$$failed" >&2; exit 1; }

# Runs examples/quickstart on an embedded single-node cluster.
demo:
	$(GO) run ./examples/quickstart

# goray's version of Ray's microbenchmark; JSON lines on stdout.
bench: chromium
	$(GO) build -o $(BIN)/goray-bench ./cmd/goray-bench
	$(BIN)/goray-bench

# goray under fire (cmd/goray-chaos): a head and a node of its own run
# dependent tasks, shared-memory objects and restarting actors while a
# worker is SIGKILLed every 200 ms, the node once and the head once; JSON
# lines on stdout, and it fails if any result was wrong, failed or hung.
# `make test` runs 15 s of it (tests/chaos_test.go).
CHAOSTIME ?= 60s
chaos:
	$(GO) build -o $(BIN)/goray ./cmd/goray
	$(GO) build -o $(BIN)/goray-chaos ./cmd/goray-chaos
	$(BIN)/goray-chaos -goray $(BIN)/goray -duration $(CHAOSTIME)

# The CLI, the benchmark and the chaos test into $(BIN); `go build ./...`
# then checks that every other package compiles too.
build:
	$(GO) build -o $(BIN)/goray ./cmd/goray
	$(GO) build -o $(BIN)/goray-bench ./cmd/goray-bench
	$(GO) build -o $(BIN)/goray-chaos ./cmd/goray-chaos
	$(GO) build ./...

# The CLI into $GOBIN (default $(go env GOPATH)/bin).
install:
	$(GO) install ./cmd/goray

# The sdk's typed handles of each arity (Func0..6, ActorClass0..3, ...).
generate:
	python3 scripts/gen_arities.py .

proto: tools
	protoc --proto_path=goray=protos --go_out=. --go_opt=module=github.com/goray/goray protos/*.proto

tools:
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	@command -v protoc-gen-go >/dev/null || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

clean:
	rm -rf $(BIN)
