# Quick start: `make book` (smoke profile) and `make test`. Both bootstrap .venv from pyproject.toml.
PYTHON   ?= python3.11
VENV     ?= .venv
PROFILE  ?= smoke
CHAPTERS ?=
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.hardex-installed
NBVAL_DIR := build/nbval

.PHONY: book test unit nbval env clean

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[book,test]'
	@touch $(STAMP)

## make book [PROFILE=smoke|fast|paper] [CHAPTERS="theory ..."]: execute chapters, build _build/html
book: $(STAMP)
	$(BIN)/hardex book --profile $(PROFILE) $(if $(CHAPTERS),--chapters $(CHAPTERS))

## make test: unit tests, then nbval over freshly executed smoke notebooks
test: unit nbval

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q

nbval: $(STAMP)
	rm -rf $(NBVAL_DIR)
	$(BIN)/hardex book --profile smoke --no-html --quiet --out $(NBVAL_DIR)
	HARDEX_LEDGER_DIR=$(NBVAL_DIR)/ledger $(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg $(NBVAL_DIR)

clean:
	rm -rf _build _executed build
