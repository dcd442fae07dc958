# nextsong: set-up, the synthetic flow step by step, tests and benchmarks.
# `make synthetic-all` runs the whole flow on the default preset; `make test` runs the checks.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PRESET ?= default
SEED ?= 7
DATA ?= data/synthetic
# `make synthetic-recommend USER=3`: the environment's USER (a login name) must not count.
RECOMMEND_USER := $(if $(filter command line,$(origin USER)),$(USER),0)
# One thread per process: with two cores shared, more threads are slower (INSTALL-NOTES.md).
export OMP_NUM_THREADS ?= 1

.PHONY: install test lint synthetic-data synthetic-split synthetic-edges synthetic-graph \
	synthetic-train synthetic-evaluate synthetic-recommend synthetic-all bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned, so nothing can pull a CUDA build in.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,serve]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/pytest -q

synthetic-data: install
	$(BIN)/nextsong generate --preset $(PRESET) --seed $(SEED) --out $(DATA) --force

synthetic-split: install
	$(BIN)/nextsong split --data $(DATA)

synthetic-edges: install
	$(BIN)/nextsong edges --data $(DATA)

synthetic-graph: install
	$(BIN)/nextsong graph --data $(DATA)

# The nextsong model: $(DATA)/models/<run>/, marked best when it beats the last run.
synthetic-train: install
	$(BIN)/nextsong train --data $(DATA)

# The oracle, every baseline and the best run of every trained model: $(DATA)/report/.
synthetic-evaluate: install
	$(BIN)/nextsong evaluate --data $(DATA)

# What listener USER (default 0) should play next, and why, from the best `nextsong` run.
synthetic-recommend: install
	$(BIN)/nextsong recommend --data $(DATA) --user $(RECOMMEND_USER)

# The steps run in this order (make runs prerequisites left to right; do not use -j here).
synthetic-all: synthetic-data synthetic-split synthetic-edges synthetic-graph synthetic-train \
	synthetic-evaluate synthetic-recommend
	@echo "evaluation report: $(DATA)/report/report.md"

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info
