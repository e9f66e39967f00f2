# Two commands do all set-up on a fresh machine: `make quickstart` and `make test`.
# TORCH picks the PyTorch build: the CPU default below, or e.g. `make install TORCH=torch` for PyPI's CUDA build.
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: install test lint quickstart bench

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest

quickstart: install
	$(BIN)/bert4rec quickstart
