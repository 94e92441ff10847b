# goray build, test and benchmark targets.
GO        ?= go
PROTOC_GEN_GO_VERSION := v1.36.12
BIN       := bin
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)

.PHONY: all build test test-race bench demo proto vet fmt clean tools

all: build

build:
	$(GO) build -o $(BIN)/goray ./cmd/goray
	$(GO) build ./...

proto: tools
	protoc -I protos --go_out=paths=source_relative:protos protos/*.proto

tools:
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	@command -v protoc-gen-go >/dev/null || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

clean:
	rm -rf $(BIN)
