# fedmsg-relay: build, test and package targets users and scripts rely on.
# The toolchain scripts/install-deps installs, else the one on PATH.
GO        ?= $(firstword $(wildcard /usr/local/go/bin/go) go)
BIN       := bin
# The version number lives in the spec alone; a build from a checkout adds
# the commit.
VERSION   ?= $(shell sed -n 's/^Version:[[:space:]]*//p' fedmsg-relay.spec)$(shell git describe --always --dirty 2>/dev/null | sed 's/^/+git/')
LDFLAGS   := -X github.com/fedora-infra/fedmsg-relay/internal/version.Version=$(VERSION)
# Fuzz budgets are counts, not durations: with a duration Go's fuzz
# coordinator can report its own deadline as a failure (golang/go#75804).
FUZZTIME  ?= 100000x
# Package roots, named rather than ./... so that build/ (rpmbuild trees,
# test host root file systems) is never walked.
PKGS      := ./cmd/... ./internal/... ./test/... ./bench/...
# Host-crash tests: a module of its own (go-fuse stays out of the relay's
# dependencies and vendor tarball), which ./test/... does not reach.
CRASH     := test/crash

.PHONY: build test fuzz bench rpm man run clean

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# Everything: unit, integration (real libzmq peers), packaging, host and
# host-crash tests, then a short fuzz run of the validation path.
test: build
	$(GO) vet $(PKGS)
	cd $(CRASH) && $(GO) vet ./...
	$(GO) test -count=1 -timeout 30m $(PKGS)
	cd $(CRASH) && $(GO) test -count=1 -timeout 5m ./...
	$(MAKE) fuzz

# Short fuzz runs of every parser that takes input from the network or files.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/wire
	$(GO) test -run '^$$' -fuzz '^FuzzCanonical$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/pyjson
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/signing
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/fedmsgconf
	$(GO) test -run '^$$' -fuzz '^FuzzPeerStream$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/client
	$(GO) test -run '^$$' -fuzz '^FuzzReadRecord$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/spool
	$(GO) test -run '^$$' -fuzz '^FuzzReadMessage$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/inbound
	$(GO) test -run '^$$' -fuzz '^FuzzReadLoop$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/outbound

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 ./bench/... ./test/clients/...
	$(GO) test -run '^$$' -bench . -benchtime 3s -count 1 ./internal/amqpbridge

rpm:
	./rpm/build-rpm.sh

# Man pages from their Markdown (the spec runs the same go-md2man).
MANPAGES := $(patsubst docs/man/%.md,build/man/%,$(wildcard docs/man/*.md))
man: $(MANPAGES)
build/man/%: docs/man/%.md
	@mkdir -p build/man
	go-md2man -in $< -out $@

run: build
	$(BIN)/fedmsg-relay --config=""

clean:
	# Keeps build/cache: the test hosts' root file system takes minutes to make.
	rm -rf $(BIN) build/rpmbuild build/SRPMS build/RPMS build/man
