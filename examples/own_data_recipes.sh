#!/usr/bin/env bash
# The three recipes of docs/own-data.md, run end to end on stand-in robot data: expert episodes of two Meta-World
# tasks that no default model was trained on, written as a users' videos folder (two cameras, key-step sidecars)
# and as a LeRobot v3.0 dataset. Outputs go to runs/own/; the figures docs/own-data.md shows are copied to
# docs/own-data/.
#   MUJOCO_GL=egl bash examples/own_data_recipes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PL=".venv/bin/progresslm"
OUT=runs/own
rm -rf "$OUT"
mkdir -p "$OUT" docs/own-data

# stand-in recordings: 4 episodes each of two held-out tasks, 2 cameras, 128 px, 10 frames/s
$PL sim export-videos --tasks drawer-open-v3 button-press-topdown-v3 --episodes 4 --size 128 --out $OUT/videos

echo "== recipe 1: score my robot videos against a demonstration"
$PL data episodes videos:$OUT/videos
$PL watch --source videos:$OUT/videos --episodes 0-2 --demo-episode 3 --camera corner3 --fps 5 \
    --out $OUT/watch --quiet
$PL watch $OUT/videos/drawer-open-v3/ep0.corner3.mp4 --demo-video $OUT/videos/drawer-open-v3/ep3.corner3.mp4 \
    --fps 5 --start 2 --out $OUT/watch-one --quiet

echo "== recipe 2: my LeRobot dataset -> benchmark and training data"
$PL data export-lerobot videos:$OUT/videos --out $OUT/lerobot --quiet     # stands in for a recorded LeRobot dataset
$PL data episodes lerobot:$OUT/lerobot
$PL data build lerobot:$OUT/lerobot --split-by episode --splits bench:0.5,sft:0.5 --out $OUT/bench --quiet
# the retrieval baseline's N/A threshold, chosen on the sft split (its default threshold suits 224-px simulator frames)
$PL bench calibrate-retrieval --bench $OUT/bench/sft/*.jsonl --image-root $OUT/bench/images --out $OUT/retrieval.json
for backend in matcher retrieval pixel-nn constant; do
  extra=""; [ $backend = retrieval ] && extra="--calibration $OUT/retrieval.json"
  $PL eval --bench $OUT/bench/bench/*.jsonl --image-root $OUT/bench/images --backend $backend --swap-demos $extra \
      --out $OUT/runs/$backend --quiet > /dev/null
done
$PL report $OUT/runs/matcher $OUT/runs/retrieval $OUT/runs/pixel-nn $OUT/runs/constant --html $OUT/compare.html
$PL train tiny-model --out $OUT/tiny-vlm                                  # a random tiny VLM: checks the pipeline
$PL train sft --config configs/sft_tiny_cpu.yaml model=$OUT/tiny-vlm "data.files=[$OUT/bench/sft/*.jsonl]" \
    data.image_root=$OUT/bench/images max_steps=5 output_dir=$OUT/sft 2>&1 | tail -3

echo "== recipe 3: share it as a Hugging Face dataset, evaluate from there"
$PL bench export $OUT/bench --format hf --out $OUT/hf
$PL eval --bench $OUT/hf --backend matcher --out $OUT/runs/matcher-from-hf --quiet

cp $OUT/watch/grid.png docs/own-data/watch_grid.png
cp $OUT/watch/summary.md docs/own-data/watch_summary.md
cp $OUT/watch-one/curve.png docs/own-data/watch_one_curve.png
cp $OUT/bench/contact_sheet.png docs/own-data/bench_contact_sheet.png
echo "done: figures in docs/own-data/"
