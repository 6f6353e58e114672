# Dialogue platform. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.lock | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
WORKERS ?=
COMPOSE ?= docker compose
# make dev KAFKA_NODES=3: the local Kafka as a 3-node cluster (LOCAL_KAFKA_NODES).
ifneq ($(KAFKA_NODES),)
export LOCAL_KAFKA_NODES := $(KAFKA_NODES)
endif

.PHONY: help setup install lock infra-up infra-down infra-status test test-unit lint clean
.PHONY: dev dev-down scale demo up down logs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{ printf "%-16s%s\n", $$1, $$2 }'

# The code runs from the repository (python -m gateway, ...): only the locked
# dependencies are installed, exactly as requirements-dev.lock pins them.
$(STAMP): requirements-dev.lock
	@test -x $(BIN)/pip || $(PYTHON) -m venv --clear $(VENV)  # --clear: a venv left without pip
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.lock
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv with the locked dependencies and dev tools

lock: install  ## rewrite requirements*.lock from pyproject.toml (after changing a dependency)
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --quiet \
		-o requirements.lock --custom-compile-command "make lock"
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes \
		--quiet -o requirements-dev.lock --custom-compile-command "make lock"

setup: install infra-up  ## install everything and start the local infrastructure

infra-up: install  ## provision (first time) and start Kafka, Consul, PostgreSQL + FerretDB, MariaDB on 127.0.0.1
	$(BIN)/python -m infra.local up

# Stopping reads the pid files under .run with the project's Python. With .venv gone (deleted
# to repair it) and processes recorded there, it is made again first: skipping the stop left
# them running, and `clean` then deleted the pid files nothing else can stop them by.
VENV_FOR_PIDS = @if [ ! -x $(BIN)/python ] && [ -n "$$(find .run -name '*.pid' 2>/dev/null | head -n 1)" ]; then \
	echo "processes recorded in .run and no .venv to stop them with: making it first"; \
	$(MAKE) --no-print-directory install; fi

infra-down:  ## stop the local infrastructure started by infra-up
	$(VENV_FOR_PIDS)
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m infra.local down; fi

infra-status: install  ## show what runs, where, and whether it answers
	$(BIN)/python -m infra.local status

lint: install  ## ruff, mypy, and no fixed sleep or wall-clock assertion in tests/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m tests.check_waits

test: install lint  ## lint, then every test (starts the infrastructure it needs)
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: faults
faults: install  ## fault-injection suite, longer phases (FAULTS_SCALE, default 3); summaries in reports/faults.txt
	@mkdir -p reports && : > reports/faults.txt
	FAULTS_SCALE=$${FAULTS_SCALE:-3} FAULTS_REPORT=reports/faults.txt $(BIN)/pytest -m faults -s tests/faults $(PYTEST_ARGS)
	@cat reports/faults.txt

test-unit: install  ## only the unit tests (no services)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

# dev-down first and in this order (even with -j): .run holds the pid files it stops by.
# purge stops the infrastructure, then removes the run folder and, as root, PostgreSQL's
# folder in /var/tmp when the run folder was out of the postgres user's reach: left
# behind, FerretDB kept the old chats while MariaDB's user ids started again at 1.
clean:  ## stop everything, remove the run folder and PostgreSQL's data (caches are kept)
	@$(MAKE) --no-print-directory dev-down
	$(VENV_FOR_PIDS)
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m infra.local purge; else rm -rf .run; fi

# --- the whole platform as local processes (infra/dev), no Docker -----------------------

dev: install  ## run it: infrastructure, the gateway on :8007 and two workers (WORKERS=N, KAFKA_NODES=3); prints what is where
	$(BIN)/python -m infra.dev up $(if $(WORKERS),--workers $(WORKERS))

dev-down:  ## stop what make dev started (infrastructure that was already running keeps running)
	$(VENV_FOR_PIDS)
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m infra.dev down; fi

scale: install  ## add or remove local workers while make dev runs: make scale WORKERS=3
	@test -n "$(WORKERS)" || { echo "usage: make scale WORKERS=N" >&2; exit 2; }
	$(BIN)/python -m infra.dev scale $(WORKERS)

demo: install  ## demo data through the API of make dev: two users, a chat, a few messages
	$(BIN)/python -m infra.dev demo

# Any SOAK_* variable given to make (SOAK_POSTS=40, SOAK_SOCKETS=500, ...) reaches the soak
# through the environment: `python -m bench.soak --help` lists them; SOAK_ARGS adds flags
# (SOAK_ARGS=--use-running). docs/soak.md says what it samples and how to read the PNG.
SOAK_MINUTES ?= 30
.PHONY: soak
soak: install  ## soak: make dev's platform under steady mixed load for SOAK_MINUTES (30); CSV, PNG, summary in reports/soak-*/
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# --- the production-like topology in Docker (docker-compose.yml) ------------------------

.env:
	$(PYTHON) -m infra.docker.dotenv .env

up: .env  ## docker compose: build, start and wait for the full topology (sharded MongoDB, ...)
	$(COMPOSE) up -d --build --wait

down:  ## docker compose: stop and remove the containers (volumes are kept)
	$(COMPOSE) down

logs:  ## docker compose: follow the logs of every service
	$(COMPOSE) logs -f --tail=100
