# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
REPORT_DIR ?= reports/demo

.PHONY: setup demo test test-slow lint bench bench-100k clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hes-sim needs Python 3.11 or newer (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)
	@scripts/ensure_mosquitto.sh

demo: setup
	$(BIN)/hes-sim run config/scenarios/demo.yaml --report-dir $(REPORT_DIR)

lint: $(STAMP)
	$(BIN)/ruff check hes_sim tests scripts
	$(BIN)/ruff format --check hes_sim tests scripts
	$(BIN)/mypy

# The suite spends most of its time waiting on brokers, subprocesses and simulated
# hours, so four workers share two cores well; each test still gets its own brokers
# and database. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4

test: setup lint
	$(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --dist worksteal

test-slow: setup
	$(BIN)/pytest -m slow

# every figure of docs/performance.md for this machine (about 40 minutes), then the
# headline ones side by side with their targets
bench: export HES_BENCH_FIGURES = $(abspath reports/bench-figures.jsonl)
bench: setup
	@mkdir -p reports && rm -f $(HES_BENCH_FIGURES)
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench.py ingest --store postgresql
	$(BIN)/python scripts/bench_lean.py
	$(BIN)/python scripts/bench_store.py
	$(BIN)/python scripts/bench_idle.py
	$(BIN)/python scripts/bench_command.py
	$(BIN)/python scripts/bench_connect.py
	$(BIN)/python scripts/bench_summary.py $(HES_BENCH_FIGURES)

# 100,000 meters in real time for a simulated hour (about 75 minutes, 24 GB machine)
bench-100k: setup
	$(BIN)/hes-sim run config/scenarios/scale-100k.yaml --report-dir reports/scale-100k

clean:
	rm -rf $(VENV) reports .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
