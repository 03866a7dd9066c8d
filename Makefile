# The Python every target uses, the first that applies:
#   PYTHON=/path/to/python make test    that interpreter (a venv or env you made yourself)
#   an active conda env, not base        $CONDA_PREFIX/bin/python (conda activate rine)
#   otherwise                            ./.venv, created here on first use
# An interpreter you chose gets `pip install -e '.[dev]'` (and pypoman) only when something
# the project needs is missing from it (.ci/missing_requirements.py says what); ./.venv is
# installed once, and again only when pyproject.toml changes. A fresh clone installs
# everything itself: `make test` is what CI runs (.ci/run).
PYTHON_SYSTEM ?= python3
VENV := .venv
ARGS ?=

ifdef PYTHON
  PYTHON_FROM := PYTHON=$(PYTHON)
else ifneq ($(and $(CONDA_PREFIX),$(filter-out base,$(CONDA_DEFAULT_ENV))),)
  PYTHON := $(CONDA_PREFIX)/bin/python
  PYTHON_FROM := the active conda env $(CONDA_DEFAULT_ENV)
else
  PYTHON := $(VENV)/bin/python
endif

# -n 2: pytest-xdist runs the tests in two processes (the CPU runners have 2 cores), each
# taking the next test when it is free (worksteal), so one long test never holds up the rest.
PYTEST := WANDB_MODE=disabled $(PYTHON) -m pytest -n 2 --dist worksteal

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast bench paper-figures reference-values clean-outputs

help:  ## List the targets (Python: PYTHON=..., else an active conda env, else ./.venv)
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'
	@echo "  Every target uses PYTHON=/path/to/python if given, else the active conda env (not base),"
	@echo "  else ./.venv; it installs the project (pip install -e '.[dev]') only where something is missing."

ifdef PYTHON_FROM
INSTALLED := installed-into-chosen-python
.PHONY: $(INSTALLED)
$(INSTALLED):
	@$(PYTHON) .ci/missing_requirements.py || { \
	  echo "installing rine into $(PYTHON) ($(PYTHON_FROM))"; \
	  $(PYTHON) -m pip install --quiet -e '.[dev]' && \
	  $(PYTHON) -m pip install --quiet --no-deps 'pypoman>=1.1'; }
else
INSTALLED := $(VENV)/.installed
$(INSTALLED): pyproject.toml
	$(PYTHON_SYSTEM) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	$(PYTHON) -m pip install --quiet --no-deps 'pypoman>=1.1'
	touch $@
endif

install: $(INSTALLED)  ## Install rine and its dependencies (torch 2.14.1 pinned) into the Python above

train: $(INSTALLED)  ## Run train.py (default: RDNXOR, beta=15); pass overrides as ARGS="task=unq beta=5"
	$(PYTHON) train.py $(ARGS)

test: $(INSTALLED)  ## Run the whole test suite (what CI runs; CPU, seeded, W&B disabled)
	$(PYTEST) $(ARGS)

test-fast: $(INSTALLED)  ## The tests not marked slow, for the edit loop (about a minute on 2 cores)
	$(PYTEST) -m "not slow" $(ARGS)

bench: $(INSTALLED)  ## Time the Table 6 grid on this machine (scripts/bench_canonical.py)
	$(PYTHON) scripts/bench_canonical.py $(ARGS)

paper-figures: $(INSTALLED)  ## Tables 1/6, Figures 3 and 4 (trains missing canonical runs; reuses complete ones)
	$(PYTHON) scripts/paper_figures.py

reference-values: $(INSTALLED)  ## Recompute the cached dit measures of the canonical tasks (slow: minutes)
	$(PYTHON) scripts/reference_values.py

clean-outputs:  ## Delete logged runs under outputs/ (keeps outputs/README.md)
	find outputs -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
