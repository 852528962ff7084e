# `make demo` and `make test` set up everything they need on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= runs/example

.PHONY: setup demo test test-all clean

setup: $(STAMP)

# torch and torchvision are pinned to the builds this project is tested with (on this project's
# machines they install from local disk); everything else comes from pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[hf,sim,train,retrieval,dev]'
	touch $(STAMP)

# The main job: build the example benchmark (cached), evaluate the baselines, print the table.
demo: setup
	$(PY) -m progresslm.cli.main eval --backend pixel-nn --out $(RUNS)/pixel-nn --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend constant --out $(RUNS)/constant --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend random --out $(RUNS)/random --quiet > /dev/null
	$(PY) -m progresslm.cli.main report $(RUNS)/pixel-nn $(RUNS)/constant $(RUNS)/random --html $(RUNS)/compare.html
	@echo "reports: $(RUNS)/*/report.html and $(RUNS)/compare.html"

test: setup
	$(PY) -m pytest -q -m "not slow and not gpu and not api"

test-all: setup
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache
