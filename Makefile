# Dialogue platform. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help setup install infra-up infra-down infra-status test test-unit lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv and install the project with its dev tools

setup: install infra-up  ## install everything and start the local infrastructure

infra-up: install  ## provision (first time) and start Kafka, Consul, FerretDB, MariaDB on 127.0.0.1
	$(BIN)/python -m infra.local up

infra-down:  ## stop the local infrastructure started by infra-up
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m infra.local down; fi

infra-status: install  ## show what runs, where, and whether it answers
	$(BIN)/python -m infra.local status

lint: install  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install lint  ## lint, then every test (starts the infrastructure it needs)
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install  ## only the unit tests (no services)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

clean: infra-down  ## stop everything and remove the run folder (caches are kept)
	rm -rf .run
