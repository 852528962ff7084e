import dataclasses
import json
import os
from pathlib import Path

import pytest

from progresslm.backends.base import BackendError, BackendOptions
from progresslm.backends.baselines import ConstantBackend
from progresslm.bench.example import build_example
from progresslm.evaluation import EvalConfig, EvalError, evaluate
from progresslm.results import ResultStore


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return build_example(tmp_path_factory.mktemp("example"), seed=1, tasks_per_colour=1, per_interval=1)


def config(example, out, **kwargs) -> EvalConfig:
    kwargs.setdefault("bootstrap", 50)
    return EvalConfig(bench=[str(p) for p in example.files], out=str(out), image_root=str(example.root / "images"), **kwargs)


class CountingConstant(ConstantBackend):
    """The constant floor, counting what it is asked and able to die after a number of replies."""

    def __init__(self, options, mode, die_after=None):
        super().__init__(options, mode)
        self.asked, self.die_after = 0, die_after

    def generate(self, requests):
        for index, reply in super().generate(requests):
            if self.die_after is not None and self.asked >= self.die_after:
                raise KeyboardInterrupt
            self.asked += 1
            yield index, reply


def n_samples(example) -> int:
    return sum(1 for path in example.files for line in path.read_text().splitlines() if line.strip())


def test_end_to_end_writes_everything(example, tmp_path):
    outcome = evaluate(config(example, tmp_path / "run", backend="constant"), progress=False)
    out = outcome.out
    for name in ("results.jsonl", "metrics.json", "config.json", "report.md", "report.html", "floors.json",
                 "score_hist.png", "trajectories.png"):
        assert (out / name).is_file(), name
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == n_samples(example) == outcome.done
    record = json.loads(lines[0])
    for key in ("uid", "backend", "model", "prompt_hash", "reply", "status", "score", "ref", "latency_s", "prompt_tokens"):
        assert key in record
    metrics = json.loads((out / "metrics.json").read_text())
    splits = metrics["splits"]
    assert {"visual_same_view", "visual_cross_view", "visual", "text", "visual_unanswerable",
            "text_unanswerable", "micro", "macro"} <= set(splits)
    # a constant 50% never abstains and never detects an unanswerable sample
    assert splits["micro"]["afrr"] == 0 and splits["visual_unanswerable"]["uda"] == 0
    assert splits["visual_same_view"]["share_at_50"] == 100
    config_json = json.loads((out / "config.json").read_text())
    assert config_json["backend"] == "constant" and config_json["mode"] == "two-stage"
    report = (out / "report.md").read_text()
    assert "constant-50%" in report and "random" in report  # floors beside the model


def test_resume_after_interrupt_loses_nothing_and_matches_a_clean_run(example, tmp_path):
    total = n_samples(example)
    cfg = config(example, tmp_path / "run", backend="constant")
    first = CountingConstant(BackendOptions(), "two-stage", die_after=7)
    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg, backend=first, progress=False)
    assert len((tmp_path / "run" / "results.jsonl").read_text().splitlines()) == 7
    second = CountingConstant(BackendOptions(), "two-stage")
    outcome = evaluate(cfg, backend=second, progress=False)
    assert second.asked == total - 7 and outcome.reused == 7
    clean = evaluate(config(example, tmp_path / "clean", backend="constant"), progress=False)
    assert outcome.metrics["splits"] == clean.metrics["splits"]
    # a third run has nothing left to do
    third = CountingConstant(BackendOptions(), "two-stage")
    evaluate(cfg, backend=third, progress=False)
    assert third.asked == 0


def test_malformed_and_cut_lines_are_skipped_and_redone(example, tmp_path, caplog):
    cfg = config(example, tmp_path / "run", backend="constant")
    evaluate(cfg, progress=False)
    path = tmp_path / "run" / "results.jsonl"
    lines = path.read_text().splitlines()
    # line 2 becomes garbage; the last line is cut in the middle as by a crash
    lines[1] = "{not json"
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])
    backend = CountingConstant(BackendOptions(), "two-stage")
    evaluate(cfg, backend=backend, progress=False)
    assert backend.asked == 2
    assert "unreadable result line" in caplog.text and ":2:" in caplog.text
    records, bad = ResultStore(path).read()
    assert len(bad) == 2 and len({r.key for r in records}) == n_samples(example)


def test_missing_images_are_all_listed_and_nothing_runs(example, tmp_path):
    import shutil

    images = tmp_path / "images"
    shutil.copytree(example.root / "images", images)
    victims = sorted(images.rglob("top_*_edit.jpg"))[:2]
    for victim in victims:
        victim.unlink()
    cfg = config(example, tmp_path / "run", backend="constant")
    cfg.image_root = str(images)
    backend = CountingConstant(BackendOptions(), "two-stage")
    backend.image_format = "data_url"
    with pytest.raises(EvalError) as err:
        evaluate(cfg, backend=backend, progress=False)
    assert "2 image files are missing" in str(err.value) and "--skip-missing" in str(err.value)
    listing = (tmp_path / "run" / "missing_images.txt").read_text()
    assert all(str(v) in listing for v in victims)
    assert backend.asked == 0
    cfg.skip_missing = True
    outcome = evaluate(cfg, backend=backend, progress=False)
    assert outcome.skipped_missing == 2 and backend.asked == n_samples(example) - 2


