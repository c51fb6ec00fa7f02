# Two commands on a fresh machine (Python 3.11, make, apt):
#   make demo   install, then run the main job on the embedded demo country
#   make test   install with the test tools, then run the whole test suite
# Also: make lint (ruff + mypy), make bench (benchmarks/*.py print JSON figures).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# pytest workers: both cores by default; PYTEST_WORKERS=0 runs in one process
PYTEST_WORKERS ?= 2

.PHONY: demo test lint bench clean system-deps deploy-check

# uv resolves and installs the extras in parallel: the demo's install takes about 20 s
# where pip took 90 s (TensorFlow alone is 250 MB of wheels). Without --compile-bytecode:
# compiling all of site-packages took 25 s, the first run's own imports about 5 s.
UV_VERSION := 0.13.9
UV         := $(BIN)/uv pip install --quiet --python $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)

# Reinstall when pyproject.toml changes (the stamp is older than it).
$(VENV)/.demo-installed: pyproject.toml | $(BIN)/uv
	$(UV) -e '.[dl]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/uv
	$(UV) -e '.[dev,dl,spark,serve,mlops,e2e]'
	touch $@

system-deps:
	./scripts/system-deps.sh

# `povertymap run` without a config maps the demo country (generated into data/demo on
# first use) and scores the map against its ground truth; --jobs 2 runs the CV folds and
# out-of-area refits on both cores (the same numbers as one).
demo: $(VENV)/.demo-installed
	$(BIN)/povertymap run --jobs 2

test: system-deps $(VENV)/.test-installed
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks scripts examples
	$(BIN)/ruff format --check src tests benchmarks scripts examples
	$(BIN)/mypy

bench: $(VENV)/.test-installed
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info

# Offline checks of deploy/ and the workflows: hadolint, kubernetes-validate on the rendered
# kustomize overlays, promtool, check-jsonschema (docs/operations.md).
deploy-check: system-deps $(VENV)/.test-installed
	./scripts/deploy-check.sh
