# pinn-run: `make run` and `make test` set up .venv on first use.
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STUDY_DIR := multirun/architecture_study/$(shell date +%Y-%m-%d_%H-%M-%S)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,sweeps,trackers]"
	$(BIN)/python -m pinn_cli.native
	touch $(STAMP)

.PHONY: help install run test test-slow test-all lint format bench bench-spectrum bench-tdse bench-speed bench-second-order bench-ensemble bench-sweeps study clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install pinn-run with its dev, sweep and tracker extras

run: $(STAMP) ## train the default experiment (ARGS="potential=finite_well ..." for overrides)
	$(BIN)/pinn-run $(ARGS)

test: $(STAMP) ## the test suite without the tests marked slow, one worker per core (~7 min on 2 cores)
	$(BIN)/python -m pytest -q -m "not slow" -n auto

test-slow: $(STAMP) ## only the tests marked slow (CI runs them after make test)
	$(BIN)/python -m pytest -q -m slow

test-all: $(STAMP) ## every test
	$(BIN)/python -m pytest -q

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## ruff format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## accuracy benchmark: 1-D and 2-D eigenproblems, then dynamics, ~50 min (writes bench-results/)
	$(BIN)/python -m benchmarks.accuracy --out bench-results/accuracy.md
	$(BIN)/python -m benchmarks.spectrum --out bench-results/spectrum.md
	$(BIN)/python -m benchmarks.tdse --out bench-results/tdse.md

bench-spectrum: $(STAMP) ## ten states of 1-D potentials, smooth wells on wide domains (~25 min)
	$(BIN)/python -m benchmarks.spectrum --out bench-results/spectrum.md

bench-tdse: $(STAMP) ## the time-dependent cases alone: wave packets, coherent state, beats (~15 min)
	$(BIN)/python -m benchmarks.tdse --out bench-results/tdse.md

bench-speed: $(STAMP) ## per-step speed and time to solution against the PyTorch and DeepXDE peers (~25 min)
	$(BIN)/python -m benchmarks.speed --out bench-results/speed.md
	$(BIN)/python -m benchmarks.second_order --whole --out bench-results/second_order.md

bench-second-order: $(STAMP) ## one LM step (explicit and matrix-free) against one Adam step; the Gram matrix's layout
	$(BIN)/python -m benchmarks.second_order --whole --out bench-results/second_order.md
	$(BIN)/python -m benchmarks.gram --out bench-results/gram.md

bench-ensemble: $(STAMP) ## train.ensemble=K against one network, per stage and whole runs
	$(BIN)/python -m benchmarks.ensemble --out bench-results/ensemble.md

bench-sweeps: $(STAMP) ## jobs per hour of experiment=width_depth_study, basic against joblib launcher
	$(BIN)/python -m benchmarks.throughput --out bench-results/throughput.md

study: $(STAMP) ## experiment=architecture_study (324 jobs, 2 at a time, ~20-30 min) and its report
	-$(BIN)/pinn-run -m experiment=architecture_study hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweep.dir=$(STUDY_DIR) progress=false
	$(BIN)/pinn-report $(STUDY_DIR)

clean: ## remove the virtual environment and run outputs
	rm -rf $(VENV) outputs multirun bench-results
