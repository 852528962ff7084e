"""Like-for-like comparison: runs that abstain differently, compared on the samples both answered."""

from __future__ import annotations

import json

import pytest
from helpers import BENCH_FILES, fixture

from progresslm.bench.format import load_bench
from progresslm.cli.main import main
from progresslm.paired import Answers, Labels, compare, like_for_like
from progresslm.report_tables import load_run


def test_compare_scores_both_runs_on_the_shared_answers_only():
    labels = Labels({"a": ("visual_same_view", 0.2, "t1"), "b": ("visual_same_view", 0.5, "t1"),
                     "c": ("visual_same_view", 0.8, "t2"), "d": ("visual_same_view", 1.0, "t2"),
                     "e": ("text", 0.5, "t3")})  # fmt: skip
    reference = Answers("ref", {"a": 0.2, "b": 0.9, "c": 0.4, "d": 1.0, "e": 0.5})
    other = Answers("other", {"a": 0.6, "c": 0.8})  # N/A on b, d and the text sample
    [pair] = compare(reference, other, labels)
    assert (pair.split, pair.n_both, pair.n_reference, pair.n_split) == ("visual_same_view", 2, 4, 4)
    # reference: a 0 / 0.8 = 0, c 0.4 / 0.8 = 0.5 -> 25 %; other: a 0.4 / 0.8 = 0.5, c 0 -> 25 %
    assert pair.nse_reference == pytest.approx(25.0) and pair.nse_other == pytest.approx(25.0)
    assert pair.other_refused_share == pytest.approx(0.5)
    assert pair.ci is not None and pair.ci[0] <= 0.0 <= pair.ci[1]


def _replies(path, scores: dict[str, str]):
    path.write_text("".join(json.dumps({"uid": uid, "reply": text}) + "\n"
                            for uid, text in scores.items()))  # fmt: skip
    return path


def test_report_prints_and_writes_the_like_for_like_comparison(tmp_path, capsys):
    files = [str(fixture(name)) for name in BENCH_FILES]
    samples = load_bench(files).samples
    answerable = [s for s in samples if s.answerable and s.split == "visual_same_view"]
    exact = {s.uid: f"{100 * s.progress:.4f}%" for s in answerable}
    # the "refuser" answers only the first two same-view samples (exactly) and N/A elsewhere
    refuser = {s.uid: "N/A" for s in samples} | {s.uid: exact[s.uid] for s in answerable[:2]}
    guesser = {s.uid: "50%" for s in samples}
    runs = []
    for name, replies in (("guesser", guesser), ("refuser", refuser)):
        out = tmp_path / name
        code = main(["eval", "--bench", *files, "--backend", "replay", "--replies",
                     str(_replies(tmp_path / f"{name}.jsonl", replies)), "--mode", "direct", "--out", str(out),
                     "--quiet", "--bootstrap", "20", "--no-floors"])  # fmt: skip
        assert code == 0
        runs.append(out)
    capsys.readouterr()
    html, md = tmp_path / "cmp.html", tmp_path / "cmp.md"
    assert main(["report", *map(str, runs), "--html", str(html), "--md", str(md)]) == 0
    out = capsys.readouterr().out
    assert "like for like" in out
    line = next(line for line in out.splitlines() if "same-view" in line and "replay" in line)
    assert f"(2 of {len(answerable)} samples;" in line
    markdown = (tmp_path / "cmp.md").read_text()
    assert "Like for like" in markdown and "Like for like" in (tmp_path / "cmp.html").read_text()
    pairs = like_for_like(runs, [load_run(folder) for folder in runs])
    [same] = [p for p in pairs if p.split == "visual_same_view"]
    assert same.nse_other == pytest.approx(0.0, abs=1e-3) and same.n_both == 2
    # without the benchmark files there is no like-for-like table, and report still works
    config = json.loads((runs[0] / "config.json").read_text())
    config["bench"] = [str(tmp_path / "gone.jsonl")]
    (runs[0] / "config.json").write_text(json.dumps(config))
    assert like_for_like(runs, [load_run(folder) for folder in runs]) is None
    assert main(["report", *map(str, runs)]) == 0


def test_samples_one_run_was_never_asked_do_not_count():
    """A `--limit` run beside a full one: the split's size is what both were asked."""
    labels = Labels({uid: ("visual_same_view", 0.5, f"t{k}") for k, uid in enumerate("abcd")})
    full = Answers("full", dict.fromkeys("abcd", 0.5), frozenset("abcd"))
    limited = Answers("limited", {"a": 0.5}, frozenset("ab"))  # b answered N/A, c and d never asked
    [pair] = compare(full, limited, labels)
    assert (pair.n_both, pair.n_reference, pair.n_split) == (1, 2, 2)


def test_same_bench_ignores_how_the_paths_were_typed(tmp_path, monkeypatch):
    from progresslm.paired import same_bench

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jsonl").write_text("")
    (tmp_path / "b.jsonl").write_text("")
    assert same_bench({"bench": ["a.jsonl", str(tmp_path / "b.jsonl")]}, {"bench": [str(tmp_path / "b.jsonl"), "./a.jsonl"]})
    assert not same_bench({"bench": ["a.jsonl"]}, {"bench": ["b.jsonl"]})


def test_answers_are_parsed_again_from_the_replies(tmp_path):
    """A hand-edited or stale `score` field cannot disagree with the reply (the metrics parse replies again too)."""
    from progresslm.paired import load_answers

    records = [{"uid": "u0", "draw": 0, "mode": "direct", "reply": "40%", "status": "value", "score": "x"},
               {"uid": "u1", "draw": 0, "mode": "direct", "reply": "40%", "status": "value", "score": 0.9},
               {"uid": "u2", "draw": 0, "mode": "direct", "reply": "n/a", "status": "value", "score": 0.3},
               {"uid": "u3", "draw": 1, "mode": "direct", "reply": "10%", "status": "value", "score": 0.1}]  # fmt: skip
    base = {"backend": "b", "model": "m", "prompt_hash": "h", "ref_status": None, "ref": None, "latency_s": 0.0}
    lines = [json.dumps({**base, **r}) + "\n" for r in records]
    (tmp_path / "results.jsonl").write_text("".join(lines))
    answers = load_answers(tmp_path, "run")
    assert answers.scores == {"u0": pytest.approx(0.4), "u1": pytest.approx(0.4)}
    assert answers.asked == frozenset({"u0", "u1", "u2"})
