# sg3 — StyleGAN3 training application. `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sg3-installed
PYTEST_ARGS ?=
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train test bench doctor gpu-check lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install sg3 (editable) with its dev extras

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

train: install ## train config T on the embedded demo dataset (CPU, ~10 min); ARGS='key=value ...' to override
	$(BIN)/sg3-train experiment=demo $(ARGS)

test: install ## run every test tier this machine can run (default, cpp, cuda_build, slurm; gpu if a GPU is present)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install ## run the benchmarks and write docs/benchmarks.md
	$(BIN)/python scripts/bench.py $(ARGS)

doctor: install ## build every compiled op, print the toolchain, run parity checks
	$(BIN)/sg3-doctor

gpu-check: install ## on a GPU host: build the CUDA ops, run the gpu tier and a short T/R training, write a JSON report
	bash scripts/gpu_check.sh

lint: install ## ruff check + format check
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

format: install ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix src tests scripts
	$(BIN)/ruff format src tests scripts

clean: ## remove build outputs, caches and run directories (keeps .venv)
	rm -rf build dist *.egg-info src/*.egg-info .pytest_cache .ruff_cache runs outputs multirun
