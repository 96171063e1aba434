# FisherLab: `make app` launches the app, `make test` runs the whole test suite.
# Both create .venv and install everything on first use; re-running reinstalls nothing
# unless pyproject.toml changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8501
# The CPU build of torch (a wheel of it lies on this machine's disk, found through pip's
# find-links); the CPU index is only a fallback. A multi-GB CUDA build is never pulled.
TORCH  ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: app test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)" --extra-index-url $(TORCH_INDEX)
	@touch $@

$(VENV)/.app: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.app
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

app: $(VENV)/.app
	$(BIN)/streamlit run app/main.py --server.address $(HOST) --server.port $(PORT)

test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .

bench: $(VENV)/.dev
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python bench/bench_fv.py
	$(BIN)/python bench/bench_scores.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
