"""Reports (Markdown and HTML tables over metrics.json) and plots (PNG files)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from PIL import Image

from progresslm.plots import plot_score_histograms, plot_trajectories
from progresslm.report_tables import (
    Run,
    compare_html,
    compare_markdown,
    diagnostics_markdown,
    load_run,
    render_report_html,
    render_report_markdown,
    table1_markdown,
    table2_markdown,
)
from progresslm.types import Demo, Modality, Prediction, Sample, Status, View


def _split(**values) -> dict:
    base = {key: None for key in ("nse", "prc", "prc_strict", "afrr", "uda", "uda_lenient", "ref_acc", "ref_error",
                                   "share_at_0", "share_at_50", "share_at_100")}
    base.update(n=10, n_value=10, n_na=0, n_parse_failure=0, prc_groups_used=0, prc_groups_skipped=0, ci={})
    base.update(values)
    return base


def _metrics() -> dict:
    return {
        "splits": {
            "visual_same_view": _split(nse=10.34, prc=93.46, prc_strict=90.0, afrr=0.1, prc_groups_used=12,
                                       prc_groups_skipped=3, share_at_50=4.0, ref_acc=71.25, ref_error=8.5,
                                       ci={"nse": [9.06, 11.94], "prc": [90.0, 96.1]}),
            "visual_cross_view": _split(nse=15.2, prc=None, prc_strict=0.0, afrr=11.7, n_na=2, n_parse_failure=1),
            "visual": _split(nse=13.8, prc=90.1, afrr=8.5),
            "text": _split(nse=21.2, prc=63.9, afrr=5.6),
            "visual_unanswerable": _split(n=30, uda=40.0, uda_lenient=50.0),
            "text_unanswerable": _split(n=10, uda=80.0, uda_lenient=90.0),
            "micro": _split(nse=16.0, prc=80.0, afrr=7.25),
            "macro": _split(nse=17.5, prc=77.0, afrr=7.0),
        },
        "collapse": {"visual": {"bins": [0.0, 0.5, 1.0], "counts": [3, 7]}},
        "demo_swap": {"same_demo": {"nse": 12.5, "n": 4}, "swapped_demo": {"nse": 40.0, "n": 4}},
    }


CONFIG = {"backend": "fake", "model": "tiny-vlm", "mode": "direct", "bench": ["a.jsonl", "b.jsonl"], "num_samples": 1}


@pytest.fixture
def run() -> Run:
    return Run(name="tiny-vlm (direct)", metrics=_metrics(), config=CONFIG)


@pytest.fixture
def floor() -> Run:
    metrics = {"splits": {"visual_same_view": _split(nse=33.3, prc=None, afrr=0.0),
                          "micro": _split(nse=31.0, afrr=0.0, prc=None)}}
    return Run(name="floor: constant 50%", metrics=metrics, config={})


def _cells(markdown: str, row_label: str) -> list[str]:
    """Cells of the first table row starting with `row_label`."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == row_label:
            return cells
    raise AssertionError(f"no row {row_label!r} in\n{markdown}")


def _header(markdown: str) -> list[str]:
    """Header cells of the first table in `markdown`."""
    line = next(line for line in markdown.splitlines() if line.startswith("|"))
    return [c.strip() for c in line.strip("|").split("|")]


def _column(markdown: str, row_label: str, header: str) -> str:
    return _cells(markdown, row_label)[_header(markdown).index(header)]


def test_table1_puts_numbers_in_their_columns(run, floor):
    text = table1_markdown([run, floor]).split("### Table 1b")[0]
    assert _header(text)[1:4] == ["Visual same-view NSE↓", "Visual same-view PRC↑", "Visual same-view AFRR↓"]
    assert _column(text, run.name, "Visual same-view NSE↓") == "10.3"
    assert _column(text, run.name, "Visual same-view PRC↑") == "93.5"
    assert _column(text, run.name, "Visual cross-view PRC↑") == "–"  # null
    assert _column(text, run.name, "Macro PRC↑") == "77.0"
    assert _column(text, run.name, "Micro AFRR↓") == "7.2"
    assert _column(text, floor.name, "Visual same-view NSE↓") == "33.3"
    assert _column(text, floor.name, "Text NSE↓") == "–"  # split absent from this run
    # Paper order of the column groups.
    groups = [h.rsplit(" ", 1)[0] for h in _header(text)[1::3]]
    assert groups == ["Visual same-view", "Visual cross-view", "Visual (all)", "Text", "Macro", "Micro"]


