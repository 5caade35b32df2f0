# `make test` sets up a fresh virtual environment with the pinned torch set, installs the Debian tools the tests
# use when they are missing (espeak-ng, ffmpeg), and runs the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test bench system-tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

system-tools:
	scripts/system-tools.sh

test: $(VENV)/.installed system-tools
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) bench/stream_bench.py --preset rest-demo
