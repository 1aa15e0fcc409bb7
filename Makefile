# maintproxy — `make run` starts the demo broker, `make test` runs every test, `make build`
# builds the commands and the tool bundle's clients into bin/.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin
# The technician clients of the tool bundle; the broker finds them in clients/ next to its
# own binary (or in $MAINTPROXY_TOOLS_DIR).
CLIENTS := $(BIN)/clients
CLIENT_TARGETS  := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
RELEASE_TARGETS := linux/amd64 linux/arm64

.PHONY: run test test-race lint deps build clients dist bench fuzz clean

# The packages tested in-process run under the race detector in `make test`; the others
# (the e2e suite runs real processes) run without it, which keeps the suite fast.
RACE_PKGS  := $(shell $(GO) list ./broker ./proxy ./tunnel ./client ./pac ./internal/...)
OTHER_PKGS  = $(filter-out $(RACE_PKGS),$(shell $(GO) list ./...))
# staticcheck at the version scripts/test-deps.sh installs (in the user cache directory).
STATICCHECK = $(shell scripts/test-deps.sh staticcheck-path)

# run builds everything (the clients too, so the demo's tool bundle is complete) and starts
# the demo.
run: build
	$(BIN)/maintproxy demo

test: deps lint
	$(GO) test -count=1 -race -timeout 10m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 14m $(OTHER_PKGS)

# test-race runs every test under the race detector, the e2e suite with the broker, agent
# and client binaries built with -race too (a race they report fails the test).
test-race: deps lint
	MAINTPROXY_TEST_RACE=1 $(GO) test -count=1 -race -timeout 30m ./...

lint:
	$(GO) vet ./...
	$(STATICCHECK) ./...

# deps installs what the tests drive (Debian packages, npm packages) and staticcheck when
# missing.
deps:
	scripts/test-deps.sh

# build builds maintproxy, maintagent and maint into bin/, and the clients of the tool bundle
# into bin/clients/.
build: clients
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# clients cross-compiles maint for every OS and CPU of the tool bundle, and makes
# proxytunnel.exe: maint for Windows x86-64, which under that name takes proxytunnel's
# command line.
clients:
	@mkdir -p $(CLIENTS)
	@for t in $(CLIENT_TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		echo "$(CLIENTS)/maint-$$os-$$arch$$ext"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -buildvcs=false \
			-ldflags "$(LDFLAGS)" -o $(CLIENTS)/maint-$$os-$$arch$$ext ./cmd/maint || exit 1; \
	done
	cp $(CLIENTS)/maint-windows-amd64.exe $(CLIENTS)/proxytunnel.exe

# dist makes the release archives dist/maintproxy-<version>-linux-<cpu>.tar.gz: the three
# commands for that CPU, clients/ (every client of the tool bundle), README.md, examples/.
dist: clients
	@rm -rf dist/stage && mkdir -p dist/stage
	@for t in $(RELEASE_TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; name=maintproxy-$(VERSION)-$$os-$$arch; dir=dist/stage/$$name; \
		mkdir -p $$dir && \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -buildvcs=false \
			-ldflags "$(LDFLAGS)" -o $$dir/ ./cmd/... && \
		cp -r $(CLIENTS) README.md examples $$dir/ && \
		tar -C dist/stage -czf dist/$$name.tar.gz $$name && echo dist/$$name.tar.gz || exit 1; \
	done
	@rm -rf dist/stage

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x -count 6 ./bench/

fuzz:
	for f in FuzzParse FuzzPACRegexpMatchesParse; do $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime 60s -fuzzminimizetime 5s ./maintname/ || exit 1; done

clean:
	rm -rf $(BIN) dist demo-data
