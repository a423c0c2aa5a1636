# Two commands do everything on a fresh machine with Python >= 3.10:
#   make verify   install, then verify every registered claim and write reports/report.md
#   make test     install, then run the whole suite (tests, proofs_check, notebooks)
#
# TORCH pins the torch wheel installed before the package. The default is the release whose
# CPU build CI takes from its local wheel cache; GPU users pass e.g. `make TORCH=torch verify`
# to let pip choose a CUDA build (pyproject.toml keeps a range, torch>=2.2).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install verify test test-slow bench lab clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

verify: install
	$(VENV)/bin/solvable verify --report reports

# Two pytest workers, one BLAS/torch thread each: the simulations are many small array operations,
# and oversubscribed threads (2 workers x N threads on 2 cores) made some tests 100x slower.
THREADS := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

test: install
	$(THREADS) HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

test-slow: install
	$(THREADS) HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -n 2 -q -m slow $(PYTEST_ARGS)

bench: install
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(PY) benchmarks/run.py

lab: install
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf $(VENV) reports .pytest_cache .hypothesis
