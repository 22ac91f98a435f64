# One-word entry points. `make demo` runs the main job on the simulated default
# input; `make test` runs the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAW := data/raw/muon_events.parquet

export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test test-all lint venv data clean pipeline bench

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The default input is produced by the simulator; data.dvc records its hash.
$(RAW): | $(STAMP)
	l1recal simulate data/raw

data: $(RAW)

demo: $(STAMP) $(RAW)
	dvc repro
	@echo
	@cat reports/muon_rmse.md
	@echo
	@cat reports/jet_rmse.md

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest

# Ingest throughput and peak memory at 1 M and 10 M events (docs/benchmarks.md);
# writes up to 1.3 GB of temporary input at a time; 6 to 15 minutes on 2 cores.
bench: $(STAMP)
	$(BIN)/python benchmarks/ingest_bench.py --events 1000000 10000000 --jets 1000000

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

# Regenerate the golden copy of the compiled Kubeflow pipeline.
pipeline: $(STAMP)
	l1recal kfp compile pipelines/l1recal-training.yaml

clean:
	rm -rf data/interim data/processed models reports/*.json reports/*.md
