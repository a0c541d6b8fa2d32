# Legato: `make demo` runs the example pipeline as a deployment through a local server and an
# agent (`make stop` stops the server); `make test` runs every test.
#
# Installs come from the committed uv.lock (exact versions and hashes of every dependency), never
# from a fresh resolution: see docs/development.md. uv itself is bootstrapped, pinned, from PyPI
# into .tools/ with nothing but python3 and its venv/pip, so no uv needs to be installed first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
UV_HOME := .tools/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
# uv installs into .venv (the layout the tests and docs rely on: .venv/bin/python, .venv/bin/legato)
# with the interpreter $(PY) names, and never downloads a Python of its own.
UV_RUN := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never $(UV)
SYNC := $(UV_RUN) sync --frozen --python $(PY)

.PHONY: demo stop test install install-test check lock uv bench clean

$(UV):
	$(PY) -m venv $(UV_HOME)
	$(UV_HOME)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

uv: $(UV)

# --inexact: the demo's install leaves whatever else is in .venv (the test extras) in place.
install: $(UV)
	$(SYNC) --inexact --extra examples

# exact: the test venv holds what the lock says for test + examples, and nothing else.
install-test: $(UV)
	$(SYNC) --extra test --extra examples

# Re-resolve every dependency to the newest versions pyproject.toml allows, then rewrite uv.lock.
lock: $(UV)
	$(UV_RUN) lock --upgrade --python $(PY)

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
	rm -rf $(VENV) .tools build dist .pytest_cache
