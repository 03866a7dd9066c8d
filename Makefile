# Every target installs into ./.venv first (once; again only when pyproject.toml changes).
PYTHON_SYSTEM ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train test bench paper-figures reference-values clean-outputs

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	$(PYTHON_SYSTEM) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	$(PYTHON) -m pip install --quiet --no-deps 'pypoman>=1.1'
	touch $@

install: $(INSTALLED)  ## Create ./.venv with rine and its dependencies (torch 2.14.1 pinned)

train: $(INSTALLED)  ## Run train.py (default: RDNXOR, beta=15); pass overrides as ARGS="task=unq beta=5"
	$(PYTHON) train.py $(ARGS)

test: $(INSTALLED)  ## Run the test suite (CPU, seeded, W&B disabled)
	WANDB_MODE=disabled $(PYTHON) -m pytest $(ARGS)

bench: $(INSTALLED)  ## Time the Table 6 grid on this machine (scripts/bench_canonical.py)
	$(PYTHON) scripts/bench_canonical.py $(ARGS)

paper-figures: $(INSTALLED)  ## Tables 1/6, Figures 3 and 4 (trains missing canonical runs; reuses complete ones)
	$(PYTHON) scripts/paper_figures.py

reference-values: $(INSTALLED)  ## Recompute the cached dit measures of the canonical tasks (slow: minutes)
	$(PYTHON) scripts/reference_values.py

clean-outputs:  ## Delete logged runs under outputs/ (keeps outputs/README.md)
	find outputs -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
