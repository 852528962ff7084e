#!/usr/bin/env bash
# The real-size paths on one GPU, in under 10 minutes: a random-init Qwen2.5-VL-3B-shaped model (hidden 2048,
# 36 layers, vision tower 32 x 1280; the tokenizer is our small one, so the vocabulary is not 151k) through
# LoRA SFT and GRPO for a few steps, then `progresslm eval` with --backend hf and --backend vllm, each printing
# samples/s. Run from the repository root on a GPU machine (the device tool):
#
#     bash benchmarks/gpu_smoke.sh            # OUT (default runs/gpu_smoke) collects logs and timings
#
# The GPU image has torch, transformers, peft and accelerate but no trl or vllm: put their wheels (and what they
# need) in .whl/ and carry it; this script installs .whl/*.whl first when the folder exists. A step whose
# package is missing prints SKIPPED with the reason instead of failing the rest.
set -uo pipefail
OUT=${OUT:-runs/gpu_smoke}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PROGRESSLM_HOME=${PROGRESSLM_HOME:-$OUT/home} HF_HUB_OFFLINE=1 MUJOCO_GL=egl
if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}; fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
PY=python3
step() { echo "== $(date +%T) $*"; }
have() { $PY -c "import $1" 2>/dev/null; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

step "example benchmark"
$PY -m progresslm.cli.main bench example > "$OUT/bench.log" 2>&1 || { cat "$OUT/bench.log"; exit 1; }
EX=$PROGRESSLM_HOME/example-v1

step "random-init Qwen2.5-VL-3B-shaped model"
cat > "$OUT/model3b.yaml" <<Y
hidden_size: 2048
layers: 36
heads: 16
kv_heads: 2
intermediate_size: 11008
vision_depth: 32
vision_hidden_size: 1280
vision_heads: 16
image_size: 448
vocab_size: 2048
tie_embeddings: true
corpus_files: ["$EX/*.jsonl"]
Y
/usr/bin/time -f "build %e s" $PY -m progresslm.cli.main train tiny-model --config "$OUT/model3b.yaml" --out "$OUT/model3b" || exit 1
FILES="data.files=[$EX/visual_same_view.jsonl,$EX/text-normal.jsonl,$EX/visual-unanswerable.jsonl] data.image_root=$EX/images"

if have trl; then
  step "LoRA SFT, 8 steps"
  /usr/bin/time -f "sft %e s" $PY -m progresslm.cli.main train sft --config configs/sft_qwen2_5_vl_3b.yaml model="$OUT/model3b" \
    output_dir="$OUT/sft" $FILES max_steps=8 batch_size=8 per_device_batch_size=4 save_steps=8 logging_steps=1 report_to=none
  USE_VLLM=false; have vllm && USE_VLLM=true
  step "GRPO, 4 steps (use_vllm=$USE_VLLM)"
  /usr/bin/time -f "grpo %e s" $PY -m progresslm.cli.main train grpo --config configs/grpo_qwen2_5_vl_3b.yaml model="$OUT/sft" \
    output_dir="$OUT/grpo" $FILES max_steps=4 batch_size=8 per_device_batch_size=8 num_generations=4 save_steps=4 \
    logging_steps=1 use_vllm=$USE_VLLM vllm_mode=colocate report_to=none
else
  echo "SKIPPED sft and grpo: trl is not installed (carry its wheels in .whl/)"
fi

for backend in hf vllm; do
  if [ $backend = vllm ] && ! have vllm; then echo "SKIPPED eval --backend vllm: vllm is not installed"; continue; fi
  MODEL=$OUT/model3b; [ -d "$OUT/sft" ] && MODEL=$OUT/sft
  [ $backend = vllm ] && [ -d "$OUT/sft" ] && { $PY -m progresslm.cli.main train export --adapter "$OUT/sft" --out "$OUT/sft-merged"; MODEL=$OUT/sft-merged; }
  step "eval --backend $backend ($MODEL)"
  start=$(date +%s.%N)
  $PY -m progresslm.cli.main eval --backend $backend --model "$MODEL" --bench "$EX"/*.jsonl --image-root "$EX/images" \
    --device cuda --dtype bfloat16 --batch-size 32 --max-new-tokens 64 --limit 200 --out "$OUT/eval-$backend" --quiet > /dev/null
  end=$(date +%s.%N)
  n=$(wc -l < "$OUT/eval-$backend/results.jsonl")
  $PY -c "print(f'eval $backend: {$n} samples in {$end - $start:.1f} s = {$n / ($end - $start):.2f} samples/s')"
done
step done
