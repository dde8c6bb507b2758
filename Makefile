# Two commands for a fresh clone (see README):
#   make repro   set up .venv (once) and run the whole pipeline with `dvc repro`
#   make test    set up .venv (once) and run the test suite
# Setup is idempotent: .venv/.installed is rebuilt only when requirements.lock or pyproject.toml change.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline machines: use ../shared/datasets as the data mirror when it exists and nothing else was chosen.
ifeq ($(origin ADVREP_DATA_MIRROR), undefined)
ifneq ($(wildcard ../shared/datasets/cifar10.npz),)
export ADVREP_DATA_MIRROR := $(abspath ../shared/datasets)
endif
endif
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test test-dryrun test-fast smoke smoke-baseline smoke-noise clean-venv

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

repro: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -m "not dryrun"

test-dryrun: setup
	$(BIN)/python -m pytest -m dryrun

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

# Run the smoke profile in a scratch clone and compare its metrics with the committed baseline (what CI does).
smoke: setup
	$(BIN)/python .ci/smoke.py check

# Re-make the committed smoke baseline after a change that moves results on purpose.
smoke-baseline: setup
	$(BIN)/python .ci/smoke.py baseline

# Re-measure the noise the smoke tolerance absorbs: the smoke profile at 1 thread, into .ci/noise/threads1/.
smoke-noise: setup
	$(BIN)/python .ci/smoke.py noise

clean-venv:
	rm -rf $(VENV)
