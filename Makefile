# One-command set-up: every target creates .venv when missing and installs through
# constraints.txt (which pins torch==2.13.0, the CPU build on our machines).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/python -m pip install --constraint constraints.txt

.PHONY: setup test test-slow demo lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev,data]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

demo: $(STAMP)
	$(BIN)/python -m graphs demo

lint: $(STAMP)
	$(BIN)/python -m ruff check graphs datasets metanets tests benchmarks train.py eval.py

bench: $(STAMP)
	$(BIN)/python benchmarks/convert.py

clean:
	rm -rf $(VENV) build *.egg-info
