# One entry point for setting up and running edgetrain on a fresh machine.
# torch==2.13.0 is installed first: here it resolves to a local CPU build, and once it is present
# the package's `torch>=2.4` requirement is satisfied without pulling the multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
EXTRAS ?= dev

.PHONY: setup bench models test lint format clean keras-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed

bench: setup
	$(BIN)/edgetrain bench

models: setup
	$(BIN)/edgetrain models

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Keras 3 + TensorFlow-CPU in their own environment, for benchmarks/train_step.py's side-by-side.
keras-venv:
	$(PYTHON) -m venv .venv-keras
	.venv-keras/bin/pip install --quiet keras tensorflow-cpu

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
