# Two commands do everything on a fresh machine with Python >= 3.10:
#   make verify   install, then verify every registered claim and write reports/report.md
#   make test     install, then run the whole suite (tests, proofs_check, notebooks)
#
# Every pip install below runs under constraints.txt, so a transitive dependency cannot swap the
# pinned torch for another build. TORCH is the torch requirement installed first: the default takes
# the pinned release (on CI, the local CPU wheel); GPU users pass `make TORCH=torch verify` and pip
# chooses the pinned release's CUDA build from the index (pyproject.toml keeps a range, torch>=2.2).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install verify test test-slow test-thorough bench gpu-check lab docs docs-fast clean

PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
TORCH_PIN := $(shell sed -n 's/^torch==//p' constraints.txt)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) "$(TORCH)"
	$(PIP) -e ".[dev]"
	@$(PY) -c "import sys, torch; v = torch.__version__.split('+')[0]; \
	  sys.exit(0 if v == '$(TORCH_PIN)' else f'make install: torch {torch.__version__} is installed but constraints.txt pins $(TORCH_PIN)')"
	touch $(STAMP)

install: $(STAMP)

# Two pytest workers, one BLAS/torch thread each: the simulations are many small array operations,
# and oversubscribed threads (2 workers x N threads on 2 cores) made some tests 100x slower.
THREADS := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# One BLAS/torch thread: the claims are many small array programs, and on 2 cores `solvable verify`
# took 80 s with the default threads against 37 s with one (68 claims, measured).
verify: install
	$(THREADS) $(VENV)/bin/solvable verify --report reports

test: install
	$(THREADS) HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

test-slow: install
	$(THREADS) HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -n 2 -q -m slow $(PYTEST_ARGS)

# A random search of every claim's domain (at least 60 draws each), beside the fixed CI sample.
test-thorough: install
	$(THREADS) HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -n 2 -q tests/test_claims.py -k holds_over_its_domain $(PYTEST_ARGS)

bench: install
	$(PIP) -e ".[bench]"
	$(PY) benchmarks/run.py

# On a CUDA machine: the gpu-marked tests, `verify --backend torch --device cuda` on every claim and
# the torch benchmarks, summarised in reports/gpu_check.json ($OUT if set). Fresh clone on a GPU
# machine: `make TORCH=torch gpu-check`. Without CUDA it says so and exits 0.
gpu-check: install
	$(PY) benchmarks/gpu_check.py

# The documentation site into docs/_build/html: every claim verified with its mutants and figure,
# the notebooks and the pages' commands executed (cached in docs/_build while solvable/ is
# unchanged); warnings are errors. docs-fast skips every execution (what `make test` checks).
docs: install
	$(THREADS) $(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "site: docs/_build/html/index.html"

docs-fast: install
	$(THREADS) SOLVABLE_DOCS_FAST=1 $(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

lab: install
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf $(VENV) reports .pytest_cache .hypothesis docs/_build docs/generated
