# Legato: `make demo` runs the example pipeline as a deployment through a local server and an
# agent (`make stop` stops the server); `make test` runs every test.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo stop test install install-test check bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[examples]'

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,examples]'

demo: install
	$(BIN)/python examples/demo.py

stop:
	$(BIN)/python examples/demo.py --stop-server

test: install-test
	$(BIN)/python -m pytest -n 2 -q

check: install-test
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest -n 2 -q

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist .pytest_cache
