# maintproxy — `make run` starts the demo broker, `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin

.PHONY: run test deps build dist bench fuzz clean

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

# dist cross-compiles the technician client; the broker's tool bundle ships what is in dist/.
DIST_TARGETS := linux/amd64 linux/arm64 windows/amd64 darwin/amd64 darwin/arm64
dist:
	@mkdir -p dist
	@for t in $(DIST_TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		echo "dist/maint-$$os-$$arch$$ext"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -buildvcs=false \
			-ldflags "$(LDFLAGS)" -o dist/maint-$$os-$$arch$$ext ./cmd/maint || exit 1; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x -count 6 ./bench/

fuzz:
	for f in FuzzParse FuzzPACRegexpMatchesParse; do $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime 60s -fuzzminimizetime 5s ./maintname/ || exit 1; done

clean:
	rm -rf $(BIN) dist demo-data
