# One-command set-up: every target creates .venv when missing and installs through
# constraints.txt (which pins torch==2.13.0, the CPU build on our machines).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/python -m pip install --constraint constraints.txt
DEMO    := runs/demo
DEMO_EPOCHS ?= 40

.PHONY: setup test test-slow demo lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev,data,hf]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Build a zoo of small digits CNNs, convert it, train GMN and StatNN to predict test accuracy
# from weights, evaluate both on held-out networks, and plot predicted vs. true accuracy.
demo: $(STAMP)
	mkdir -p $(DEMO)
	$(BIN)/python -m datasets build digits-cnn-demo $(DEMO)/zoo.h5 --n-runs 160 --overwrite --quiet
	$(BIN)/python -m datasets info $(DEMO)/zoo.h5 --plot $(DEMO)/zoo.png --overwrite
	$(BIN)/python -m graphs demo
	$(BIN)/python train.py --data $(DEMO)/zoo.h5 --model gmn --epochs $(DEMO_EPOCHS) --out $(DEMO)/gmn --overwrite --quiet
	$(BIN)/python train.py --data $(DEMO)/zoo.h5 --model statnn --epochs $(DEMO_EPOCHS) --out $(DEMO)/statnn --overwrite --quiet
	$(BIN)/python eval.py $(DEMO)/gmn/best.pt
	$(BIN)/python eval.py $(DEMO)/statnn/best.pt
	@$(BIN)/python -c "import json; g, s = (json.load(open('$(DEMO)/' + m + '/metrics.json')) for m in ('gmn', 'statnn')); \
	print(f\"plots: $(DEMO)/gmn/test_predict.png $(DEMO)/statnn/test_predict.png\"); \
	print(f\"demo: gmn kendall_tau={g['kendall_tau']:.3f} statnn kendall_tau={s['kendall_tau']:.3f}\")"

lint: $(STAMP)
	$(BIN)/python -m ruff check graphs datasets metanets tasks tests benchmarks train.py eval.py

bench: $(STAMP)
	$(BIN)/python benchmarks/convert.py
	$(BIN)/python benchmarks/zoo_io.py
	$(BIN)/python benchmarks/metanets.py

clean:
	rm -rf $(VENV) build *.egg-info
