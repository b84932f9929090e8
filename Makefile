# One Makefile for developers and CI. Every target creates .venv on first use.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast test-crewai test-autogen lint demo bench soak fuzz clean

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
	$(MAKE) test-crewai test-autogen

# Frameworks whose pins cannot live beside the project's (see pyproject.toml): each in its
# own venv with just what its adapter tests need.
test-crewai:
	@test -x .venv-crewai/bin/python || $(PYTHON) -m venv .venv-crewai || python3 -m venv .venv-crewai
	.venv-crewai/bin/python -m pip install --quiet -e '.[crewai,server]' pytest pytest-timeout hypothesis
	.venv-crewai/bin/python -m pytest -q -p no:cacheprovider tests/test_crewai_storage.py \
		tests/test_docs_integrations.py

test-autogen:
	@test -x .venv-autogen/bin/python || $(PYTHON) -m venv .venv-autogen || python3 -m venv .venv-autogen
	.venv-autogen/bin/python -m pip install --quiet -e '.[autogen,server]' pytest pytest-timeout hypothesis
	.venv-autogen/bin/python -m pytest -q -p no:cacheprovider tests/test_autogen_memory.py \
		tests/test_docs_integrations.py

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

clean:
	rm -rf $(VENV) .venv-crewai .venv-autogen .pytest_cache .mypy_cache .ruff_cache
