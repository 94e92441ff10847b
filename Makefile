# goray build, test and benchmark targets.
GO        ?= go
PROTOC_GEN_GO_VERSION := v1.36.12
BIN       := bin
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)

.PHONY: all build test bench demo proto vet fmt clean tools

all: build

# The whole suite, under the race detector: unit tests of each package and
# the end-to-end tests in tests/ (real clusters, real worker processes).
# Proto.Actor's cluster package races with itself under the race detector,
# so the membership provider's tests with real cluster members run once
# more without it.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run 'TestProvider' ./gcs/membership/

# Runs examples/quickstart on an embedded single-node cluster.
demo:
	$(GO) run ./examples/quickstart

# goray's version of Ray's microbenchmark; JSON lines on stdout.
bench:
	$(GO) build -o $(BIN)/goray-bench ./cmd/goray-bench
	$(BIN)/goray-bench

build:
	$(GO) build -o $(BIN)/goray ./cmd/goray
	$(GO) build ./...

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