def test_each_image_file_is_read_once(example, tmp_path, monkeypatch):
    from progresslm import images as images_module

    reads = []
    original = images_module.ImageStore._encode
    monkeypatch.setattr(images_module.ImageStore, "_encode", lambda self, path, fmt: reads.append(path) or original(self, path, fmt))
    backend = ConstantBackend(BackendOptions(), "two-stage")
    backend.image_format = "data_url"
    evaluate(config(example, tmp_path / "run"), backend=backend, progress=False)
    assert len(reads) == len(set(reads)) > 0


def test_bad_inputs(example, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(EvalError, match="benchmark is empty"):
        evaluate(EvalConfig(bench=[str(empty)], out=str(tmp_path / "e")), progress=False)
    with pytest.raises(EvalError, match="valid modes"):
        EvalConfig(bench=[str(empty)], out="x", mode="cot")
    evaluate(config(example, tmp_path / "run", backend="constant"), progress=False)
    with pytest.raises(EvalError, match="another run"):
        evaluate(config(example, tmp_path / "run", backend="constant", options=BackendOptions(value=30)), progress=False)


def test_a_server_that_goes_down_keeps_earlier_results(example, tmp_path):
    from tests.backends.fake_openai_server import FakeServer

    server = FakeServer(down_after=5, fail_with="close").start()
    try:
        options = BackendOptions(model="m", base_url=server.base_url, max_retries=1, concurrency=1, timeout_s=5)
        cfg = config(example, tmp_path / "run", backend="openai", options=options)
        with pytest.raises(BackendError) as err:
            evaluate(cfg, progress=False)
    finally:
        server.stop()
    assert server.base_url + "/chat/completions" in str(err.value)
    records, _ = ResultStore(tmp_path / "run" / "results.jsonl").read()
    assert len(records) == 5 and all(r.reply == "42%" for r in records)


def test_unreachable_server_says_which_url(tmp_path, example):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = BackendOptions(model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, timeout_s=2)
    with pytest.raises(BackendError, match=f"127.0.0.1:{port}/v1/chat/completions failed 2 time"):
        evaluate(config(example, tmp_path / "run", backend="openai", options=options, limit=3), progress=False)


def test_unreadable_image_is_named(example, tmp_path):
    import shutil

    images = tmp_path / "images"
    shutil.copytree(example.root / "images", images)
    victim = sorted(images.rglob("top_*.jpg"))[3]
    victim.write_bytes(b"not a jpeg")
    cfg = config(example, tmp_path / "run", backend="pixel-nn")
    cfg.image_root = str(images)
    with pytest.raises(EvalError, match=str(victim)):
        evaluate(cfg, progress=False)


def test_pixel_nn_without_image_root_lists_missing_images(example, tmp_path):
    cfg = EvalConfig(bench=[str(example.files[0])], out=str(tmp_path / "run"), backend="pixel-nn")
    with pytest.raises(EvalError, match="image files are missing"):
        evaluate(cfg, progress=False)


def test_result_lines_with_wrong_types_are_skipped_not_fatal(example, tmp_path):
    cfg = config(example, tmp_path / "run", backend="constant")
    evaluate(cfg, progress=False)
    path = tmp_path / "run" / "results.jsonl"
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    first["draw"] = "zero"
    lines[0] = json.dumps(first)
    second = json.loads(lines[1])
    second["score"] = "abc"  # the stored parse is not trusted: the reply is parsed again
    lines[1] = json.dumps(second)
    path.write_text("\n".join(lines) + "\n")
    backend = CountingConstant(BackendOptions(), "two-stage")
    outcome = evaluate(cfg, backend=backend, progress=False)
    assert backend.asked == 1 and outcome.bad_lines == 1


def test_a_subset_rerun_does_not_call_full_results_stale(example, tmp_path, caplog):
    evaluate(config(example, tmp_path / "run", backend="constant"), progress=False)
    outcome = evaluate(config(example, tmp_path / "run", backend="constant", first=10), progress=False)
    assert outcome.done == 0 and outcome.reused == 10
    assert "another prompt" not in caplog.text


def test_several_replies_per_sample(example, tmp_path):
    cfg = config(example, tmp_path / "run", backend="random", num_samples=3, options=BackendOptions(seed=4))
    outcome = evaluate(cfg, progress=False)
    records, _ = ResultStore(tmp_path / "run" / "results.jsonl").read()
    assert len(records) == 3 * n_samples(example)
    assert {r.draw for r in records} == {0, 1, 2}
    assert outcome.metrics["draws"] == 3


def test_replay_scores_replies_made_elsewhere(example, tmp_path):
    original = evaluate(config(example, tmp_path / "a", backend="pixel-nn"), progress=False)
    replies = tmp_path / "replies.jsonl"
    records, _ = ResultStore(tmp_path / "a" / "results.jsonl").read()
    replies.write_text("".join(json.dumps({"uid": r.uid, "reply": r.reply}) + "\n" for r in records))
    replayed = evaluate(config(example, tmp_path / "b", backend="replay", options=BackendOptions(replies=str(replies))),
                        progress=False)
    assert replayed.metrics["splits"] == original.metrics["splits"]


def test_pixel_nn_answers_with_the_nearest_keyframe(example, tmp_path):
    from progresslm.bench.format import load_bench

    outcome = evaluate(config(example, tmp_path / "run", backend="pixel-nn"), progress=False)
    metrics = outcome.metrics["splits"]
    assert metrics["text"]["afrr"] == 100  # no keyframes to match: n/a by construction
    assert metrics["visual_same_view"]["afrr"] == 0
    samples = {s.uid: s for s in load_bench(example.files).samples}
    records, _ = ResultStore(tmp_path / "run" / "results.jsonl").read()
    for record in records:
        sample = samples[record.uid]
        if sample.modality.value == "visual":  # the score is the progress of the keyframe it names
            assert record.score == round(sample.demo.progress_at(record.ref - 1) * 100) / 100


def test_swap_demos_tells_a_demo_user_from_a_demo_ignorer(example, tmp_path):
    ignorer = evaluate(config(example, tmp_path / "c", backend="constant", swap_demos=True), progress=False)
    assert ignorer.metrics["demo_swap"]["all"]["changed"] == 0  # a constant ignores the demo
    user = evaluate(config(example, tmp_path / "p", backend="pixel-nn", swap_demos=True), progress=False)
    swap = user.metrics["demo_swap"]
    assert swap["visual_same_view"]["changed"] > 20  # nearest keyframe of another task's demo: answers move
    assert swap["text"]["changed"] == 0 and swap["text"]["na"] == 100  # pixel-nn says n/a to text either way
    n_answerable = sum(s["n"] for k, s in swap.items() if k != "all")
    assert swap["all"]["n"] == n_answerable
    records, _ = ResultStore(tmp_path / "p" / "results.jsonl").read()
    assert sum(r.uid.endswith("#swap") for r in records) == n_answerable
    assert "Demo swap" in (tmp_path / "p" / "report.md").read_text()
    # resume: nothing is asked again, swaps included
    again = CountingConstant(BackendOptions(), "two-stage")
    evaluate(config(example, tmp_path / "c", backend="constant", swap_demos=True), backend=again, progress=False)
    assert again.asked == 0


def test_limit_draws_whole_trajectories_from_every_split(example, tmp_path):
    from progresslm.bench.format import load_bench
    from progresslm.evaluation import stratified_subset

    samples = load_bench([str(p) for p in example.files]).samples
    picked = stratified_subset(samples, 30, seed=0)
    longest = max(sum(s.trajectory_id == t for s in samples) for t in {s.trajectory_id for s in samples})
    splits = {s.split for s in samples}
    assert 30 - len(splits) <= len(picked) <= 30 + len(splits) * longest  # each split may overshoot by a trajectory
    assert {s.split for s in picked} == {s.split for s in samples}  # every split keeps its place
    whole = {(s.split, s.trajectory_id) for s in picked}
    assert all(s in picked for s in samples if (s.split, s.trajectory_id) in whole)  # trajectories are never cut
    assert picked == stratified_subset(samples, 30, seed=0) and picked != stratified_subset(samples, 30, seed=1)
    outcome = evaluate(config(example, tmp_path / "run", backend="constant", limit=30), progress=False)
    assert outcome.done == len(picked)
    with pytest.raises(EvalError, match="--limit and --first are alternatives"):
        config(example, tmp_path / "other", limit=3, first=3)


def test_swap_demos_with_a_relative_image_root(example, tmp_path, monkeypatch):
    """A swapped demonstration's images resolve when --image-root is relative (they were joined twice)."""
    monkeypatch.chdir(example.root.parent)
    relative = config(example, tmp_path / "rel", backend="pixel-nn", swap_demos=True)
    relative = dataclasses.replace(relative, image_root=os.path.relpath(relative.image_root))
    assert not Path(relative.image_root).is_absolute()
    outcome = evaluate(relative, progress=False)
    assert outcome.metrics["demo_swap"]["visual_same_view"]["changed"] > 20


def test_eval_reads_a_quoted_glob_and_names_a_pattern_that_matches_nothing(example, tmp_path, capsys):
    """`--bench "OUT/bench/*.jsonl"` (quoted, as the Makefile passes it) reads every file it matches, as `train` does."""
    from progresslm.cli.main import main

    folder = example.files[0].parent
    out = tmp_path / "glob"
    assert main(["eval", "--backend", "constant", "--bench", str(folder / "*.jsonl"), "--image-root",
                 str(example.root / "images"), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert sorted(config["bench"]) == sorted(str(p) for p in folder.glob("*.jsonl")) and len(config["bench"]) >= 5
    assert main(["eval", "--backend", "constant", "--bench", str(folder / "nothing-*.jsonl"), "--out",
                 str(tmp_path / "none"), "--quiet"]) == 2  # fmt: skip
    assert "matches no file" in capsys.readouterr().err and not (tmp_path / "none").exists()
