# maintproxy — `make run` starts the demo broker, `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin

.PHONY: run test deps build bench fuzz clean

run:
	$(GO) run ./cmd/maintproxy demo

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 14m ./...

# deps installs what the tests drive (Debian packages, npm packages) when missing.
deps:
	scripts/test-deps.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x -count 6 ./bench/

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseTarget -fuzztime 60s ./proxy/

clean:
	rm -rf $(BIN) dist demo-data
