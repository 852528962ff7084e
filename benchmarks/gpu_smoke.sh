#!/usr/bin/env bash
# The real-size paths on one GPU, in under 10 minutes: a random-init model of Qwen2.5-VL-3B's shape, processor settings
# and chat template (benchmarks/qwen2_5_vl_3b_shape.py, shared with benchmarks/full_size_dry_run.py; the vocabulary is
# our small one, not 151k) through LoRA SFT (8 steps) and GRPO (4 steps, vLLM rollouts when vLLM is installed) with the
# shipped recipes, then `progresslm eval` with --backend vllm and --backend hf, each printing samples/s. Run from the
# repository root:
#
#     bash benchmarks/gpu_smoke.sh            # on a GPU machine (the device tool); OUT (default runs/gpu_smoke) collects logs
#     bash benchmarks/gpu_smoke.sh --check    # anywhere, in about a minute: the same commands on the CPU with the reduced
#                                             # model (2 layers): recipes with --dry-run, eval --backend hf on 2 samples
#
# The GPU image has torch, transformers, peft and accelerate but no trl or vllm: put their wheels (and what they
# need) in .whl/ and carry it; this script installs .whl/*.whl first when the folder exists. A step whose
# package is missing prints SKIPPED with the reason instead of failing the rest.
set -uo pipefail
CHECK=false
for arg in "$@"; do
  case $arg in
    --check) CHECK=true ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "gpu_smoke.sh: unknown argument $arg (use --check or nothing)" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-runs/gpu_smoke}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PROGRESSLM_HOME=${PROGRESSLM_HOME:-$OUT/home} HF_HUB_OFFLINE=1 MUJOCO_GL=egl
if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}; fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
PY=${PY:-python3}
step() { echo "== $(date +%T) $*"; }
have() { $PY -c "import $1" 2>/dev/null; }
if $CHECK; then
  SHAPE=--reduced DEVICE=cpu DTYPE=float32 LIMIT=2 DRY=--dry-run  # a dry run checks a GPU recipe on any machine
else
  SHAPE= DEVICE=cuda DTYPE=bfloat16 LIMIT=200 DRY=
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
fi

step "example benchmark"
$PY -m progresslm.cli.main bench example > "$OUT/bench.log" 2>&1 || { cat "$OUT/bench.log"; exit 1; }
EX=$PROGRESSLM_HOME/example-v1

step "random-init Qwen2.5-VL-3B-shaped model ${SHAPE:-(real shape)}"
/usr/bin/time -f "build %e s" $PY benchmarks/qwen2_5_vl_3b_shape.py --out "$OUT/model3b" $SHAPE --corpus "$EX"/*.jsonl || exit 1
FILES="data.files=[$EX/visual_same_view.jsonl,$EX/text-normal.jsonl,$EX/visual-unanswerable.jsonl] data.image_root=$EX/images"

if have trl; then
  step "LoRA SFT, 8 steps $DRY"
  /usr/bin/time -f "sft %e s" $PY -m progresslm.cli.main train sft --config configs/sft_qwen2_5_vl_3b.yaml model="$OUT/model3b" \
    output_dir="$OUT/sft" $FILES max_steps=8 batch_size=8 per_device_batch_size=4 save_steps=8 logging_steps=1 report_to=none \
    $DRY || exit 1
  USE_VLLM=false; have vllm && USE_VLLM=true
  $CHECK && USE_VLLM=true  # the dry run checks the vLLM recipe without vLLM (no environment checks)
  GRPO_FROM=$OUT/sft; $CHECK && GRPO_FROM=$OUT/model3b  # a dry run trains no SFT adapter to start from
  step "GRPO, 4 steps (use_vllm=$USE_VLLM) $DRY"
  /usr/bin/time -f "grpo %e s" $PY -m progresslm.cli.main train grpo --config configs/grpo_qwen2_5_vl_3b.yaml model="$GRPO_FROM" \
    output_dir="$OUT/grpo" $FILES max_steps=4 batch_size=8 per_device_batch_size=8 num_generations=4 save_steps=4 \
    logging_steps=1 use_vllm=$USE_VLLM vllm_mode=colocate report_to=none $DRY || exit 1
else
  echo "SKIPPED sft and grpo: trl is not installed (carry its wheels in .whl/)"
fi

for backend in vllm hf; do
  if [ $backend = vllm ] && ! have vllm; then echo "SKIPPED eval --backend vllm: vllm is not installed"; continue; fi
  MODEL=$OUT/model3b; [ -f "$OUT/sft/adapter_config.json" ] && MODEL=$OUT/sft
  if [ $backend = vllm ] && [ "$MODEL" = "$OUT/sft" ]; then
    $PY -m progresslm.cli.main train export --adapter "$OUT/sft" --out "$OUT/sft-merged" || exit 1
    MODEL=$OUT/sft-merged
  fi
  step "eval --backend $backend ($MODEL)"
  start=$(date +%s.%N)
  $PY -m progresslm.cli.main eval --backend $backend --model "$MODEL" --bench "$EX"/*.jsonl --image-root "$EX/images" \
    --device $DEVICE --dtype $DTYPE --batch-size 32 --max-new-tokens 64 --first $LIMIT --out "$OUT/eval-$backend" \
    --no-plots --bootstrap 0 --quiet > "$OUT/eval-$backend.log" 2>&1 || { cat "$OUT/eval-$backend.log"; exit 1; }
  end=$(date +%s.%N)
  n=$(wc -l < "$OUT/eval-$backend/results.jsonl")
  $PY -c "print(f'eval $backend: {$n} samples in {$end - $start:.1f} s = {$n / ($end - $start):.2f} samples/s')"
done
step done
