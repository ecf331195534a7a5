# diffjax: `make demo` runs the main job on the embedded default, `make test` runs the test suite.
# Each target sets itself up: a virtual environment in .venv with the package and its extras.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= runs/demo
PYTEST_WORKERS ?= 2

.PHONY: install test test-slow demo demo-oracle experiments bench lint clean

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

# Trains DDPM (article (一)) on scikit-learn's digits with a CPU-sized network, samples and evaluates.
demo: install
	$(BIN)/diffjax train --config configs/ddpm.py:digits,cpu --workdir $(OUT)
	@echo "demo run directory: $(OUT) (samples/samples.png, samples/samples.npz, samples/metrics.json, checkpoints/)"

# Every DDPM-family sampler driven by the exact noise predictor of a 2-D Gaussian mixture.
demo-oracle: install
	$(BIN)/python experiments/demo_mixture.py --out runs/demo_oracle

# The article experiments, one script per article at full size (0.5 to 2.5 minutes each on 2 CPU cores), each
# writing a figure, a markdown table and its raw numbers into experiments/results/.
experiments: install
	@for name in ddim_eta_steps pf_ode_likelihood analytic_variance ode_solvers_nfe guidance_scale \
			reflow_straightness; do \
		echo "== experiments/$$name.py"; \
		$(BIN)/python experiments/$$name.py --out experiments/results || exit 1; \
	done

bench: install
	$(BIN)/python bench/run.py --out bench

lint: install
	$(BIN)/python -m ruff check diffjax tests experiments bench configs

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
