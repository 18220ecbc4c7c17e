# Quick start: `make book` (smoke profile) and `make test`. Both bootstrap .venv from requirements.lock.
PYTHON   ?= python3.11
VENV     ?= .venv
PROFILE  ?= smoke
CHAPTERS ?=
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.hardex-installed
NBVAL_DIR := build/nbval
# The lock's pins for packages whose newest release does not install everywhere (see README).
LOCK_PINS := torch==2.14.1 torchvision==0.29.1
# pip itself is not in the lock (pip-tools leaves it out); this is the one that installs it
PIP_VERSION := 26.3

.PHONY: book test unit nbval slurm browser env lock clean

env: $(STAMP)

# The environment is exactly requirements.lock (checked after installing), plus hardex itself.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==$(PIP_VERSION)
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m hardex.lockfile check
	@touch $(STAMP)

## make lock [UPGRADE=1]: requirements.lock from pyproject.toml (core + book + test extras) with pip-tools;
## keeps existing pins that still satisfy pyproject unless UPGRADE=1 re-resolves everything to the newest
lock:
	@test -x build/lockenv/bin/pip-compile || { $(PYTHON) -m venv build/lockenv && build/lockenv/bin/python -m pip install -q pip-tools; }
	@mkdir -p build && printf '%s\n' $(LOCK_PINS) > build/lock-pins.txt
	CUSTOM_COMPILE_COMMAND="make lock" build/lockenv/bin/pip-compile -q $(if $(UPGRADE),--upgrade) --allow-unsafe --strip-extras \
	  --extra book --extra test -c build/lock-pins.txt --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock pyproject.toml

## make book [PROFILE=smoke|fast|paper] [CHAPTERS="theory ..."] [STRICT=1]: execute chapters, build _build/html
## (STRICT=1: Sphinx warnings are errors, as in CI)
book: $(STAMP)
	$(BIN)/hardex book --profile $(PROFILE) $(if $(CHAPTERS),--chapters $(CHAPTERS)) $(if $(STRICT),--strict)

## make browser: headless Chromium (Debian's chromium) over the built book; screenshots in _build/screenshots/
browser: $(STAMP)
	$(BIN)/python -m pytest -q -s -p no:cacheprovider -m browser tests/test_browser.py

## make test: unit tests; beside them nbval over freshly executed smoke notebooks, then the
## tests marked slurm (skipped with a reason where no Slurm answers; tools/single-node-slurm start)
test: unit nbval slurm

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q --durations=15 -m "not browser and not slurm"

# after nbval (make -j2 runs it beside the unit tests): its smoke chapter is compared with nbval's ledger
slurm: $(STAMP) | nbval
	HARDEX_LOCAL_LEDGER=$(NBVAL_DIR)/ledger $(BIN)/python -m pytest -q -s -p no:cacheprovider --durations=10 -m slurm tests

nbval: $(STAMP)
	rm -rf $(NBVAL_DIR)
	$(BIN)/hardex book --profile smoke --no-html --quiet --out $(NBVAL_DIR)
	HARDEX_LEDGER_DIR=$(NBVAL_DIR)/ledger $(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg $(NBVAL_DIR)

clean:
	rm -rf _build _executed build
