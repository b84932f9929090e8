# One Makefile for developers and CI. Every target creates .venv on first use.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast lint demo bench soak fuzz clean test-erasure-full bench-lifecycle

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch from the CPU build first: anything else pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -x -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo: $(STAMP)
	$(VENV)/bin/engram demo

bench: $(STAMP)
	$(VENV)/bin/engram bench

# The erasure canary test at full size (1,000 subjects, SQLite and PostgreSQL).
test-erasure-full: $(STAMP)
	ENGRAM_CANARY_SUBJECTS=1000 $(PY) -m pytest -q -p no:cacheprovider tests/test_erasure.py

# Lifecycle figures for BENCHMARKS.md: erase 1 and 100 subjects, maintain 100k with 1% due.
bench-lifecycle: $(STAMP)
	$(PY) bench/lifecycle.py

soak: $(STAMP)
	ENGRAM_SOAK=1 $(PY) -m pytest -q tests -m slow

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