def test_table1_strict_block_reports_groups_used_and_skipped(run):
    strict = "### Table 1b" + table1_markdown([run]).split("### Table 1b")[1]
    assert _column(strict, run.name, "Visual same-view PRC-strict↑") == "90.0"
    assert _column(strict, run.name, "Visual same-view groups used / skipped") == "12 / 3"
    assert _column(strict, run.name, "Visual cross-view PRC↑") == "–"
    assert _column(strict, run.name, "Visual cross-view PRC-strict↑") == "0.0"


def test_table1_drops_split_groups_no_run_has():
    only_text = Run("r", {"splits": {"text": _split(nse=1.0)}})
    header = _header(table1_markdown([only_text]))
    assert header == ["Run", "Text NSE↓", "Text PRC↑", "Text AFRR↓"]


def test_table2_pools_unanswerable_splits_by_sample_count(run, floor):
    text = table2_markdown([run, floor])
    assert _column(text, run.name, "Visual unanswerable UDA↑") == "40.0"
    assert _column(text, run.name, "Text unanswerable UDA-lenient↑") == "90.0"
    assert _column(text, run.name, "All unanswerable UDA↑") == "50.0"  # (40*30 + 80*10) / 40
    assert _column(text, run.name, "All unanswerable UDA-lenient↑") == "60.0"  # (50*30 + 90*10) / 40
    assert _column(text, run.name, "Answerable (micro) AFRR↓") == "7.2"
    assert _column(text, floor.name, "All unanswerable UDA↑") == "–"
    assert _column(text, floor.name, "Answerable (micro) AFRR↓") == "0.0"


def test_diagnostics_show_counts_shares_and_confidence_intervals(run):
    text = diagnostics_markdown(run)
    assert _column(text, "Visual same-view", "NSE [95% CI]") == "10.3 [9.1, 11.9]"
    assert _column(text, "Visual same-view", "PRC [95% CI]") == "93.5 [90.0, 96.1]"
    assert _column(text, "Visual same-view", "ref acc↑") == "71.2"
    assert _column(text, "Visual same-view", "at 50 %") == "4.0"
    assert _column(text, "Visual cross-view", "N/A") == "2"
    assert _column(text, "Visual cross-view", "parse failures") == "1"
    assert _column(text, "Visual cross-view", "NSE [95% CI]") == "15.2"  # no interval given
    assert _column(text, "Visual unanswerable", "n") == "30"
    assert "Predicted-score histogram" in text and "| Visual (all) | 3 | 7 |" in text
    assert "Predicted score (%) 50–100" in text


def test_report_markdown_has_header_floors_demo_swap_and_plots(run, floor, tmp_path):
    text = render_report_markdown(run, floors=[floor], plots=[tmp_path / "scores.png"])
    assert text.startswith("# ProgressLM report: tiny-vlm (direct)")
    assert "| tiny-vlm (direct) | tiny-vlm | fake | direct | a.jsonl, b.jsonl | 1 |" in text
    for title in ("### Table 1:", "### Table 1b:", "### Table 2:", "## Diagnostics", "## Demo swap"):
        assert title in text
    assert text.count("| floor: constant 50% |") == 5  # Tables 1 and 1b (each split in two to fit 1,200 px) and 2
    assert "### Table 1: answerable samples (2/2)" in text and "### Table 1b: PRC-strict and PRC groups (1/2)" in text
    assert "| same_demo | 12.5 | 4 |" in text
    assert "![scores](scores.png)" in text
    assert "## Demo swap" not in render_report_markdown(Run("r", {"splits": {}}))


class _Checker(HTMLParser):
    """Records tags and fails on unbalanced ones (void elements aside)."""

    VOID = {"meta", "img", "br", "hr", "link"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.images: list[str] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>, open: {self.stack}"
        self.stack.pop()

    def handle_data(self, data):
        self.text += data


def _parse(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    return checker


def test_report_html_is_self_contained_and_escaped(run, floor, tmp_path):
    png = tmp_path / "plot.png"
    Image.new("RGB", (4, 4), "white").save(png)
    evil = Run("<script>alert(1)</script> & co", run.metrics, {**CONFIG, "model": "<script>x</script>"})
    page = render_report_html(evil, floors=[floor], plots=[png, tmp_path / "missing.png"])
    parsed = _parse(page)
    assert "script" not in parsed.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "<script>alert(1)</script> & co" in parsed.text
    assert parsed.tags.count("table") >= 5
    assert len(parsed.images) == 1 and parsed.images[0].startswith("data:image/png;base64,")
    assert "Plot not found" in page
    assert "http://" not in page and "https://" not in page
    assert "<td>10.3</td>" in page and 'colspan="3">Visual same-view</th>' in page


def test_compare_tables_list_every_run(run, floor):
    other = Run("other (two-stage)", run.metrics, {**CONFIG, "mode": "two-stage"})
    text = compare_markdown([run, other, floor])
    assert text.count("| other (two-stage) |") == 6  # runs table, Table 1, 1b (two parts), 2, demo swap
    assert "## other (two-stage): diagnostics and plots" in text  # each run's diagnostics
    page = compare_html([run, other])
    assert _parse(page).tags.count("table") > 6
    assert "other (two-stage)" in page


def test_wide_tables_are_split_between_column_groups():
    from progresslm.report_tables import Table, split_wide

    columns = [("", "Run")] + [(f"g{g}", f"m{m}") for g in range(6) for m in range(4)]  # 24 data columns
    table = Table(columns, [["r", *map(str, range(24))]], title="T")
    parts = split_wide(table, max_columns=13)
    assert [p.title for p in parts] == ["T (1/2)", "T (2/2)"]
    assert all(p.columns[0] == ("", "Run") and len(p.columns) - 1 <= 13 for p in parts)
    assert sum(len(p.columns) - 1 for p in parts) == 24
    assert {c[0] for c in parts[0].columns[1:]}.isdisjoint({c[0] for c in parts[1].columns[1:]})  # groups kept whole
    assert split_wide(Table(columns[:5], [["r", "1", "2", "3", "4"]])) == [Table(columns[:5], [["r", "1", "2", "3", "4"]])]


def test_a_comparison_warns_when_runs_differ_in_samples_or_benchmark(run):
    from progresslm.report_tables import comparison_warnings

    assert comparison_warnings([run, Run("same", run.metrics, run.config)]) == []
    fewer = json.loads(json.dumps(run.metrics))
    fewer["splits"]["visual_same_view"]["n"] = 3
    notes = comparison_warnings([run, Run("limited", fewer, {**run.config, "bench": ["c.jsonl"]})])
    assert any("different benchmark files" in n for n in notes) and any("different sample sets" in n for n in notes)


def test_load_run_reads_directory_and_names_missing_or_bad_file(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(_metrics()))
    with pytest.raises(FileNotFoundError, match=r"config\.json.*progresslm eval --out DIR"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json:1: malformed JSON"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    loaded = load_run(tmp_path)
    assert loaded.name == "tiny-vlm (direct)" and loaded.config == CONFIG
    assert loaded.metrics["splits"]["text"]["nse"] == 21.2
    (tmp_path / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"metrics\.json"):
        load_run(tmp_path)


# --------------------------------------------------------------------------------------------
# Plots


def _sample(uid: str, trajectory: str, progress: float | None, *, text: bool = False, view: View = View.SAME):
    demo = (Demo(Modality.TEXT, ("s1", "s2", "s3"), 3) if text
            else Demo(Modality.VISUAL, ("a.jpg", "b.jpg", "c.jpg"), 2))
    closest = None if progress is None else 2
    return Sample(uid, trajectory, "goal", demo, observation="o.jpg", progress=progress, closest_idx=closest, view=view)


@pytest.fixture
def predictions():
    samples, preds = [], []
    for t in range(14):  # more trajectories than one grid shows
        for i in range(3 + t % 3):
            samples.append(_sample(f"v{t}-{i}", f"traj{t}", i / 5, view=View.CROSS if t % 2 else View.SAME))
            preds.append(Prediction(Status.VALUE, score=min(1.0, i / 5 + 0.1)) if i % 4 else Prediction(Status.NA))
    samples += [_sample("t0", "text0", 0.5, text=True), _sample("u0", "u", None), _sample("u1", "u", None)]
    preds += [Prediction(Status.PARSE_FAILURE), Prediction(Status.NA), Prediction(Status.VALUE, score=0.5)]
    return samples, preds


def _assert_png(path):
    assert path.is_file() and path.stat().st_size > 5_000
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 200


def test_score_histograms_write_a_png(predictions, tmp_path):
    out = plot_score_histograms(*predictions, tmp_path / "plots" / "scores.png")
    assert out == tmp_path / "plots" / "scores.png"
    _assert_png(out)


def test_trajectory_plot_writes_a_png_and_handles_no_trajectories(predictions, tmp_path):
    _assert_png(plot_trajectories(*predictions, tmp_path / "traj.png"))
    samples, preds = predictions
    empty = plot_trajectories(samples[-2:], preds[-2:], tmp_path / "none.png")
    assert empty.is_file()
    with Image.open(empty) as image:
        assert image.format == "PNG"


def test_trajectory_picks_are_the_largest_groups_deterministically(predictions):
    from progresslm.plots import _pick_trajectories

    picked = _pick_trajectories(*predictions, 3)
    assert [key for key, _ in picked] == [("traj11", "visual_cross_view"), ("traj2", "visual_same_view"),
                                           ("traj5", "visual_cross_view")]
    assert [s.progress for s, _ in picked[0][1]] == sorted(s.progress for s, _ in picked[0][1])


def test_plots_reject_misaligned_inputs(predictions, tmp_path):
    samples, preds = predictions
    with pytest.raises(ValueError, match="aligned"):
        plot_score_histograms(samples, preds[:-1], tmp_path / "x.png")


def test_no_matplotlib_at_import_and_no_pyplot_after_plotting(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import progresslm.report_tables, progresslm.plots\n"
        "assert 'matplotlib' not in sys.modules\n"
        "from progresslm.plots import plot_score_histograms\n"
        f"plot_score_histograms([], [], {str(tmp_path / 'empty.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "empty.png").is_file()


def test_trajectory_panels_cover_every_task_before_repeating_one():
    from progresslm.plots import _pick_trajectories
    from progresslm.types import Demo, Modality, Prediction, Sample, Status

    demo = Demo(Modality.VISUAL, ("a", "b", "c"), 2)
    samples, preds = [], []
    for task, episodes in (("big-task", 6), ("small-task", 1), ("mid-task", 2)):
        for episode in range(episodes):
            for i in range(3 if task != "big-task" else 5):
                samples.append(Sample(f"{task}{episode}{i}", f"sim/{task}/ep{episode}", "g", demo, "o", i / 4, 1))
                preds.append(Prediction(Status.VALUE, 0.5, None))
    picked = _pick_trajectories(samples, preds, 4)
    tasks = [key[0].split("/")[1] for key, _ in picked]
    assert tasks[:3] == ["big-task", "mid-task", "small-task"] and tasks[3] == "big-task"


def test_eval_writes_a_gallery_of_the_best_and_worst_answers(tmp_path):
    from progresslm.bench.example import build_example
    from progresslm.evaluation import EvalConfig, evaluate

    example = build_example(tmp_path / "example")
    config = EvalConfig(bench=[str(f) for f in example.files], image_root=str(example.root / "images"),
                        out=str(tmp_path / "run"), backend="pixel-nn", bootstrap=0)  # fmt: skip
    evaluate(config, progress=False)
    page = (tmp_path / "run" / "gallery.html").read_text()
    splits = ("visual_same_view", "visual_cross_view", "text", "visual_unanswerable", "text_unanswerable")
    assert all(f"<h2>{split} (" in page for split in splits)
    assert page.count('class="card"') == 5 * 6 and page.count("· <b>true") == 30  # 3 best + 3 worst per split
    assert page.count("<img src=\"data:image/jpeg;base64,") > 30 and "image missing" not in page
    assert "<ref>" in page or "&lt;ref&gt;" in page  # the replies are shown


def test_the_summary_stars_only_runs_that_answer_at_least_half_of_the_samples(run):
    """A baseline that refuses nearly every sample has a low NSE on the few it answers and a high UDA; it is shown,
    but the star goes to the best run among those that answer (make demo starred such a retrieval row)."""
    import copy

    from progresslm.summary import plain_table, rows

    refuser = copy.deepcopy(run.metrics)
    refuser["splits"]["visual_same_view"].update(nse=5.8, prc=100.0, afrr=98.6)
    refuser["splits"]["micro"]["afrr"] = 98.6
    refuser["splits"]["visual_unanswerable"]["uda"] = 100.0
    refuser["splits"]["text_unanswerable"]["uda"] = 100.0
    answering = Run("answers", run.metrics, {**CONFIG, "backend": "matcher"})
    header, cells, best = rows([Run("refuses", refuser, {**CONFIG, "backend": "retrieval"}), answering])
    same_nse, uda = header.index("same NSE") - 1, header.index("UDA") - 1
    assert cells[0][same_nse + 1] == "5.8" and not best[0][same_nse] and best[1][same_nse]
    assert not best[0][uda] and best[1][uda]
    # a run answering enough still competes, whatever its AFRR is elsewhere
    refuser["splits"]["visual_same_view"]["afrr"] = 40.0
    header, cells, best = rows([Run("refuses", refuser, {**CONFIG, "backend": "retrieval"}), answering])
    assert best[0][same_nse] and not best[1][same_nse]
    assert "answer at least" in plain_table([answering])


def test_report_adds_a_table_per_simulator_family(tmp_path, capsys):
    """Issue 26 item 3: `progresslm report` over runs on a benchmark of two simulator families shows each run again on
    each family's samples; recomputed on all samples, a run's figures are eval's own."""
    from progresslm import by_family
    from progresslm.bench.example import build_example
    from progresslm.bench.format import load_bench
    from progresslm.cli.main import main
    from progresslm.evaluation import EvalConfig, evaluate

    example = build_example(tmp_path / "example")
    ids = sorted({json.loads(line)["id"] for f in example.files for line in f.read_text().splitlines()})
    for path in example.files:  # half the trajectories are Fetch's, the others Meta-World's (rows that name none)
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for row in rows:
            row["sim"] = {"family": "fetch"} if ids.index(row["id"]) % 2 else {}
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    folders = []
    for backend in ("pixel-nn", "constant"):
        out = tmp_path / backend
        evaluate(EvalConfig(bench=[str(f) for f in example.files], image_root=str(example.root / "images"),
                            out=str(out), backend=backend, bootstrap=0, swap_demos=backend == "pixel-nn"),
                 progress=False)  # fmt: skip
        folders.append(out)
    run = load_run(folders[0])
    whole = by_family.run_metrics(folders[0] / "results.jsonl",
                                  [s for f in by_family.by_family(load_bench(example.files).samples).values()
                                   for s in f])
    assert whole["splits"]["visual_same_view"]["nse"] == run.metrics["splits"]["visual_same_view"]["nse"]
    families = by_family.family_runs([run, load_run(folders[1])], folders)
    assert list(families) == ["metaworld", "fetch"] or list(families) == ["fetch", "metaworld"]
    from progresslm.report_tables import sample_count

    counts = [sample_count(runs[0]) for runs in families.values()]
    assert sum(counts) == sample_count(run) and min(counts) > 0
    assert all("demo_swap" in runs[0].metrics for runs in families.values())  # pixel-nn asked swapped demos
    md = tmp_path / "compare.md"
    assert main(["report", *map(str, folders), "--md", str(md)]) == 0
    printed = capsys.readouterr().out
    assert f"fetch: {counts[list(families).index('fetch')]} samples" in printed and "metaworld: " in printed
    text = md.read_text()
    assert "## Per simulator family" in text and "fetch: Table 1" in text and "metaworld: Table 2" in text
