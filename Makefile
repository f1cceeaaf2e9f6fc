# Two commands on a fresh machine: `make train` and `make test`. Each creates the virtual
# environment and installs the package (idempotently: only when pyproject.toml changed).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
ARGS ?=

.PHONY: install train test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first, from a local CPU wheel where pip's configuration has one; otherwise from the
	@# registry (CPU-only build on machines without an NVIDIA driver, so no CUDA wheels are pulled).
	$(PY) -m pip install -q --no-index --no-deps 'torch>=2.4' 2>/dev/null \
	  || ( command -v nvidia-smi >/dev/null && $(PY) -m pip install -q 'torch>=2.4' ) \
	  || $(PY) -m pip install -q 'torch>=2.4' --index-url https://download.pytorch.org/whl/cpu \
	  || $(PY) -m pip install -q 'torch>=2.4'
	$(PY) -m pip install -q -e '.[dev,nlp]'
	touch $@

train: install
	$(PY) scripts/train.py $(ARGS)

test: install
	$(PY) -m pytest -q -n 2 --dist loadgroup $(ARGS)

lint: install
	$(VENV)/bin/ruff check seqgen scripts tests benchmarks

bench: install
	$(PY) benchmarks/overhead.py

clean:
	rm -rf outputs multirun .pytest_cache
