# sluice — run `make help` for the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
STACK := deploy/local/stack
GO_PACKAGES := ./schema/... ./producer/... ./consumer/... ./control/... ./operations/... ./admin/... ./internal/... ./cmd/... ./docs/...
BENCH_PEERS_COUNT ?= 3
# E2E_PARALLEL is how many of the end-to-end tests that may share the stack
# (see parallel in e2e/harness_test.go) run at once.
E2E_PARALLEL ?= 3
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/sluice
	go build -ldflags "-X main.version=$(VERSION)" -o bin/sluice ./cmd/sluice

.PHONY: up
up: ## start the local stack (Kafka + PostgreSQL A and B), installing what is missing
	$(STACK) up

.PHONY: down
down: ## stop the local stack
	$(STACK) down

.PHONY: cluster-up cluster-down
cluster-up: ## start a second, three-broker Kafka cluster (127.0.0.1:19091-19093) beside the stack
	$(STACK) cluster-up

cluster-down: ## stop and remove the three-broker cluster
	$(STACK) cluster-down

.PHONY: demo
demo: up build ## run the whole pipeline on the local stack and show both targets converge
	deploy/local/demo

.PHONY: lint
lint: ## go vet and gofmt
	go vet ./...
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

.PHONY: unit
unit: ## unit tests (no services), with the race detector
	go test -race -short -count=1 $(GO_PACKAGES)

.PHONY: layer
layer: up ## each package's tests against the real Kafka and PostgreSQL of the local stack (seconds, not minutes)
	eval "$$($(STACK) env)"; go test -race -count=1 -timeout 10m $(GO_PACKAGES)

.PHONY: integration
integration: up ## end-to-end tests against the local stack
	$(STACK) browser
	eval "$$($(STACK) env)"; go test -count=1 -timeout 60m -parallel $(E2E_PARALLEL) -v ./e2e/ 2>&1 | grep -vE '^\s+time=' | tee .stack/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go'

.PHONY: compose-check
compose-check: ## validate docker-compose.yml (with Debian's docker-compose when it can be installed)
	deploy/check-compose

.PHONY: bench
bench: up ## benchmarks on the local stack, each as a ratio of its raw baseline (kafka-go, COPY); writes docs/performance.md
	eval "$$($(STACK) env)"; go test -run '^$$' -bench . -benchtime 2s -count 6 ./producer/ ./internal/targetdb/ | tee .stack/bench.txt
	eval "$$($(STACK) env)"; go test -run '^$$' -bench BenchmarkDrain -benchtime 1x -count 6 ./consumer/ | tee -a .stack/bench.txt
	eval "$$($(STACK) env)"; go test -run '^$$' -bench 'BenchmarkDrainReplicas|BenchmarkDrainBacklog|BenchmarkIngestProcess' -benchtime 1x -count 2 -timeout 90m ./e2e/ | tee -a .stack/bench.txt
	go run golang.org/x/perf/cmd/benchstat@v0.0.0-20250813145418-2f7363a06fe1 .stack/bench.txt || true
	go run ./internal/benchreport -in .stack/bench.txt -peers .stack/bench-peers.txt -out docs

.PHONY: bench-peers
bench-peers: up build ## opt-in: Bento v1.20.0 vs sluice apply draining one backlog in the same run; writes .stack/bench-peers.txt, which make bench reports
	@bento="$$(deploy/bench-peers/bento/build)"; \
	eval "$$($(STACK) env)"; \
	SLUICE_PEER_BENTO="$$bento" SLUICE_PEER_SLUICE="$(CURDIR)/bin/sluice" go test -tags benchpeers -run '^$$' \
	  -bench BenchmarkPeerDrain -benchtime 1x -count $(BENCH_PEERS_COUNT) -timeout 60m ./deploy/bench-peers/ | tee .stack/bench-peers.txt

.PHONY: prometheus-check
prometheus-check: ## promtool: Prometheus config, alert rules and their unit tests
	deploy/check-prometheus

.PHONY: k8s-check
k8s-check: ## render deploy/kubernetes's overlays (kustomize), decode them strictly as API objects, check them against the sluice binary
	cd deploy/kubernetes/check && go vet ./... && go test -count=1 ./...

.PHONY: test
# test runs no separate unit stage: layer runs every test of every package
# (the unit tests too) with the race detector against the real services.
test: lint layer prometheus-check compose-check k8s-check integration ## everything: lint, layer (unit tests included), alerts, compose, Kubernetes manifests, end-to-end
