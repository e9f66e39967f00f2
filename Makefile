# Two commands do all set-up on a fresh machine: `make quickstart` and `make test`.
# TORCH picks the PyTorch build: the CPU default below, or e.g. `make install TORCH=torch` for PyPI's CUDA build.
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: install test lint docs quickstart mutation

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# ruff, then the dependency contracts between the stages (pyproject.toml's [tool.importlinter])
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

# The test command: lint, the test suite (with the notebook and the docs' generated tables), the docs site
test: lint
	$(BIN)/python -m pytest
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

quickstart: install
	$(BIN)/bert4rec quickstart

# How strong the tests are: mutation testing of the modules that decide results and safety (tens of minutes; not
# part of `make test`). Writes benchmarks/results/mutation.json; then benchmarks/doc_tables.py updates the docs.
mutation: install
	$(BIN)/pip install -q -e '.[dev,mutation]'
	$(BIN)/python benchmarks/mutation.py
