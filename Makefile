# Quick start: `make run` (set up, then run the default workflow) and `make test` (set up, then every test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all

.PHONY: run test test-fast test-data test-slurm test-numerics lint bench setup clean

setup: $(STAMP)

# The environment is rebuilt whenever the pins or the package metadata change.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# A run killed outright leaves Snakemake's lock behind: netdyn.unlock releases it when no Snakemake process holds it.
run: $(STAMP)
	$(BIN)/python -m netdyn.unlock
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html
	@echo "Figures: results/figures/  Claims: results/claims.csv  Report: results/report.html"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# The SLURM test runs first so that the closing line of the log is the main suite's.
test: $(STAMP) lint test-data
	$(MAKE) test-slurm
	$(MAKE) test-numerics
	$(BIN)/python -m pytest -q -rs --ignore=tests/test_slurm.py

# The numerics-sensitive tests again where a matmul's rounding depends on how many rows it is given (MKL's
# conditional-reproducibility mode COMPATIBLE with two threads does so on any x86-64 CPU, as MKL's AVX-512 and AMX
# kernels do on Intel ones at any thread count): a test that asserts bit equality between computations in different
# orders fails here, not on another machine (~80 s).
NUMERICS_TESTS := activations benchmarks stacked train rpd pruning basins evaluate
test-numerics: $(STAMP)
	MKL_CBWR=COMPATIBLE NETDYN_TEST_THREADS=2 $(BIN)/python -m pytest -q -p no:cacheprovider \
		$(foreach name,$(NUMERICS_TESTS),tests/test_$(name).py)

# A real single-node SLURM (Debian slurm-wlm + munge, needs root); skips with the reason printed where it cannot run.
test-slurm: $(STAMP)
	$(BIN)/python -m pytest -q -rs tests/test_slurm.py

# Real Fashion-MNIST IDX files for the IDX reader's tests, and Chromium for the report's browser test (Debian
# packages, ~20 s; the tests that need them skip, saying why, where apt is unavailable).
test-data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) || \
		echo "dataset-fashion-mnist could not be installed: its tests will be skipped"; \
	fi
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && \
		  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1)) || \
		echo "chromium could not be installed: the report's browser test will be skipped"; \
	fi

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" --ignore=tests/test_slurm.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/snakemake --lint --cores 1 -n

clean:
	rm -rf results .snakemake
