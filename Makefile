# Two commands do all the set-up: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ptyanalysis-installed
KERNEL_SPEC := $(VENV)/share/jupyter/kernels/python3/kernel.json
DEMO_HUB ?= demo_hub
PYTEST_ARGS ?=

.PHONY: venv demo test test-no-tf test-fast lint bench notebooks clean

venv: $(STAMP) $(KERNEL_SPEC)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[tensorflow,jax,torch,test,dev]"
	@touch $(STAMP)

# The notebooks' kernel spec ("python3" in the venv), with the runner's quiet settings (no TensorFlow
# start-up lines in a cell when JupyterLab or papermill starts it): ptyanalysis/pipeline/kernelspec.py.
$(KERNEL_SPEC): $(STAMP) ptyanalysis/pipeline/kernelspec.py ptyanalysis/pipeline/notebook.py
	$(BIN)/python -m ptyanalysis.pipeline.kernelspec >/dev/null

demo: venv
	$(BIN)/ptyanalysis demo --hub $(DEMO_HUB)

CI_HUB := build/ci_hub
NBVAL_DIR := build/nbval
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

# The whole suite: Debian's chromium for the report's browser test (installed when missing and this user
# can, else make stops at once with the command to run: tools/ensure_chromium.sh); prepare the ci-size study (simulate, train, comparison grid; reused when
# complete); copy the committed notebooks to build/nbval with the ci parameters (params/ci_*.yaml)
# injected and their stored outputs kept; then pytest on tests/ and nbval on those copies (it
# re-executes them and compares the cells marked NBVAL_CHECK_OUTPUT with the committed outputs).
# Then the backend-neutral tests (marker "neutral") once more under Keras-JAX on the CPU with TensorFlow made
# unimportable (tests/support/no_tensorflow), as on a GPU machine that has JAX or PyTorch and no TensorFlow:
# they assert the same results as the TensorFlow run. pytest exit code 5 (nothing collected) is not a failure.
NO_TF := PYTHONPATH=tests/support/no_tensorflow KERAS_BACKEND=jax

test: venv
	@tools/ensure_chromium.sh
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/ptyanalysis demo --size ci --hub $(CI_HUB) --prepare-only --grid
	$(BIN)/python tools/build_notebooks.py prepare-nbval $(NBVAL_DIR)
	@TF_CPP_MIN_LOG_LEVEL=3 PTYANALYSIS_CI_HUB=$(CI_HUB) $(BIN)/python -m pytest tests $(NBVAL_DIR)/*.ipynb $(NBVAL) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5), treated as success"; rc=0; fi; exit $$rc
	@echo "== the backend-neutral tests again: Keras on JAX, TensorFlow unimportable =="
	@$(NO_TF) PTYANALYSIS_CI_HUB=$(CI_HUB) $(BIN)/python -m pytest tests -m neutral -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5), treated as success"; rc=0; fi; exit $$rc

# Only the second pass above (Keras on JAX, TensorFlow unimportable), on an existing ci hub.
test-no-tf: venv
	@$(NO_TF) PTYANALYSIS_CI_HUB=$(CI_HUB) $(BIN)/python -m pytest tests -m neutral -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5), treated as success"; rc=0; fi; exit $$rc

# The fast gate (numpy-only tests, no study, no TensorFlow models): under 2 minutes.
test-fast: venv
	@$(BIN)/python -m pytest tests -m fast -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5), treated as success"; rc=0; fi; exit $$rc

# The linter over the package, the notebooks' sources and the tests (rules in pyproject.toml).
lint: venv
	$(BIN)/ruff check ptyanalysis tests tools

bench: venv
	$(BIN)/python -m ptyanalysis.bench

# Build notebooks/*.ipynb from their sources (ptyanalysis/templates/*.py): execute each on the
# ci-size study with params/ci_<name>.yaml and write it without papermill's injected cell or
# machine paths, outputs kept (what nbval checks in make test).
notebooks: venv
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/ptyanalysis demo --size ci --hub $(CI_HUB) --prepare-only --grid
	$(BIN)/python tools/build_notebooks.py build

clean:
	rm -rf $(DEMO_HUB) build .pytest_cache
