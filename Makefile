# One command to set up and run the demo, one to set up and run the tests.
#   make demo   -> installs everything, then a real DARTS search on Fashion-MNIST (CPU)
#                  and the retraining of the cell it found
#   make test   -> installs everything, then lint + the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data demo test test-fast lint bench clean

$(FMNIST):
	@if [ "$$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi; \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist

data: $(FMNIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $@

setup: data $(VENV)/.installed

demo: setup
	rm -rf runs/demo
	$(VENV)/bin/jaxnas search --config configs/darts_fmnist_tiny.py --workdir runs/demo
	$(VENV)/bin/jaxnas train --config configs/eval_fmnist_small.py \
		--genotype runs/demo/genotype.json --workdir runs/demo/retrain

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# Tests run in PYTEST_WORKERS processes (pytest-xdist): XLA compiles one program
# per thread, so two workers roughly halve the suite on a 2-core machine.
PYTEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal --durations=15

test: lint
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not slow"

bench: setup
	$(PY) benchmarks/bench_supernet.py --out benchmarks/results/supernet.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
