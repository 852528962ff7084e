"""State warm start: the tower learns the re-simulated hand/object/gripper state of a tiny build's frames."""

import json
from pathlib import Path

import pytest
from helpers import changed_tensors

from progresslm.cli.main import main

pytest.importorskip("metaworld")
pytest.importorskip("transformers")
# Load torch's compiler stack (it loads triton) before any test renders with EGL: loading triton after
# an EGL context exists in the process crashed it (segfault in triton's C extension) on this machine.
import torch._dynamo  # noqa: F401


@pytest.fixture(scope="module")
def sim_build(tiny_sim_build):
    return Path(tiny_sim_build.out)


def test_warm_start_fits_the_state_and_changes_only_the_tower(sim_build, tiny_vlm_dir, tmp_path):
    out = tmp_path / "warm"
    code = main(["train", "state-warmup", "--model", str(tiny_vlm_dir), "--build", str(sim_build), "--out", str(out),
                 "--steps", "40", "--batch-size", "4", "--held-out", "2", "--learning-rate", "3e-3"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "state_warmup.json").read_text())
    assert report["frames"] > 6 and report["tasks"] == 1 and report["steps"] == 40
    assert report["head"].startswith("linear on the mean")
    assert report["train_r2_after"] > report["train_r2_before"] + 0.2
    changed = changed_tensors(tiny_vlm_dir, out)
    assert changed and all(key.startswith("visual.") or ".visual." in key for key in changed)


def test_frames_carry_the_state_of_their_episode(sim_build):
    import random

    from progresslm.train.state_warmup import state_frames

    paths, states, tasks = state_frames(sim_build, 10, random.Random(0))
    assert len(paths) == len(states) == len(tasks) and all(path.is_file() for path in paths)
    assert all(len(state) == 7 for state in states)
    # the hand moves during an episode, so the frames' states are not all the same
    assert len({tuple(round(v, 3) for v in state[:3]) for state in states}) > len(states) // 2


def test_state_warmup_errors_name_the_problem(sim_build, tiny_vlm_dir, tmp_path, capsys):
    args = ["train", "state-warmup", "--model", str(tiny_vlm_dir), "--out", str(tmp_path / "o")]
    assert main([*args, "--build", str(tmp_path / "nowhere")]) == 2
    assert "must be a simulator build directory" in capsys.readouterr().err
    rows = json.loads((sim_build / "sft" / "visual_same_view.jsonl").read_text().splitlines()[0])
    assert main([*args, "--build", str(sim_build), "--leave-out", rows["sim"]["task"]]) == 2
    assert "no trajectories left after leaving out" in capsys.readouterr().err
    assert main([*args, "--build", str(sim_build), "--held-out", "500"]) == 2
    assert "raise --trajectories" in capsys.readouterr().err
    assert main([*args, "--build", str(sim_build), "--steps", "-1"]) == 2
    assert "--steps must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing half-written
