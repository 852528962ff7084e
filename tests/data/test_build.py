"""`data build`: labels linear in time between key frames, pairing, splits, resume, and the output read by `eval`
and the training data builders unchanged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from progresslm.bench.format import format_percent, load_bench
from progresslm.cli.main import main
from progresslm.data.data_build import DataBuildConfig, DataBuildError, build
from tests.data.own_data import LENGTHS, TASKS, bar_position, steps, write_hdf5, write_videos


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_videos(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="module")
def built(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return build(DataBuildConfig(source=f"videos:{videos}", out=str(out), per_interval=2, size=48), progress=False)


def rows(outcome, split, stem):
    path = outcome.out / split / f"{stem}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_labels_follow_the_annotated_key_steps(built):
    same = rows(built, "bench", "visual_same_view")
    assert same
    for row in same:
        info = row["episode"]
        task, episode = info["episode"].split("/")
        length = LENGTHS[int(episode[2:])]
        key = [0] + [round(s["end"] * 10) for s in steps(length)]
        progress = float(np.interp(info["obs_frame"], key, np.linspace(0, 1, len(key))))
        assert row["progress_score"] == format_percent(progress)
        assert row["total_steps"] == 3 and len(row["visual_demo"]) == 4
        assert info["demo_episode"] != info["episode"] and info["demo_episode"].split("/")[0] == task
    # the observation image shows the frame it is labelled for
    for row in same[::7]:
        with Image.open(built.image_root / row["id"] / row["stage_to_estimate"][0]) as image:
            channel = TASKS.index(row["episode"]["episode"].split("/")[0])
            assert abs(bar_position(np.asarray(image), channel) - row["episode"]["obs_frame"]) <= 1


def test_every_axis_is_made(built):
    counts = built.samples["bench"]
    assert counts["visual_cross_view"] == counts["visual_same_view"] > 0  # two cameras
    cross = rows(built, "bench", "visual_cross_view")[0]
    assert cross["camera_combination"] in ("top+wrist", "wrist+top")
    text = rows(built, "bench", "text-normal")[0]
    assert text["text_demo"] == ["reach", "grasp", "lift"]
    for stem in ("visual-unanswerable", "text-unanswerable"):
        wrong = rows(built, "bench", stem)
        assert wrong and all(r["episode"]["demo_task"] != r["episode"]["task"] for r in wrong)
        assert all(r["progress_score"] == "n/a" for r in wrong)
    card = json.loads((built.out / "card.json").read_text())
    assert card["baselines"]["constant"]["visual_same_view"]["nse"] is not None
    assert (built.out / "contact_sheet.png").is_file()


def test_eval_and_training_read_the_output_unchanged(built, tmp_path, capsys):
    files = [str(p) for p in built.files["bench"]]
    assert main(["eval", "--bench", *files, "--image-root", str(built.image_root), "--backend", "pixel-nn",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["splits"]["visual_same_view"]["nse"] < 25  # the bar's position gives progress away

    from progresslm.train.training_data import grpo_records, sft_records

    samples = load_bench(files).samples
    assert len(sft_records(samples, built.image_root)) == len(samples)
    assert len(grpo_records([s for s in samples if s.answerable], built.image_root)) > 0


def test_splits_by_task_and_by_episode_are_disjoint(videos, tmp_path):
    by_task = build(DataBuildConfig(source=str(videos), out=str(tmp_path / "t"), splits="bench:1,sft:1", size=32),
                    progress=False)
    tasks = {s: {json.loads(line)["episode"]["task"] for p in by_task.files[s] for line in p.read_text().splitlines()}
             for s in ("bench", "sft")}
    assert len(tasks["bench"]) == len(tasks["sft"]) == 1 and tasks["bench"] != tasks["sft"]
    by_episode = build(DataBuildConfig(source=str(videos), out=str(tmp_path / "e"), split_by="episode",
                                       splits="bench:0.5,sft:0.5", size=32), progress=False)
    seen = {}
    for split in ("bench", "sft"):
        for path in by_episode.files[split]:
            for line in path.read_text().splitlines():
                info = json.loads(line)["episode"]
                for name in (info["episode"], info["demo_episode"]):
                    assert seen.setdefault(name, split) == split, f"{name} in two splits"


def test_uniform_and_times_keyframes(videos, tmp_path):
    uniform = build(DataBuildConfig(source=str(videos), out=str(tmp_path / "u"), keyframes="uniform:4", size=32),
                    progress=False)
    row = rows(uniform, "bench", "visual_same_view")[0]
    assert row["total_steps"] == 4 and uniform.samples["bench"]["text-normal"] == 0  # no step texts
    times = tmp_path / "times.csv"
    lines = ["episode,end,text"] + [f"{t}/ep{e},{x},step {k}" for t in TASKS for e, n in enumerate(LENGTHS)
                                    for k, x in enumerate((1.0, (n - 1) / 10))]
    times.write_text("\n".join(lines) + "\n")
    timed = build(DataBuildConfig(source=str(videos), out=str(tmp_path / "x"), keyframes=f"times:{times}", size=32),
                  progress=False)
    text = rows(timed, "bench", "text-normal")[0]
    assert text["text_demo"] == ["step 0", "step 1"] and text["total_steps"] == 2


def test_resume_gives_the_same_files_and_refuses_other_settings(videos, tmp_path):
    config = DataBuildConfig(source=str(videos), out=str(tmp_path / "r"), size=32)
    first = build(config, progress=False)
    before = {p.name: p.read_text() for p in first.files["bench"]}
    units = sorted((tmp_path / "r" / "units" / "bench").iterdir())
    units[0].unlink()  # as if the build was killed before this episode was saved
    shutil.rmtree(tmp_path / "r" / "bench")
    again = build(config, progress=False)
    assert again.built == 1 and {p.name: p.read_text() for p in again.files["bench"]} == before
    with pytest.raises(DataBuildError, match="other settings .*seed"):
        build(DataBuildConfig(source=str(videos), out=str(tmp_path / "r"), size=32, seed=1), progress=False)


def test_hdf5_with_one_task_gives_no_unanswerable_samples(tmp_path):
    path = write_hdf5(tmp_path / "lift.hdf5")
    outcome = build(DataBuildConfig(source=f"hdf5:{path}", out=str(tmp_path / "h"), keyframes="uniform:3", size=32),
                    progress=False)
    assert outcome.samples["bench"]["visual-unanswerable"] == 0 and outcome.samples["bench"]["visual_cross_view"] > 0
    assert any("no unanswerable samples" in note for note in outcome.notes)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keyframes": "uniform:0"}, "uniform:N"),
        ({"splits": "test:1"}, "bench:0.5"),
        ({"keyframes": "column:subtask"}, "no such column"),
        ({"keyframes": "uniform:40"}, "cannot hold 40 uniform steps"),
        ({"episodes": "0"}, "no task has two episodes"),
    ],
)
def test_bad_settings_are_named(videos, tmp_path, kwargs, message):
    with pytest.raises(DataBuildError, match=message):
        build(DataBuildConfig(source=str(videos), out=str(tmp_path / "b"), **kwargs), progress=False)


def test_cli_prints_the_card_and_the_eval_command(videos, tmp_path, capsys):
    assert main(["data", "build", f"videos:{videos}", "--out", str(tmp_path / "c"), "--size", "32", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Samples per split and axis" in out and "progresslm eval --bench" in out
    assert main(["data", "build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["data", "episodes", str(videos)]) == 0
    assert "6 episodes, 2 tasks" in capsys.readouterr().out


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_lerobot_dataset_with_column_keyframes(tmp_path, version):
    from tests.data.lerobot_fixture import write_lerobot

    root = write_lerobot(tmp_path / "ds", version=version)
    outcome = build(DataBuildConfig(source=f"lerobot:{root}", out=str(tmp_path / "b"), keyframes="column:subtask_index",
                                    size=32), progress=False)
    same = rows(outcome, "bench", "visual_same_view")
    assert same and outcome.samples["bench"]["visual_cross_view"] == len(same)  # two cameras
    from progresslm.data.episode_sources import open_episodes

    episodes = {e.id: e for e in open_episodes(f"lerobot:{root}")}
    for row in same:
        episode = episodes[row["episode"]["episode"]]
        values = episode.columns["subtask_index"]
        ends = [i for i in range(len(values) - 1) if values[i + 1] != values[i]] + [len(values) - 1]
        assert row["total_steps"] == len(ends)
        key = [0] + ends
        expected = float(np.interp(row["episode"]["obs_frame"], key, np.linspace(0, 1, len(key))))
        assert row["progress_score"] == format_percent(expected)
