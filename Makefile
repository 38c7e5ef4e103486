# ars — make help lists every target.
SHELL := /bin/bash
GO ?= go
BIN := bin
ARS := $(BIN)/ars
ARS_LAB := $(BIN)/ars-lab
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(BIN)/staticcheck-$(STATICCHECK_VERSION)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
PKGS := ./...
FUZZTIME ?= 60s

.DEFAULT_GOAL := help

.PHONY: help
help: ## List every target with what it does
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the ars binary (the product) and ars-lab (lab, bench and chaos tooling) into bin/
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(ARS) ./cmd/ars
	$(GO) build -ldflags "$(LDFLAGS)" -o $(ARS_LAB) ./cmd/ars-lab

.PHONY: test
test: build ## Run every test with the race detector (unit, in-process cluster, three agent processes)
	ARS_BIN=$(abspath $(ARS)) ARS_LAB_BIN=$(abspath $(ARS_LAB)) $(GO) test -race -count=1 -timeout 15m $(PKGS)

.PHONY: test-short
test-short: ## Run the fast unit tests only (no race detector, -short)
	$(GO) test -short -count=1 $(PKGS)

$(STATICCHECK):
	@mkdir -p $(BIN)
	GOBIN=$(abspath $(BIN)) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(BIN)/staticcheck $(STATICCHECK)

.PHONY: lint
lint: $(STATICCHECK) ## go vet, gofmt check, staticcheck (installed into bin/ on first use) and every relative Markdown link
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l .); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(STATICCHECK) $(PKGS)
	$(GO) test -count=1 ./docs/

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 60s)
	@grep -rl --include='*_test.go' '^func Fuzz' . | while read f; do \
		pkg=./$$(dirname $${f#./}); \
		for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | sed 's/func //'); do \
			echo "== $$pkg $$t ($(FUZZTIME))"; \
			GO=$(GO) test/fuzz/run-one.sh $$pkg $$t $(FUZZTIME) || exit 1; \
		done; \
	done

.PHONY: fuzz-short
fuzz-short: ## Run every fuzz target briefly (CI)
	@$(MAKE) --no-print-directory fuzz FUZZTIME=10s

.PHONY: bench
bench: lab-deps images build ## The downtime benchmark on the lab (root; VMs and containers): scenarios x modes x 10 trials, both profiles -> bench/results/latest.{json,png,md} (BENCH_ARGS=...)
	$(ARS_LAB) bench $(BENCH_ARGS)

.PHONY: scale
scale: lab-deps build ## The scale benchmark on the lab (root): N services x 4 replicas (the test responder), three nodes; idle, DoS, concurrent DoS, kill -9 of the leader -> bench/results/scale.{json,png} (SCALE_ARGS=...)
	$(GO) build -o $(BIN)/dnsd ./test/dnsd
	$(ARS_LAB) scale $(SCALE_ARGS)

.PHONY: bench-micro
bench-micro: ## Raft apply latency p50/p99 (follower, leader); vSphere Attach with a persistent session vs per-operation login
	$(GO) test -run '^$$' -bench . -benchtime 2000x -count 1 ./test/e2e/
	$(GO) test -run '^$$' -bench Attach -benchtime 20x -count 1 ./controller/vsphere/

.PHONY: demo
demo: lab-deps build ## The lab end to end (root): DoS, exploit, kill -9 of the leader, another DoS, history (DEMO_ARGS=--keep leaves it up)
	ARS_LAB=$(abspath $(ARS_LAB)) ./test/lab-demo.sh $(DEMO_ARGS)

.PHONY: demo-loopback
demo-loopback: build ## Three ars agents on 127.0.0.1-3 without the lab: apply a service, kill the leader, time the new one
	ARS=$(abspath $(ARS)) ./test/demo.sh $(DEMO_ARGS)

.PHONY: e2e
e2e: build ## Agent processes: deploy/ examples (kill -9 of the leader, a rolling upgrade from v0.1.0) and the lab (ars-lab up, DoS, exploit, down)
	ARS_BIN=$(abspath $(ARS)) ARS_LAB_BIN=$(abspath $(ARS_LAB)) $(GO) test -race -count=1 -run 'TestProcess' -v ./test/...

CHAOS_SEED ?= 1

.PHONY: chaos
chaos: lab-deps images build ## The chaos suite on its own lab (root; three VMs and a container): 100 seeded schedules of attacks and faults, invariants checked -> bench/results/chaos.json (CHAOS_ARGS=...)
	$(ARS_LAB) chaos -seed $(CHAOS_SEED) -schedules 100 $(CHAOS_ARGS)

.PHONY: chaos-short
chaos-short: lab-deps build ## A few chaos schedules (CI, a few minutes; root): the same checks, no summary file
	$(ARS_LAB) chaos -seed $(CHAOS_SEED) -schedules 4 -out '' $(CHAOS_ARGS)

# prometheus ships promtool, which checks the alert rules in deploy/; zsh loads
# the completion script in a test. e2fsprogs (mkfs.ext4), util-linux
# (fsfreeze) and mount make and fail the chaos lab's node disks.
LAB_PACKAGES := bind9 unbound knot-resolver pdns-recursor dnsutils iputils-arping iproute2 nftables iptables dnsdist dnsperf prometheus zsh chromium e2fsprogs util-linux mount

.PHONY: deb
deb: ## Build the Debian package (static ars, systemd unit, system user, completions) into bin/ with dpkg-deb
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(BIN)/deb/ars ./cmd/ars
	deploy/deb/build.sh $(BIN)/deb/ars $(VERSION) $(BIN)

.PHONY: lab-deps
lab-deps: ## Install the lab's and tests' packages (DNS servers, arping, iproute2, promtool, zsh, headless Chromium) from Debian; needs root, skips what is installed
	@missing=$$(for p in $(LAB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		case "$$missing" in *prometheus*) \
			if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then \
				echo "prometheus was installed for promtool only: its server is stopped and disabled"; \
				systemctl disable --now prometheus >/dev/null 2>&1 || true; \
			fi;; \
		esac; \
	else echo "lab packages: all installed"; fi

.PHONY: images
images: ## Build the container images into the local Docker engine (the controller node ars/ars; the Docker driver's address helper ars/nethelper; the lab's test DNS responder, a minimal Debian for the package test, and bind9, unbound, knot-resolver, pdns-recursor from Debian); skips images already built
	GO=$(GO) VERSION=$(VERSION) ./images/build.sh $(IMAGES)

.PHONY: clean
clean: ## Remove build output
	rm -rf $(BIN)
