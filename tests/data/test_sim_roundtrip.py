"""Round trip: simulated episodes -> videos (`sim export-videos`) -> `data build` -> `eval`. The labels equal the
simulator's own (`progress_labels` of the same rollout) at the same frames `sim build` would sample."""

from __future__ import annotations

import json

import pytest

from progresslm.sim.sim_build import simulator_problem

pytestmark = pytest.mark.skipif(simulator_problem() is not None, reason=f"no simulator: {simulator_problem()}")


def test_sim_videos_build_the_simulators_labels(tmp_path):
    from progresslm.bench.format import format_percent
    from progresslm.bench.sampling import sample_frames
    from progresslm.cli.main import main
    from progresslm.data.data_build import DataBuildConfig, build
    from progresslm.sim.export_videos import export_videos
    from progresslm.sim.metaworld.rollout import progress_labels, rollout

    videos = tmp_path / "videos"
    sidecars = export_videos(["drawer-open-v3", "button-press-topdown-v3"], 2, videos, size=64)
    outcome = build(DataBuildConfig(source=f"videos:{videos}", out=str(tmp_path / "bench"), per_interval=2, size=64),
                    progress=False)
    truth = {}
    for sidecar in sidecars:
        info = json.loads(sidecar.read_text())["sim"]
        episode = rollout(info["task"], info["seed"])
        assert episode.key_frames == info["key_frames"]
        truth[f"{info['task']}/{sidecar.stem}"] = (progress_labels(episode), sample_frames(episode.key_frames, 2))
    rows = [json.loads(line) for line in (outcome.out / "bench" / "visual_same_view.jsonl").read_text().splitlines()]
    seen = {}
    for row in rows:
        labels, frames = truth[row["episode"]["episode"]]
        frame = row["episode"]["obs_frame"]
        assert row["progress_score"] == format_percent(float(labels[frame]))
        seen.setdefault(row["episode"]["episode"], []).append(frame)
    assert {k: sorted(v) for k, v in seen.items()} == {k: frames for k, (_, frames) in truth.items()}
    text = json.loads((outcome.out / "bench" / "text-normal.jsonl").read_text().splitlines()[0])
    assert text["text_demo"][0].startswith(("reach", "move", "press", "push")) and text["total_steps"] >= 2
    assert outcome.samples["bench"]["visual_cross_view"] == len(rows)
    files = [str(p) for p in outcome.files["bench"]]
    assert main(["eval", "--bench", *files, "--image-root", str(outcome.image_root), "--backend", "constant",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["splits"]
    assert metrics["visual_same_view"]["n"] == len(rows) and metrics["text"]["n"] == outcome.samples["bench"]["text-normal"]
