# diffjax: `make demo` runs the main job on the embedded default, `make test` runs the test suite.
# Each target sets itself up: a virtual environment in .venv with the package and its extras.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= runs/demo
PYTEST_WORKERS ?= 2

.PHONY: install test test-slow demo bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,lint]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow" tests

test-slow: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m slow tests

demo: install
	$(BIN)/python experiments/demo_mixture.py --out $(OUT)

bench: install
	$(BIN)/python bench/run.py --out bench

lint: install
	$(BIN)/python -m ruff check diffjax tests experiments bench

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
