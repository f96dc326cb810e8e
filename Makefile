# pennyworth — the commands a developer types. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
# Python 3.12 exactly: Chalice picks the Lambda runtime from it, and on 3.11
# it cannot package litellm/tiktoken (manylinux_2_28 wheels).
PYTHON ?= $(shell command -v python3.12 2>/dev/null || command -v python3 2>/dev/null)
PYTEST_ARGS ?=
STAGE ?= dev

.PHONY: help dev test lint lock bench clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@if [ ! -x "$(PY)" ]; then \
	  if [ -z "$(PYTHON)" ] || ! "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then \
	    echo "error: Python 3.12 is required (found: $${PYTHON:-none}). Install it (e.g. 'pyenv install 3.12') or run 'make PYTHON=/path/to/python3.12 ...'." >&2; \
	    exit 1; \
	  fi; \
	  echo "Creating $(VENV) with $$($(PYTHON) --version)"; \
	  "$(PYTHON)" -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

dev: $(VENV)/.installed ## Run the local stack (moto, Bedrock emulator, chalice local) until Ctrl-C
	@$(PY) -m local.devstack

test: $(VENV)/.installed ## Run the whole test suite
	LITELLM_LOCAL_MODEL_COST_MAP=True $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed ## ruff over the project
	$(VENV)/bin/ruff check .


lock: ## Re-pin requirements*.txt (exact versions + hashes) from requirements*.in
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile --python-version 3.12 --generate-hashes --no-header -q requirements.in -o requirements.txt
	$(VENV)/bin/uv pip compile --python-version 3.12 --generate-hashes --no-header -q requirements-dev.in -o requirements-dev.txt

bench: $(VENV)/.installed ## Benchmarks (print JSON)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(PY) bench/overhead.py

clean: ## Remove the venv, caches and build output
	rm -rf $(VENV) build .pytest_cache .ruff_cache
