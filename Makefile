# `make demo` and `make test` set up everything they need on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= runs/example

.PHONY: setup demo test test-all clean nano

setup: $(STAMP)

# Everything comes from pyproject.toml ([all] and [dev]; torch and torchvision are capped there at the releases
# this project is tested with, which on this project's machines install from local disk).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -qq -e '.[all,dev]'
	touch $(STAMP)

# The main job: build the small simulated benchmark (cached), evaluate the two default models shipped in the
# package (the matcher, and nano with the matcher's hints) and the shortcut baselines, each model also with
# swapped demonstrations, print the comparison table and write an HTML report with the plots. Saved replies
# are reused on a second run; the models' runs go to folders named by their weights' digests, so a new
# release is evaluated afresh.
DIGEST = $$($(PY) -c "from progresslm.checkpoints import weights_id; from progresslm import matcher, nano; print(weights_id($(1)))")
MATCHER_RUN = $(RUNS)/matcher-$(call DIGEST,matcher.MATCHER_DIR)
NANO_RUN = $(RUNS)/nano-$(call DIGEST,nano.VLM_DIR)
WORLDS = $${PROGRESSLM_HOME:-$$HOME/.cache/progresslm}/sim-worlds-small-s0-v4
WORLDS_BENCH = --bench "$(WORLDS)/bench/*.jsonl" --image-root "$(WORLDS)/images"
WORLDS_RUNS = $(RUNS)/worlds
WORLDS_MATCHER = $(WORLDS_RUNS)/matcher-$(call DIGEST,matcher.MATCHER_DIR)
WORLDS_NANO = $(WORLDS_RUNS)/nano-$(call DIGEST,nano.VLM_DIR)
demo: setup
	$(PY) -m progresslm.cli.main eval --backend matcher --swap-demos --out $(MATCHER_RUN) --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend nano --swap-demos --out $(NANO_RUN) --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend pixel-nn --swap-demos --out $(RUNS)/pixel-nn --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend retrieval --swap-demos --out $(RUNS)/retrieval --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend constant --out $(RUNS)/constant --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend random --out $(RUNS)/random --quiet > /dev/null
	$(PY) -m progresslm.cli.main report $(MATCHER_RUN) $(NANO_RUN) $(RUNS)/pixel-nn $(RUNS)/retrieval $(RUNS)/constant \
		$(RUNS)/random --html $(RUNS)/compare.html
	@echo "reports: $(MATCHER_RUN)/report.html, $(NANO_RUN)/report.html (plots, demo swap) and $(RUNS)/compare.html"
	@echo
	@echo "every simulator family (sim build --preset worlds-small): a table per family, the models trained on Meta-World only"
	$(PY) -m progresslm.cli.main sim build --preset worlds-small --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend matcher --swap-demos $(WORLDS_BENCH) --out $(WORLDS_MATCHER) --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend nano --swap-demos $(WORLDS_BENCH) --out $(WORLDS_NANO) --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend pixel-nn --swap-demos $(WORLDS_BENCH) --out $(WORLDS_RUNS)/pixel-nn --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend retrieval --swap-demos $(WORLDS_BENCH) --out $(WORLDS_RUNS)/retrieval --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend constant $(WORLDS_BENCH) --out $(WORLDS_RUNS)/constant --quiet > /dev/null
	$(PY) -m progresslm.cli.main report $(WORLDS_MATCHER) $(WORLDS_NANO) \
		$(WORLDS_RUNS)/pixel-nn $(WORLDS_RUNS)/retrieval $(WORLDS_RUNS)/constant --html $(WORLDS_RUNS)/compare.html

# The default models from scratch on the CPU (configs/nano_*.yaml; seed 0), every stage resumed or skipped when
# done: the full simulator preset; the matcher on the sft pool (selected on the rl pool's tasks) with 4
# cross-fitted fold matchers for nano's training hints; nano (FastVLM on the pretrained EfficientNet-Lite0, a
# random Qwen2 LM) by SFT on the sft pool, the SFT checkpoint that does best on the rl pool's tasks, GRPO on the
# rl pool; then both copied into the package (progresslm/nano/weights).
SIM_FULL = $${PROGRESSLM_HOME:-$$HOME/.cache/progresslm}/sim-full-s0-v4
NANO ?= runs/nano
MATCHER_OPTIONS ?= --taps 4:4,3:4,7:1 --similarity both --steps 600 --eval-every 100 --learning-rate 1e-3
nano: setup
	$(PY) -m progresslm.cli.main sim build --preset full --quiet
	test -f $(NANO)/matcher/folds.json || $(PY) -m progresslm.cli.main train matcher --train "$(SIM_FULL)/sft/*.jsonl" \
		--val "$(SIM_FULL)/rl/*.jsonl" --image-root "$(SIM_FULL)/images" --out $(NANO)/matcher --folds 4 $(MATCHER_OPTIONS) --quiet
	test -f $(NANO)/init/config.json || $(PY) -m progresslm.cli.main train nano-init --config configs/nano_vlm.yaml --out $(NANO)/init
	$(PY) -m progresslm.cli.main train sft --config configs/nano_sft.yaml model=$(NANO)/init output_dir=$(NANO)/sft \
		data.hints_model=$(NANO)/matcher
	test -f $(NANO)/sft-best/select.json || $(PY) -m progresslm.cli.main train select --runs $(NANO)/sft \
		--bench "$(SIM_FULL)/rl/*.jsonl" --image-root "$(SIM_FULL)/images" --per-file 50 --out $(NANO)/sft-best \
		--hints matcher --hints-model $(NANO)/matcher
	$(PY) -m progresslm.cli.main train grpo --config configs/nano_grpo.yaml model=$(NANO)/sft-best output_dir=$(NANO)/grpo \
		data.hints_model=$(NANO)/matcher
	$(PY) -m progresslm.train.ship --matcher $(NANO)/matcher --nano $(NANO)/grpo

test: setup
	$(PY) -m ruff check src tests benchmarks experiments examples
	$(PY) -m pytest -q -m "not slow and not gpu and not api"

test-all: setup
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache
