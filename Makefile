# The first two targets are the README's set-up commands: `make demo` and `make test` each
# create/refresh the virtual environment (torch pinned and installed first; the web app's Gradio and the
# browser test's Playwright with it), then run.
VENV ?= .venv
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(TORCH_VERSION)

.PHONY: demo test test-fast lint bench bench-data clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[dev,app]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m inpaint.run

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

# the edit-loop lane (1.5-2 minutes on 2 cores): everything not marked slow (CLI subprocesses, multirun, DDP,
# and the few in-process tests that take seconds); `make test` runs everything
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check inpaint tests experiments
	$(VENV)/bin/lint-imports --no-cache --no-logo  # the layers in pyproject.toml [tool.importlinter]

bench: $(STAMP)
	$(PY) experiments/bench.py

bench-data: $(STAMP)
	$(PY) experiments/data_bench.py

clean:
	rm -rf outputs multirun lightning_logs wandb .pytest_cache
