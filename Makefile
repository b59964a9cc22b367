# The README's two commands: `make demo` and `make test` (each sets up what it needs first).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -m "not gpu and not weights"

.PHONY: setup demo test lint format bench browser fan equiv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# face-alignment for landmarks=fan, without its opencv-python requirement: a second distribution
# would write the same cv2 package as our opencv-contrib-python (README "Install notes").
FAN_PKG := face-alignment==1.5.0
fan: setup
	$(BIN)/python -m pip install -q -e '.[fan]'
	$(BIN)/python -m pip install -q --no-deps $(FAN_PKG)

# Equivalence tests against the authors' code from PyPI, in their own environment so the default
# install stays as it is: `.[equiv]` plus face-alignment and facexlib, both with --no-deps.
EQUIV_VENV ?= .venv-equiv
equiv: $(EQUIV_VENV)/.installed
	AVATAR_PREP_EQUIV=1 $(EQUIV_VENV)/bin/python -m pytest -m equiv

$(EQUIV_VENV)/.installed: pyproject.toml
	test -x $(EQUIV_VENV)/bin/python || $(PY) -m venv $(EQUIV_VENV)
	$(EQUIV_VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	$(EQUIV_VENV)/bin/python -m pip install -q -e '.[equiv]'
	$(EQUIV_VENV)/bin/python -m pip install -q --no-deps $(FAN_PKG) facexlib==0.3.0
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

# ruff (lint and format) and mypy (prep/, settings in pyproject's [tool.mypy]); CI runs it.
lint: setup
	$(BIN)/ruff check prep tests bench launch.py
	$(BIN)/ruff format --check prep tests bench launch.py
	$(BIN)/mypy

format:
	$(BIN)/ruff format prep tests bench launch.py

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done
