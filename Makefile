# FisherLab: `make app` launches the app, `make test` runs the whole test suite, `make notebook`
# opens notebooks/ in JupyterLab. All create .venv and install everything on first use;
# re-running reinstalls nothing unless pyproject.toml changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8501
NOTEBOOK_PORT ?= 8888
# More `jupyter lab` options for `make notebook`, e.g. NOTEBOOK_ARGS=--allow-root in a container.
NOTEBOOK_ARGS ?=
# JupyterLab's settings for this environment only: double-clicking a jupytext .py file in
# notebooks/ opens it as a notebook (jupytext's default viewer for it is the text editor).
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings
# The CPU build of torch: its wheel lies on this machine's disk and pip finds it through its
# configured find-links. Pinning the +cpu local version means a machine without that wheel
# fails loudly instead of pulling a multi-GB CUDA build from PyPI.
TORCH  ?= torch==2.13.0+cpu


.PHONY: app test lint bench notebook clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	@touch $@

$(VENV)/.app: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.app
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

$(VENV)/.notebook: pyproject.toml $(VENV)/.app
	$(BIN)/pip install -q -e ".[notebook]"
	@mkdir -p $(LAB_SETTINGS)
	@test -f $(LAB_SETTINGS)/overrides.json || echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' > $(LAB_SETTINGS)/overrides.json
	@touch $@

app: $(VENV)/.app
	$(BIN)/streamlit run app/main.py --server.address $(HOST) --server.port $(PORT)

test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .

bench: $(VENV)/.dev
	$(BIN)/pip install -q -e ".[bench]" "$(TORCH)"
	$(BIN)/pip install -q --no-deps "backpack-for-pytorch>=1.6"
	$(BIN)/python bench/bench_fv.py
	$(BIN)/python bench/bench_scores.py

# JupyterLab on notebooks/ (127.0.0.1 only); jupytext opens the .py files as notebooks.
notebook: $(VENV)/.notebook
	$(BIN)/jupyter lab --ServerApp.ip=$(HOST) --ServerApp.port=$(NOTEBOOK_PORT) --no-browser \
		--ServerApp.root_dir=notebooks $(NOTEBOOK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
