# LeadBridge. On a fresh machine: `make run` starts everything, `make test` runs the tests.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
export UV_LINK_MODE ?= copy

.PHONY: lint install helm up down env test test-unit schemas run demo bench bench-routing bench-sla bench-replicas bench-runner bench-insights vendor-uplot wrk chaos help

help:
	@echo "make lint   - the quality gate: ruff, then mypy (strict), both configured in pyproject.toml"
	@echo "make run    - start Kafka, PostgreSQL and the four services (Ctrl-C stops all)"
	@echo "make test   - run the whole test suite against a real Kafka broker and PostgreSQL"
	@echo "make up / make down - start / stop the local Kafka + PostgreSQL only (make up BROKERS=3: a 3-broker cluster)"
	@echo "make helm   - make helm available for the chart test (builds the pinned version with Go, once)"
	@echo "make schemas - regenerate the JSON Schemas and AsyncAPI document from the event models"
	@echo "make demo   - post a realistic mix of leads to a running system (make run) and print the outcome"
	@echo "make bench  - intake throughput and capture->routed latency beside raw Kafka/PostgreSQL rates"
	@echo "make bench-routing / make bench-sla - routing fairness and SLA timer benchmarks"
	@echo "make bench-runner - the consumer runner's own CPU per event (decode, claim, outbox, commit, offsets)"
	@echo "make chaos  - crash every part of a system of its own under load, then count lost leads (ARGS=\"--leads 500\"; ARGS=\"--brokers 3\": on a 3-broker cluster)"
	@echo "make bench-insights - the managers' views API with 100,000 leads in the read model (p50/p95 per view)"
	@echo "make vendor-uplot - re-fetch insights' vendored uPlot at its pinned version and check its integrity"
	@echo "make bench-replicas - pipeline throughput with 1 and 2 processes per service on a 3-broker cluster"

$(UV):
	@command -v python3 >/dev/null || { echo "error: Python 3.11+ is required"; exit 1; }
	python3 -m pip install --user --quiet uv || python3 -m pip install --quiet uv

# --compile-bytecode: every service process imports ~800 modules; from source (no __pycache__, e.g. under
# PYTHONDONTWRITEBYTECODE) that took 2.2 s of CPU per start, from bytecode 1.1 s (once ~10 s, then ~0.3 s a sync)
install: $(UV)
	$(UV) sync --all-packages --frozen --compile-bytecode

up: install
	$(UV) run leadbridge-devstack up $(if $(BROKERS),--brokers $(BROKERS))

down:
	$(UV) run leadbridge-devstack down

env:
	@$(UV) run leadbridge-devstack env

helm:
	@bash deploy/helm/install-helm.sh

lint: install
	$(UV) run ruff check .
	$(UV) run mypy

test: install helm
	@$(UV) run leadbridge-devstack check --for test
	$(UV) run pytest

test-unit: install
	$(UV) run pytest -m "not integration"

schemas: install
	$(UV) run leadbridge-schemas

run: install
	@$(UV) run leadbridge-devstack check --for run
	$(if $(BROKERS),LEADBRIDGE_KAFKA_BROKERS=$(BROKERS)) $(UV) run python -m leadbridge_devstack.run_all

demo: install
	$(UV) run python benchmarks/demo.py

# every benchmark starts the (durable) PostgreSQL and Kafka it needs itself: no `make up` first
wrk:
	@command -v wrk >/dev/null || { sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get install -y -qq wrk || { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq wrk; }; }

bench: install wrk
	$(UV) run python benchmarks/bench_system.py $(BENCH_ARGS)

bench-replicas: install
	$(UV) run python benchmarks/bench_replicas.py

bench-runner: install
	$(UV) run python benchmarks/bench_runner.py $(BENCH_ARGS)

bench-routing: install
	$(UV) run python -m leadbridge_router.bench

bench-sla: install
	$(UV) run python benchmarks/stack.py -- $(UV) run python -m leadbridge_sla_watcher.bench $(BENCH_ARGS)
	@echo "Monday 09:00: 100,000 deadlines due in the same second"
	$(UV) run python benchmarks/stack.py -- $(UV) run python -m leadbridge_sla_watcher.bench \
	  --sizes 100000 --due 100000 --window 1 --monday

bench-insights: install
	$(UV) run python benchmarks/bench_insights.py

vendor-uplot:
	python3 services/insights/scripts/vendor_uplot.py

chaos: install
	$(UV) run python -m leadbridge_devstack.chaos $(ARGS)
