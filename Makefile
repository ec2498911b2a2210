# fedmsg-relay: build, test and package targets users and scripts rely on.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0)
LDFLAGS   := -X github.com/fedora-infra/fedmsg-relay/internal/version.Version=$(VERSION)
COMMANDS  := $(notdir $(wildcard cmd/*))
FUZZTIME  ?= 15s

.PHONY: build test fuzz bench rpm run clean

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# Everything: unit, integration (real libzmq peers), packaging and host tests,
# then a short fuzz run of the validation path.
test: build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) fuzz

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./internal/wire

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 ./bench/...

rpm:
	./rpm/build-rpm.sh

run: build
	$(BIN)/fedmsg-relay --config=""

clean:
	rm -rf $(BIN) build
