# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench mutate clean venv-crew venv-dev venv-mutate browser

# tools/venv.sh takes a lock, so `make run` and `make test` can start at once in two terminals.
venv-crew:
	@sh tools/venv.sh crew $(PYTHON)

venv-dev:
	@sh tools/venv.sh dev $(PYTHON)

venv-mutate:
	@sh tools/venv.sh mutate $(PYTHON)

# Bytecode is compiled up front: where PYTHONDONTWRITEBYTECODE is set, every agentctl process
# (each worker, each CLI call in the tests) would otherwise compile what it imports, every time.
run: venv-crew
	$(BIN)/python -m compileall -q agentctl
	$(BIN)/agentctl run

test: venv-dev browser
	$(BIN)/python -m compileall -q agentctl tests
	$(BIN)/python -m pytest -q -n 2

# The dashboard's browser test drives Debian's Chromium (Playwright cannot download its own
# browser offline). Installed here when we can (root with apt-get); else said what to install,
# and the test is skipped (in CI, .ci/run makes a missing browser a failure).
CHROMIUM := /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else \
			echo "note: the dashboard's browser test needs $(CHROMIUM): sudo apt-get install chromium (skipped without it)"; \
		fi; \
	fi

lint: venv-dev
	$(BIN)/ruff check agentctl tests bench
	$(BIN)/mypy agentctl
	$(BIN)/lint-imports

bench: venv-crew
	$(BIN)/python bench/bench_workspace.py
	$(BIN)/python bench/bench_journal.py
	$(BIN)/python bench/bench_tracing.py
	$(BIN)/python bench/bench_floor.py

# Mutation testing of the core modules against their fast tests (docs/TESTING.md). Slow, so it is
# neither in `make test` nor in CI. Narrow it: make mutate MUTANTS='agentctl.flow.routing*'
MUTANTS ?=
MUTATE_CHILDREN ?= 1
mutate: venv-mutate
	$(BIN)/mutmut run --max-children $(MUTATE_CHILDREN) $(MUTANTS)
	$(BIN)/python tools/mutation_score.py

clean:
	rm -rf $(VENV) $(VENV).lock .pytest_cache .mypy_cache .ruff_cache .bench-tmp mutants
