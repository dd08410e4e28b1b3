# daai-backup: the README's two commands, plus lint and bench.
# Works on a fresh machine with Python 3.11 and make: installs uv if missing, then
# creates the environment from the lock file.

SHELL := /bin/bash
PYTHON ?= python3
# uv if on PATH, else the one pip installs (`python -m uv` works for a pip-installed uv).
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
# Ports of the embedded stack: `make up MONGO_PORT=27900 PREFECT_PORT=4300`.
MONGO_PORT ?= 27817
PREFECT_PORT ?= 4200
# Arguments of `make cli`: `make cli ARGS="list --tenant acme-hr"`.
ARGS ?= --help

.PHONY: up cli test test-e2e lint bench env uv

uv:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || { \
		echo "[daai-backup] installing uv with pip"; \
		$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --quiet uv; }

env: uv
	@$(UV) sync --frozen --compile-bytecode
	@$(UV) run --frozen python -m compileall -q daai_backup tasks flows deployments cli

## up: SecantusDB + demo tenants + local storage + dev key + Prefect server + serve all
up: env
	@$(UV) run --frozen python -m deployments.stack up \
		--mongo-port $(MONGO_PORT) --prefect-port $(PREFECT_PORT)

## cli: one daai-backup command, with the settings of the running stack (var/stack.env)
cli: env
	@set -a; if [ -f var/stack.env ]; then . var/stack.env; fi; set +a; \
		$(UV) run --frozen daai-backup $(ARGS)

## test: the test suite against real servers (SecantusDB, moto S3, Prefect)
test: env
	@$(UV) run --frozen pytest

## test-e2e: the end-to-end runs (make up's stack, a work pool, an authenticated server, the production layout on PostgreSQL); CI runs them too
test-e2e: env
	@$(UV) run --frozen pytest -m e2e

## lint: ruff and mypy (strict)
lint: env
	@$(UV) run --frozen ruff check
	@$(UV) run --frozen ruff format --check
	@$(UV) run --frozen mypy

## bench: every benchmark under bench/ (results: bench/RESULTS.md)
bench: env
	@for script in bench/bench_*.py; do \
		echo "== $$script"; $(UV) run --frozen python $$script || exit 1; done
