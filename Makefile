# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamp files so a second `make` does not reinstall; pyproject changes trigger a reinstall.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[crew]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

# Bytecode is compiled up front: where PYTHONDONTWRITEBYTECODE is set, every agentctl process
# (each worker, each CLI call in the tests) would otherwise compile what it imports, every time.
run: $(VENV)/.installed
	$(BIN)/python -m compileall -q agentctl
	$(BIN)/agentctl run

test: $(VENV)/.installed-dev
	$(BIN)/python -m compileall -q agentctl tests
	$(BIN)/python -m pytest -q -n 2

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check agentctl tests bench
	$(BIN)/mypy agentctl

bench: $(VENV)/.installed
	$(BIN)/python bench/bench_workspace.py
	$(BIN)/python bench/bench_journal.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .bench-tmp
