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

.PHONY: book test lint unit nbval slurm browser env lock clean gpu-check gpu-install gpu-wheels gpu-import book-quick mathjax

env: $(STAMP)

# The environment is exactly requirements.lock (checked after installing), plus hardex itself.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==$(PIP_VERSION)
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m hardex.tools.lockfile check
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

## make mathjax: the pinned npm package mathjax into build/mathjax/ (npm pack, integrity checked; hardex.book.mathjax), so
## the book typesets its formulas offline; a book build fetches it itself when it is missing
mathjax: $(STAMP)
	$(BIN)/python -m hardex.book.mathjax

## make browser: headless Chromium (Debian's chromium) over the built book; screenshots in _build/screenshots/
browser: $(STAMP)
	$(BIN)/python -m pytest -q -s -p no:cacheprovider -m browser tests/test_browser.py

## make test: the import contracts and the unit tests; beside them nbval over freshly executed smoke notebooks, then the
## tests marked slurm (skipped with a reason where no Slurm answers; tools/single-node-slurm start)
test: lint unit nbval slurm

## make lint: the layers of hardex (import-linter contracts in pyproject.toml: no import circle, core <- runs <- ...)
lint: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q --durations=15 -m "not browser and not slurm"

# after nbval (make -j2 runs it beside the unit tests): its smoke chapter is compared with nbval's ledger
slurm: $(STAMP) | nbval
	HARDEX_LOCAL_LEDGER=$(NBVAL_DIR)/ledger $(BIN)/python -m pytest -q -s -p no:cacheprovider --durations=10 -m slurm tests

nbval: $(STAMP)
	rm -rf $(NBVAL_DIR)
	$(BIN)/hardex book --profile smoke --no-html --quiet --out $(NBVAL_DIR)
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg $(NBVAL_DIR)

clean:
	rm -rf _build _executed build

# ---------------------------------------------------------------------------------------------
# When a GPU is at hand (README, "When a GPU is at hand"): `make gpu-check OUT=<folder>`.
# On a CUDA machine whose python3 has torch, torchvision, numpy, pandas, scipy, pyyaml, tqdm and
# pytest; the other packages (hardex.tools.wheels.GPU_WHEELS) come from .gpu/wheels (make gpu-wheels,
# here) and CIFAR-10 from .gpu/cifar10-jpeg.tar.gz. DEVICE=cpu: the CPU rehearsal on the tiny
# stand-in tests/quick_structure.yaml, then the render-only book from its exported records
# (RENDER=0: without it, e.g. where jupyter-book is not installed).
OUT      ?= build/gpu-check-out
DEVICE   ?=
RENDER   ?= 1
DEADLINE ?=
GPU_PY   ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_CARRY := .gpu
# per Python version: wheels for one interpreter must never shadow another's packages on PYTHONPATH
GPU_SITE  = build/gpu-site-py$(shell $(GPU_PY) -c 'import sys; print("%d%d" % sys.version_info[:2])' 2>/dev/null)
GPU_PYVER ?= 3.12
GPU_RUN   = PYTHONPATH=$(CURDIR):$(CURDIR)/$(GPU_SITE) HARDEX_DATA="$${HARDEX_DATA:-$(CURDIR)/.data}" $(GPU_PY) -m hardex.cli

## make gpu-check [OUT=folder] [DEVICE=cpu] [DEADLINE=minutes]: CUDA tests, bench, the quick profile, records in OUT
gpu-check: $(if $(wildcard $(GPU_CARRY)/wheels/*.whl),gpu-install)
	$(GPU_RUN) gpu-check --out $(OUT) $(if $(DEADLINE),--deadline-minutes $(DEADLINE)) \
	  $(if $(filter cpu,$(DEVICE)),--device cpu --stand-in tests/quick_structure.yaml $(if $(filter 1,$(RENDER)),--render))

## make gpu-install: the wheels of .gpu/wheels this python lacks into build/gpu-site-py<version> (hardex.tools.wheels; no network)
gpu-install:
	$(GPU_PY) -m hardex.tools.wheels install $(GPU_CARRY)/wheels $(GPU_SITE)

## make gpu-wheels [GPU_PYVER=3.12]: the wheels a GPU machine may lack (hardex.tools.wheels.GPU_WHEELS, at the versions of
## requirements.lock), and the offline CIFAR-10 archive when ../shared/data has it, into .gpu/ (git-ignored; carry it)
gpu-wheels: $(STAMP)
	rm -rf $(GPU_CARRY)/wheels && mkdir -p $(GPU_CARRY)/wheels
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PYVER) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d $(GPU_CARRY)/wheels $$($(BIN)/python -m hardex.tools.wheels pins requirements.lock)
	$(BIN)/python -m hardex.tools.wheels slim $(GPU_CARRY)/wheels
	@if [ -f ../shared/data/cifar10-jpeg.tar.gz ]; then cp ../shared/data/cifar10-jpeg.tar.gz $(GPU_CARRY)/; fi
	@du -sh $(GPU_CARRY)

## make gpu-import OUT=folder: a gpu-check's records, bench report and summary into results/ (then commit them)
gpu-import: $(STAMP)
	$(BIN)/hardex gpu-check --import $(OUT)

## make book-quick [STRICT=1]: the quick profile's book from the records under results/ (render-only: nothing
## trains), next to the smoke book: build/book-quick/_build/html
book-quick: $(STAMP)
	$(BIN)/hardex render-book --profile quick --dest build/book-quick $(if $(STRICT),--strict)
