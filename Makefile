# One Makefile for developers and CI. Every target creates .venv on first use.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast lint demo bench soak fuzz security clean

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

soak: $(STAMP)
	ENGRAM_SOAK=1 $(PY) -m pytest -q tests -m slow

# The security suite at full strength (more Hypothesis examples, every hostile
# shape); its short version is part of `make test`. See docs/security.md.
security: $(STAMP)
	ENGRAM_SECURITY_LONG=1 $(PY) -m pytest -q -p no:cacheprovider \
		tests/test_security.py tests/test_security_http.py tests/test_security_inputs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
