# The two commands: `make up` runs the whole system, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)

.PHONY: up test test-fast install lint typecheck pytest format clean chaos bench bench-quick

$(UV):
	$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --quiet --break-system-packages uv

install: $(UV)
	$(UV) sync --frozen --all-packages --python $(PYTHON)

# TRACES=1: also the trace viewer on http://127.0.0.1:16686, every component sending it spans (`ticketing up --traces`).
up: install
	exec $(UV) run --frozen ticketing up $(if $(TRACES),--traces)

lint: install
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen ruff check .

typecheck: install
	$(UV) run --frozen mypy libs services tools

pytest: install
	$(UV) run --frozen pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The fast layer: pure domain rules, no PostgreSQL or NATS started, in seconds (`make test` runs them too).
test-fast: install
	$(UV) run --frozen pytest -m unit -q $(PYTEST_ARGS)

# The reliability proof: load + random SIGKILLs for CHAOS_SECONDS, then the consistency check; report in
# tools/chaos/results/<timestamp>/ (exit 1 when anything broke).
CHAOS_SECONDS ?= 600
chaos: install
	$(UV) run --frozen ticketing-chaos --seconds $(CHAOS_SECONDS)

format: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

bench: install
	$(UV) run --frozen ticketing-bench

bench-quick: install
	$(UV) run --frozen ticketing-bench --quick

clean:
	rm -rf .state .venv .pytest_cache .mypy_cache .ruff_cache
