"""Anchor warm start: the tower learns to put the observation nearest its labelled keyframe."""

import json
import random

import pytest
from helpers import changed_tensors

from progresslm.cli.main import main

pytest.importorskip("transformers")

KEY_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 220)]  # red, green, blue
OBS_COLOURS = [(40, 220, 220), (220, 50, 210), (230, 220, 40)]  # cyan, magenta, yellow: each key colour's complement


def write_rows(root, tasks=4, per_task=12, seed=0):
    """Benchmark rows whose three keyframes are plain red, green and blue in some order, and whose
    observation is a noisy plain image in the *complement* of the labelled keyframe's colour. A random
    tower matches by raw colour and picks a wrong keyframe; the pairing is learnable and is the same in
    every task."""
    from PIL import Image

    rng = random.Random(seed)
    rows = []
    for t in range(tasks):
        for i in range(per_task):
            uid = f"t{t}_{i:02d}"
            folder = root / "images" / uid
            folder.mkdir(parents=True)
            order = rng.sample(range(3), 3)
            for k, colour in enumerate(order):
                Image.new("RGB", (56, 56), KEY_COLOURS[colour]).save(folder / f"key{k}.jpg")
            anchor = rng.randrange(3)
            noisy = tuple(min(255, max(0, c + rng.randint(-30, 30))) for c in OBS_COLOURS[order[anchor]])
            # odd tasks' observations are wider: images of different sizes have different token counts
            Image.new("RGB", (84 if t % 2 else 56, 56), noisy).save(folder / "obs.jpg")
            rows.append({"id": uid, "task_goal": "do it", "visual_demo": ["key0.jpg", "key1.jpg", "key2.jpg"],
                         "total_steps": 2, "stage_to_estimate": ["obs.jpg"], "closest_idx": anchor + 1,
                         "progress_score": f"{anchor * 50}%", "data_source": "test", "sim": {"task": f"task{t}"}})  # fmt: skip
    path = root / "visual_same_view.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_warm_start_learns_the_anchor_and_changes_only_the_tower(tiny_vlm_dir, tmp_path):
    bench = write_rows(tmp_path)
    out = tmp_path / "warm"
    code = main(["train", "anchor-warmup", "--model", str(tiny_vlm_dir), "--bench", str(bench), "--image-root",
                 str(tmp_path / "images"), "--out", str(out), "--steps", "25", "--batch-size", "8",
                 "--learning-rate", "1e-3", "--held-out", "12"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "anchor_warmup.json").read_text())
    assert report["samples"] == 48 and report["tasks"] == 4 and len(report["held_out_tasks"]) == 1
    assert report["held_out"] == 12
    # the colour pairing is learnt on the training tasks and carries to the held-out task (0 -> 1 here)
    assert report["train_accuracy_before"] < 0.6
    assert report["train_accuracy_after"] >= report["train_accuracy_before"] + 0.3
    assert report["held_out_accuracy_after"] >= report["held_out_accuracy_before"] + 0.3
    changed = changed_tensors(tiny_vlm_dir, out)
    assert changed and all(key.startswith("visual.") or ".visual." in key for key in changed)


def test_anchor_warmup_errors_name_the_problem(tiny_vlm_dir, tmp_path, capsys):
    bench = write_rows(tmp_path, tasks=2, per_task=3)
    args = ["train", "anchor-warmup", "--model", str(tiny_vlm_dir), "--out", str(tmp_path / "o"),
            "--image-root", str(tmp_path / "images")]  # fmt: skip
    assert main([*args, "--bench", str(bench), "--leave-out", "task0"]) == 2
    assert "need 2 or more" in capsys.readouterr().err
    assert main([*args, "--bench", str(bench), "--batch-size", "50"]) == 2
    assert "fewer than the batch size" in capsys.readouterr().err
    assert main([*args, "--bench", str(bench), "--temperature", "0"]) == 2
    assert "--temperature positive" in capsys.readouterr().err
    assert main([*args, "--bench", str(tmp_path / "nowhere.jsonl")]) == 2
    assert "nowhere.jsonl" in capsys.readouterr().err
    (tmp_path / "images" / "t0_00" / "obs.jpg").unlink()
    assert main([*args, "--bench", str(bench)]) == 2
    err = capsys.readouterr().err
    assert "images missing, first" in err and "t0_00/obs.jpg" in err
    assert not (tmp_path / "o").exists()  # nothing half-written
