# `make demo` and `make test` set up everything they need on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= runs/example

.PHONY: setup demo test test-all clean nano

setup: $(STAMP)

# torch and torchvision are pinned to the builds this project is tested with (on this project's
# machines they install from local disk); everything else comes from pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[hf,sim,train,retrieval,online,serve,dev]'
	touch $(STAMP)

# The main job: build the small simulated benchmark (cached), evaluate ProgressLM-nano (shipped in the
# package) and the shortcut baselines, each also with swapped demonstrations, print the comparison
# table and write an HTML report with the plots. Saved replies are reused on a second run; nano's go to a
# folder named by its weights' digest, so a new release is evaluated afresh.
NANO_RUN = $(RUNS)/nano-$$($(PY) -c "from progresslm.backends.nano import NANO_DIR, weights_id; print(weights_id(NANO_DIR))")
demo: setup
	$(PY) -m progresslm.cli.main eval --backend nano --swap-demos --out $(NANO_RUN) --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend pixel-nn --swap-demos --out $(RUNS)/pixel-nn --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend retrieval --swap-demos --out $(RUNS)/retrieval --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend constant --out $(RUNS)/constant --quiet > /dev/null
	$(PY) -m progresslm.cli.main eval --backend random --out $(RUNS)/random --quiet > /dev/null
	$(PY) -m progresslm.cli.main report $(NANO_RUN) $(RUNS)/pixel-nn $(RUNS)/retrieval $(RUNS)/constant $(RUNS)/random \
		--html $(RUNS)/compare.html
	@echo "reports: $(NANO_RUN)/report.html (plots, demo swap) and $(RUNS)/compare.html"

# ProgressLM-nano from scratch on the CPU (configs/nano_*.yaml; seed 0): the full simulator preset,
# a random-init 3.7 M Qwen2.5-VL, two vision warm starts (EfficientNet features, then the simulator's state),
# SFT on the sft pool (850 + 350 steps), the SFT checkpoint that does
# best on the rl pool's tasks (which SFT never saw), GRPO on the rl pool, then the checkpoint copied into
# the package. Every stage resumes or is skipped when done.
SIM_FULL = $${PROGRESSLM_HOME:-$$HOME/.cache/progresslm}/sim-full-s0-v3
NANO ?= runs/nano
nano: setup
	$(PY) -m progresslm.cli.main sim build --preset full --quiet
	test -f $(NANO)/init/config.json || $(PY) -m progresslm.cli.main train tiny-model --config configs/nano_model.yaml --out $(NANO)/init
	test -f $(NANO)/distilled/distill.json || $(PY) -m progresslm.cli.main train distill-vision --model $(NANO)/init \
		--bench "$(SIM_FULL)/sft/*.jsonl" --image-root "$(SIM_FULL)/images" --out $(NANO)/distilled --steps 600
	test -f $(NANO)/state/state_warmup.json || $(PY) -m progresslm.cli.main train state-warmup --model $(NANO)/distilled \
		--build "$(SIM_FULL)" --leave-out assembly-v3 --out $(NANO)/state
	$(PY) -m progresslm.cli.main train sft --config configs/nano_sft.yaml model=$(NANO)/state output_dir=$(NANO)/sft
	$(PY) -m progresslm.cli.main train sft --config configs/nano_sft_more.yaml model=$(NANO)/sft output_dir=$(NANO)/sft2
	test -f $(NANO)/sft-best/select.json || $(PY) -m progresslm.cli.main train select --runs $(NANO)/sft2 \
		--bench "$(SIM_FULL)/rl/*.jsonl" --image-root "$(SIM_FULL)/images" --per-file 50 --out $(NANO)/sft-best
	$(PY) -m progresslm.cli.main train grpo --config configs/nano_grpo.yaml model=$(NANO)/sft-best output_dir=$(NANO)/grpo
	$(PY) -m progresslm.cli.main train export --model $(NANO)/grpo --out src/progresslm/models/nano

test: setup
	$(PY) -m pytest -q -m "not slow and not gpu and not api"

test-all: setup
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache
