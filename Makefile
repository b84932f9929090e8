# One Makefile for developers and CI. Every target creates .venv on first use.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast lint demo bench soak fuzz dist shell clean

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

# The day-to-day subset (a few minutes): everything but the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -x -p no:cacheprovider -m "not slow"

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

# A wheel and an sdist in dist/ (tests/test_packaging.py installs them into fresh venvs).
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .

# A shell with the project's venv active (engram on PATH); exit to leave it.
shell: $(STAMP)
	@echo "engram is on PATH in this shell; 'exit' leaves it"
	@. $(VENV)/bin/activate && exec $${SHELL:-bash} -i

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build
