# Two commands do all the set-up on a fresh machine:
#   make serve   venv + install, then run the server on the embedded default
#   make test    venv + test tools + system clients (apt, as root), then lint, types, tests
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: serve test lint typecheck pytest system-deps clean bench bench-quick

# Every install takes its versions from constraints.txt, the one lock.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e '.[bench]'
	touch $@

serve: $(VENV)/.installed
	$(VENV)/bin/hoody-mount serve $(ARGS)

system-deps:
	bash scripts/install-system-deps

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check hoody_mount tests bench
	$(VENV)/bin/ruff format --check hoody_mount

typecheck: $(VENV)/.test-installed
	$(VENV)/bin/mypy

pytest: $(VENV)/.test-installed system-deps
	$(PY) -m pytest -n 3 --dist loadfile

test: lint typecheck pytest

bench: $(VENV)/.bench-installed system-deps
	$(VENV)/bin/python bench/run.py $(ARGS)

bench-quick: $(VENV)/.bench-installed system-deps
	$(VENV)/bin/python bench/run.py --quick $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
