# The template's own tasks. `make` lists them. Everything runs in .venv, which
# `make setup` creates from pyproject.toml's pinned dev group, with the test harness
# (harness/: the mlops_harness package, editable), and tests/tools for Node.
.DEFAULT_GOAL := help
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9

.PHONY: help
help: ## Show the tasks
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# npm runs no install script (--ignore-scripts): one may reach GitHub, which CI cannot,
# and neither Node tool has one.
.PHONY: setup
setup: $(BIN)/python ## Create .venv with the pinned tools and the harness, and the Node test tools
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --group dev --editable ./harness
	npm ci --prefix tests/tools --no-audit --no-fund --silent --ignore-scripts

.PHONY: demo
demo: setup ## Render a project at the highest built level and run it end to end (VERBOSE=1: all output)
	$(BIN)/python scripts/demo.py

# The suite shares out over one test process per CPU (JOBS=1 runs it in this one); the
# tests that share a trained project stay in one process (each test module's markers say
# how it shares out: see harness/mlops_harness/scheduling.py).
JOBS ?= auto
XDIST = $(if $(filter 1,$(JOBS)),,-n $(JOBS))

.PHONY: test
test: setup ## Run the whole test suite: render every level, execute the built ones
	$(BIN)/python -m pytest $(XDIST)

.PHONY: test-once
test-once: setup ## Only the checks that do not depend on the level (CI runs them once)
	LEVEL_INDEPENDENT=only $(BIN)/python -m pytest $(XDIST)

.PHONY: test-fast
test-fast: setup ## Only the fast tier: renders, answers, file sets, workflows
	$(BIN)/python -m pytest $(XDIST) -m "not slow"

# Material for MkDocs prints a notice about MkDocs 2 on every build: not ours to act on.
MKDOCS = NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

.PHONY: docs
docs: setup ## Regenerate docs/reference.md, then build the site strictly into build/site
	$(BIN)/python scripts/docs.py
	$(MKDOCS) build --strict

.PHONY: docs-serve
docs-serve: setup ## Preview the docs site at http://127.0.0.1:8000 (rebuilds on change)
	$(MKDOCS) serve

.PHONY: release-tags
release-tags: setup ## Make the release tags releases.yml records and this clone lacks
	$(BIN)/python scripts/release_tags.py

.PHONY: levels
levels: setup ## Print the levels copier.yml offers (the CI matrix reads this)
	@$(BIN)/python scripts/levels.py

.PHONY: lint
lint: setup ## Lint and format-check the template's own Python
	$(BIN)/ruff check extensions harness scripts tests
	$(BIN)/ruff format --check extensions harness scripts tests

.PHONY: clean
clean: ## Remove the demo project and caches (keeps .venv)
	rm -rf build .cache .pytest_cache .ruff_cache
