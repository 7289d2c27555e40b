# Two commands do all the set-up: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ptyanalysis-installed
DEMO_HUB ?= demo_hub
PYTEST_ARGS ?=

.PHONY: venv demo test nbval bench notebooks clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

demo: venv
	$(BIN)/ptyanalysis demo --hub $(DEMO_HUB)

# pytest exit code 5 (nothing collected) is not a failure.
test: venv
	@set -o pipefail; TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest tests notebooks $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5), treated as success"; rc=0; fi; exit $$rc

bench: venv
	$(BIN)/python -m ptyanalysis.bench

# Re-execute the committed notebooks on the ci-size study (their stored outputs are what nbval checks).
notebooks: venv
	$(BIN)/python -m ptyanalysis.notebooks

clean:
	rm -rf $(DEMO_HUB) .pytest_cache
