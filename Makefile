# The README's two commands: `make demo` and `make test` (each sets up what it needs first).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -m "not gpu and not weights"

.PHONY: setup demo test lint format bench browser

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# Debian's chromium renders the QA report in its browser test (skipped when it cannot be had).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the report's browser test will be skipped"; }

demo: setup
	$(BIN)/python launch.py

test: setup browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check prep tests bench launch.py
	$(BIN)/ruff format --check prep tests bench launch.py

format:
	$(BIN)/ruff format prep tests bench launch.py

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done
