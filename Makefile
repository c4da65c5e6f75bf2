# Tributary: `make demo` runs the main job on sample data, `make test` runs every test.
# Both install and start what they need. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
PROFILE ?= release
BIN := target/$(PROFILE)
INFRA := .infra
# The chains: the names of the chain registry, schemas/chains.txt (one line a chain; the same
# names as `tributary chains`), read here so that no list of chains is written out twice.
CHAINS := $(shell awk '/^[a-z]/ {print $$1}' schemas/chains.txt)
ifeq ($(CHAINS),)
$(error no chain read from schemas/chains.txt (run make in the repository root))
endif
SERVICES := $(CHAINS) sink ingest serve

.PHONY: help
help: ## List every target
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the Debian packages the build needs (once)
	@bash dev/system-deps.sh

.PHONY: build
build: deps ## Build every service and tool (release)
	$(CARGO) build --release --workspace --bins

.PHONY: infra-up
infra-up: ## Start Kafka, the schema registry and HDFS (idempotent); writes .infra/env
	@bash dev/infra.sh up

.PHONY: infra-down
infra-down: ## Stop exactly what infra-up started
	@bash dev/infra.sh down

.PHONY: infra-status
infra-status: ## Say what of the local infrastructure runs
	@bash dev/infra.sh status

.PHONY: topics
topics: build infra-up ## Create the topics of the contracts
	@set -a; . $(INFRA)/env; set +a; $(BIN)/tributary topics

.PHONY: up
up: topics ## Start every chain service and the sink in the background (logs in .infra/logs/)
	@bash dev/services.sh up $(SERVICES)

.PHONY: down
down: ## Stop the services started by `make up`
	@bash dev/services.sh down $(SERVICES)

.PHONY: demo
demo: up ## The main job: infrastructure, topics, services, sample data, and what became of it
	@bash dev/demo.sh

.PHONY: lint
lint: ## rustfmt and clippy, as CI runs them
	$(CARGO) fmt --all -- --check
	rustfmt --edition 2021 --check providers/*/*.rs services/*/loadgen.rs # compiled via macro-declared #[path] modules, which cargo fmt does not follow
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

.PHONY: test
test: deps ## Everything: build, lint, start the infrastructure, run every test, stop it
	@bash dev/test.sh

.PHONY: bench
bench: build infra-up ## Throughput, CPU per event, memory per key; writes bench/results/latest.md
	@bash bench/run.sh

.PHONY: chaos
chaos: build infra-up ## Fault matrix: every scenario 3x under load, one end-to-end checker; writes bench/results/chaos.md
	@set -a; . "$${INFRA_DIR:-$(INFRA)}/env"; set +a; $(BIN)/chaos

.PHONY: clean
clean: down infra-down ## Stop everything and delete local data (.infra/data, .lake)
	rm -rf $(INFRA)/data .lake
