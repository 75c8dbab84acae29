# tether — the two commands that matter on a fresh machine:
#   make demo   the seed's walkthrough (MySQL keeps its data across a drain) on the local AWS world
#   make test   every test (what CI runs, through .ci/run)
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

GO      ?= go
BIN     ?= $(CURDIR)/bin
GOFLAGS_STATIC := CGO_ENABLED=0
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build agent bootstraps release test unit lint fmt-check vet demo world chaos bench bench-agent clean

all: build

build: agent bootstraps

## agent: the static tether-agent binary
agent:
	@mkdir -p $(BIN)
	$(GOFLAGS_STATIC) $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/tether-agent ./agent/cmd/tether-agent

## release: tether-agent for linux/amd64 and linux/arm64 (static, stripped, VERSION stamped), each
## archive with the systemd unit and install.sh, plus SHA256SUMS, in $(BIN)/release
release:
	bash agent/packaging/release.sh "$(VERSION)" "$(BIN)/release"

## bootstraps: the Lambda functions, built natively for the local world
bootstraps:
	@if [ -f functions/Makefile ]; then $(MAKE) -C functions bootstraps OUT=$(BIN)/functions; fi

## test: lint, vet and every Go test (root needed for loop devices, mounts and dockerd)
test: lint vet
	$(GO) test -count=1 -p 2 -timeout 40m ./...

lint: fmt-check
	@if [ -f template.yaml ]; then echo "cfn-lint template.yaml"; cfn-lint template.yaml; fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## demo: the seed's walkthrough (MySQL keeps its row across a drain) on the local AWS world (root).
## DEMO_FLAGS=-profile=instant for a quick run, -functions=inprocess to run the functions in-process.
demo:
	$(GO) run ./test/cmd/tetherdemo $(DEMO_FLAGS)

## world: a local AWS world to drive with the aws CLI (root; Ctrl-C tears it down). It prints
## AWS_ENDPOINT_URL=... and TETHER_WORLD_ENV=<file>: `source $$TETHER_WORLD_ENV`, then type the seed's steps.
WORLD_FLAGS ?= --instances 2 --azs 1 --profile realistic --hosts real --functions rie
world:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/tetherworld ./test/cmd/tetherworld
	$(BIN)/tetherworld $(WORLD_FLAGS)

## chaos: seeded chaos run (CHAOS_SEED, CHAOS_HANDOFFS, CHAOS_KINDS, CHAOS_WEIGHTS, CHAOS_FAULTS,
## CHAOS_TEAR_RATE, CHAOS_SHAPE, CHAOS_PROFILE, CHAOS_INTERVAL, CHAOS_MAX_RUN, CHAOS_KEEP_GOING,
## CHAOS_LOG); exit 1 on a violation. Every kind is drawn by default, among them hosts that go
## away: scale-in (an Auto Scaling member leaves through tether's termination hook),
## spot-interrupt (the Spot warning, then the member goes), hang-member (a member hangs; tether's
## HungHostAction stop stops it); launch-member brings the group back to size. grow (a revision
## with a larger driverOpt size) and az-move (a revision placed in another AZ, azmove=snapshot) come
## at most once per service; the final checks account for every move's old
## volume and snapshot
chaos:
	$(GO) run ./test/cmd/tetherchaos

## bench: tether's handoffs on the realistic local world (one at a time on real hosts, 200 at
## once under EC2's throttling, hosts that go away: dead host, scale-in through the termination
## hook), the agent benchmarks, bootstrap size and cold init; the table
## on stdout, the figures as JSON in $(BENCH_OUT) when set (root, as make test)
bench:
	$(GO) run ./test/cmd/tetherbench -out "$(BENCH_OUT)"

## bench-agent: first-use format of a blank 1 TiB device, data path through tether vs a direct
## mount, container start with a tether volume vs the local driver (ratios from one run)
bench-agent:
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 5x ./agent/cmd/tether-agent/
	$(GO) test -count=1 -run '^$$' -bench ContainerStart -benchtime 30x ./agent/driver/

clean:
	rm -rf $(BIN)
