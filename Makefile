# diffjax: `make demo` runs the main job on the embedded default, `make test` runs the test suite.
# Each target sets itself up: a virtual environment in .venv with the package and its extras.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= runs/demo
PYTEST_WORKERS ?= 2

.PHONY: install test test-slow demo demo-oracle experiments bench bench-peers lint clean

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
			reflow_straightness udm_blur_vs_noise masked_digits pfgm_nfe; do \
		echo "== experiments/$$name.py"; \
		$(BIN)/python experiments/$$name.py --out experiments/results || exit 1; \
	done

# Train-step, sampler, likelihood and lever benchmarks on this machine: bench/results.json and bench/results.md
# (bench/README.md reads them). The XLA compilation cache makes a second run skip most compiling.
bench: install
	$(BIN)/python -m bench.run --out bench --compilation_cache bench/.xla-cache

# The same, interleaved with the PyTorch peers (diffusers, k-diffusion) from their own environment .venv-peers:
# the `peers` extra of pyproject.toml, then k-diffusion without its dependencies (bench/peers.py explains).
PEERS_VENV := .venv-peers
$(PEERS_VENV)/.installed-stamp: pyproject.toml
	$(PYTHON) -m venv $(PEERS_VENV)
	echo '*' > $(PEERS_VENV)/.gitignore
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet $$($(PYTHON) -c "import tomllib; print(' '.join(tomllib.load(\
		open('pyproject.toml', 'rb'))['project']['optional-dependencies']['peers']))")
	$(PEERS_VENV)/bin/python -m pip install --quiet --no-deps k-diffusion==0.1.1.post1
	$(PEERS_VENV)/bin/python bench/peers.py --check
	touch $@

bench-peers: install $(PEERS_VENV)/.installed-stamp
	$(BIN)/python -m bench.run --out bench --compilation_cache bench/.xla-cache --peers $(PEERS_VENV)/bin/python

lint: install
	$(BIN)/python -m ruff check diffjax tests experiments bench configs

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
