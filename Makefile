# The README's quick start: `make run` and `make test` on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test check lint typecheck imports docs docs-build format bench vendor clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fleethub needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# `make run` installs a copy, not an editable install (setuptools prints a notice on every editable
# install), and reinstalls it when a source changes; a developer's editable install (.dev) serves as is.
SOURCES := $(wildcard */*.py */*/*.py */*/*/*.py migrations/*/*.sql fleethub/*.toml)

$(VENV)/.runtime: pyproject.toml $(SOURCES) | $(BIN)/python
	@if [ -f $(VENV)/.dev ] && [ $(VENV)/.dev -nt pyproject.toml ]; then :; else $(BIN)/python -m pip install --quiet .; fi
	@touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	@touch $@

run: $(VENV)/.runtime
	$(BIN)/python -m fleethub demo

# Worker processes for pytest (pytest-xdist): most tests wait on sockets, subprocesses and commits, so on
# a 2-core machine three workers beat two, and four gain nothing more (docs/development.md).
# `make test TEST_WORKERS=0` runs serially, in one process.
# --dist loadscope (as tests/conftest.py refines it): a module per worker, and the browser tests on one.
TEST_WORKERS ?= 3
TEST_DIST    ?= loadscope

test: check
	$(BIN)/pytest -n $(TEST_WORKERS) $(if $(filter 0,$(TEST_WORKERS)),,--dist $(TEST_DIST))

check: lint typecheck imports docs-build

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

# The layers and public surfaces ([tool.importlinter] in pyproject.toml; docs/layout.md).
imports: $(VENV)/.dev
	$(BIN)/lint-imports

# The manual (docs/, mkdocs.yml): built with --strict, and a broken link or a stale generated page fails
# `make check`; `make docs` also serves it at http://127.0.0.1:8000/ and rebuilds on every change.
export NO_MKDOCS_2_WARNING := 1
docs-build: $(VENV)/.dev
	$(BIN)/python -m fleethub.reference check
	$(BIN)/mkdocs build --strict --quiet

# Regenerates the reference pages (docs/reference/) from the code first.
docs: $(VENV)/.dev
	$(BIN)/python -m fleethub.reference write
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/mkdocs serve

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.dev
	$(BIN)/python -m bench

# Front-end work only: fetch the console's pinned libraries (console/vendor.toml) from the npm
# registry into console/web-ui/vendor/. The result is committed; running the hub never needs it.
vendor: | $(BIN)/python
	$(BIN)/python -m console.vendor

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache build *.egg-info
