"""Tables and reports over a run directory's `metrics.json` and `config.json`.

Pure string building: every report is first assembled as `Section`s of `Table`s, paragraphs and
plot paths, then rendered to Markdown (`report.md`) or to one self-contained HTML page
(`report.html`: inline CSS, plots as base64 PNG, no scripts, no external resources). Metric
values are percents as `metrics.json` stores them; `null` (undefined) shows as "–".
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DASH = "–"

# Display names of the splits `metrics.json` may hold, in report order.
SPLIT_NAMES = {
    "visual_same_view": "Visual same-view",
    "visual_cross_view": "Visual cross-view",
    "visual": "Visual (all)",
    "text": "Text",
    "visual_unanswerable": "Visual unanswerable",
    "text_unanswerable": "Text unanswerable",
    "micro": "Micro",
    "macro": "Macro",
}
# Table 1 column groups, as the paper orders them.
TABLE1_GROUPS = ("visual_same_view", "visual_cross_view", "visual", "text", "macro", "micro")
TABLE1_METRICS = (("NSE↓", "nse"), ("PRC↑", "prc"), ("AFRR↓", "afrr"))
UNANSWERABLE = ("visual_unanswerable", "text_unanswerable")


@dataclass
class Run:
    """One evaluated run: a row label, its `metrics.json` and its `config.json`."""

    name: str
    metrics: dict
    config: dict = field(default_factory=dict)

    def split(self, name: str) -> dict:
        return self.metrics.get("splits", {}).get(name) or {}


NUMERIC_FIELDS = ("n", "nse", "prc", "prc_strict", "afrr", "uda", "uda_lenient", "ref_acc", "ref_error")


def load_run(directory: str | Path, name: str | None = None) -> Run:
    """Read a run directory written by `progresslm eval --out DIR`.

    The label defaults to "model (mode)" from the config, else the directory name.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory; `progresslm eval --out DIR` creates run directories")
    loaded = {}
    for file_name in ("metrics.json", "config.json"):
        path = directory / file_name
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: a run directory needs {file_name}, which `progresslm eval --out DIR` writes"
            )
        try:
            loaded[file_name] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}:{error.lineno}: malformed JSON ({error.msg}); rerun `progresslm eval --out DIR` to rewrite it"
            ) from error
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text (byte {error.start}); rerun `progresslm eval --out DIR`") from None
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply; rerun `progresslm eval --out DIR`") from None
        if not isinstance(loaded[file_name], dict):
            raise ValueError(f"{path}: expected a JSON object; rerun `progresslm eval --out DIR` to rewrite it")
    metrics, config = loaded["metrics.json"], loaded["config.json"]
    if not isinstance(metrics.get("splits"), dict):
        raise ValueError(f"{directory / 'metrics.json'}: no \"splits\" object; was it written by `progresslm eval`?")
    for split, row in metrics["splits"].items():
        bad = None if isinstance(row, dict) else "is not an object"
        if bad is None:
            bad = next((f"{key} is {value!r}, not a number" for key, value in row.items()
                        if key in NUMERIC_FIELDS and value is not None
                        and (isinstance(value, bool) or not isinstance(value, (int, float)))), None)  # fmt: skip
        if bad:
            raise ValueError(f"{directory / 'metrics.json'}: splits.{split} {bad}; rerun `progresslm eval --out DIR`")
    if name is None:
        model = config.get("model")
        name = f"{model} ({config['mode']})" if model and config.get("mode") else (model or directory.name)
    return Run(name=name, metrics=metrics, config=config)


# --------------------------------------------------------------------------------------------
# Cell formatting


def fmt(value) -> str:
    """A percent with one decimal; "–" when undefined.

    >>> fmt(12.345), fmt(None), fmt(float("nan")), fmt(0)
    ('12.3', '–', '–', '0.0')
    """
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return DASH
    return f"{value:.1f}"


def _count(value) -> str:
    return str(int(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else DASH


def _with_ci(value, ci) -> str:
    """ "12.3 [10.1, 14.8]", or the bare value when the interval is unknown."""
    text = fmt(value)
    if text == DASH or not isinstance(ci, (list, tuple)) or len(ci) != 2 or DASH in (fmt(ci[0]), fmt(ci[1])):
        return text
    return f"{text} [{fmt(ci[0])}, {fmt(ci[1])}]"


def _generic(value) -> str:
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else DASH
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# --------------------------------------------------------------------------------------------
# Document model


@dataclass
class Table:
    """`columns` are (group, label) pairs; group "" for columns outside any group (row labels)."""

    columns: list[tuple[str, str]]
    rows: list[list[str]]
    title: str = ""
    note: str = ""
    numeric: bool = True  # right-align the cells after the first


@dataclass
class Section:
    """A heading followed by blocks: a `Table`, a paragraph (`str`) or a plot (`Path`)."""

    heading: str
    blocks: list[Table | str | Path] = field(default_factory=list)


def _present(runs: list[Run], names) -> list[str]:
    return [name for name in names if any(run.split(name) for run in runs)]


def table1(runs: list[Run]) -> Table:
    """Paper Table 1 (answerable samples): NSE / PRC / AFRR per split group."""
    groups = _present(runs, TABLE1_GROUPS)
    columns = [("", "Run")] + [(SPLIT_NAMES[g], label) for g in groups for label, _ in TABLE1_METRICS]
    rows = [[run.name] + [fmt(run.split(g).get(key)) for g in groups for _, key in TABLE1_METRICS] for run in runs]
    return Table(columns, rows, title="Table 1: answerable samples")


def table1_strict(runs: list[Run]) -> Table:
    """PRC beside PRC-strict and the PRC groups used / skipped, per split group."""
    groups = _present(runs, TABLE1_GROUPS)
    labels = ("PRC↑", "PRC-strict↑", "groups used / skipped")
    columns = [("", "Run")] + [(SPLIT_NAMES[g], label) for g in groups for label in labels]
    rows = []
    for run in runs:
        row = [run.name]
        for g in groups:
            s = run.split(g)
            used, skipped = _count(s.get("prc_groups_used")), _count(s.get("prc_groups_skipped"))
            row += [fmt(s.get("prc")), fmt(s.get("prc_strict")), f"{used} / {skipped}"]
        rows.append(row)
    note = (
        "The official PRC skips trajectories whose predictions are missing or constant, which flatters "
        "abstaining or collapsed models; PRC-strict counts such a trajectory (at least 2 samples, labels not "
        "all equal) as 0."
    )
    return Table(columns, rows, title="Table 1b: PRC-strict and PRC groups", note=note)


def pooled_unanswerable(run: Run, key: str) -> float | None:
    """UDA pooled over the unanswerable splits, weighting each by its sample count."""
    total = weight = 0.0
    for name in UNANSWERABLE:
        s = run.split(name)
        value, n = s.get(key), s.get("n") or 0
        if fmt(value) != DASH and n:
            total, weight = total + value * n, weight + n
    return total / weight if weight else None


def table2(runs: list[Run]) -> Table:
    """Paper Table 2: unanswerable detection beside false rejections of answerable samples."""
    columns = [("", "Run")]
    for name in _present(runs, UNANSWERABLE):
        columns += [(SPLIT_NAMES[name], "UDA↑"), (SPLIT_NAMES[name], "UDA-lenient↑")]
    everything = "All unanswerable"
    columns += [(everything, "UDA↑"), (everything, "UDA-lenient↑"), ("Answerable (micro)", "AFRR↓")]
    rows = []
    for run in runs:
        row = [run.name]
        for name in _present(runs, UNANSWERABLE):
            row += [fmt(run.split(name).get("uda")), fmt(run.split(name).get("uda_lenient"))]
        row += [fmt(pooled_unanswerable(run, "uda")), fmt(pooled_unanswerable(run, "uda_lenient")), fmt(run.split("micro").get("afrr"))]
        rows.append(row)
    note = (
        "UDA counts explicit N/A replies on unanswerable samples (lenient: parse failures too); AFRR counts "
        "answerable samples left without a value. A good model rejects wrong demos without rejecting good ones."
    )
    if not _present(runs, UNANSWERABLE):
        note += " This benchmark has no unanswerable samples."
    return Table(columns, rows, title="Table 2: unanswerable detection", note=note)


def _split_order(run: Run) -> list[str]:
    names = list(run.metrics.get("splits", {}))
    return [n for n in SPLIT_NAMES if n in names] + sorted(n for n in names if n not in SPLIT_NAMES)


def diagnostics(run: Run) -> list[Table]:
    """Per-split counts, score-collapse shares, anchor accuracy and bootstrap CIs; score histograms."""
    columns = [("", c) for c in ("Split", "n", "values", "N/A", "parse failures", "at 0 %", "at 50 %", "at 100 %",
                                 "ref acc↑", "ref error↓", "NSE [95% CI]", "PRC [95% CI]")]
    rows = []
    for name in _split_order(run):
        s, ci = run.split(name), run.split(name).get("ci") or {}
        rows.append([SPLIT_NAMES.get(name, name), _count(s.get("n")), _count(s.get("n_value")), _count(s.get("n_na")),
                     _count(s.get("n_parse_failure")), fmt(s.get("share_at_0")), fmt(s.get("share_at_50")),
                     fmt(s.get("share_at_100")), fmt(s.get("ref_acc")), fmt(s.get("ref_error")),
                     _with_ci(s.get("nse"), ci.get("nse")), _with_ci(s.get("prc"), ci.get("prc"))])
    tables = [Table(columns, rows, title=f"Diagnostics: {run.name}",
                    note="at 0 / 50 / 100 %: share of predicted scores exactly there (score collapse). "
                         "CIs are bootstrap 95 % intervals.")]
    collapse = run.metrics.get("collapse") or {}
    if collapse:
        edges = next(iter(collapse.values())).get("bins") or []
        scale = 100 if edges and max(edges) <= 1 else 1  # edges may be fractions or percents
        bins = [f"{scale * lo:g}–{scale * hi:g}" for lo, hi in zip(edges, edges[1:])]
        rows = [[SPLIT_NAMES.get(name, name)] + [_count(c) for c in hist.get("counts", [])]
                for name, hist in collapse.items()]
        tables.append(Table([("", "Split")] + [("Predicted score (%)", b) for b in bins], rows,
                            title="Predicted-score histogram (score collapse)"))
    return tables


def generic_table(value, title: str = "") -> Table | str:
    """Render any JSON object: a dict of dicts as a grid, a flat dict as key / value, else as JSON."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        keys = list(dict.fromkeys(k for inner in value.values() for k in inner))
        rows = [[str(name)] + [_generic(inner.get(k)) for k in keys] for name, inner in value.items()]
        return Table([("", "")] + [("", str(k)) for k in keys], rows, title=title)
    if isinstance(value, dict):
        rows = [[str(k), _generic(v)] for k, v in value.items()]
        return Table([("", "Key"), ("", "Value")], rows, title=title, numeric=False)
    return _generic(value)


def _config_value(value) -> str:
    """Lists joined; a list of files in one folder shown as `folder/{a, b, c}`, which stays readable."""
    if not isinstance(value, list):
        return _generic(value)
    parents = {str(Path(str(v)).parent) for v in value}
    if len(value) > 1 and len(parents) == 1 and parents != {"."}:
        return f"{parents.pop()}/{{{', '.join(Path(str(v)).name for v in value)}}}"
    return ", ".join(map(str, value))


def _config_table(runs: list[Run]) -> Table:
    keys = ("model", "backend", "mode", "bench", "num_samples")
    rows = [[run.name] + [_config_value(run.config.get(k)) for k in keys] for run in runs]
    return Table([("", "Run")] + [("", k) for k in keys], rows, numeric=False)


# --------------------------------------------------------------------------------------------
# Reports


def _report_sections(run: Run, floors: list[Run], plots: list[str | Path]) -> list[Section]:
    rows = [run, *floors]
    results_note = "Percents. NSE, AFRR: lower is better; PRC, UDA: higher is better; – = undefined."
    if floors:
        results_note += (f" Rows after {run.name} are shortcut floors computed on the same samples; "
                         "a model that does not beat them has learned nothing about progress.")
    sections = [
        Section("Run", [_config_table([run])]),
        Section("Results", [results_note, table1(rows), table1_strict(rows), table2(rows)]),
        Section("Diagnostics", list(diagnostics(run))),
    ]
    if "demo_swap" in run.metrics:
        sections.append(Section("Demo swap", [
            "Each answerable observation asked again with the demonstration and goal of another task "
            "(`--swap-demos`). `changed`: share of answers that became N/A or moved by 5 points or more; "
            "`na`: share of N/A answers. A model that compares the observation with the demonstration "
            "changes nearly every answer; one that ignores the demonstration changes none.",
            generic_table(run.metrics["demo_swap"]),
        ]))
    if plots:
        sections.append(Section("Plots", ["The best and worst answers of each split, with the demonstration, the "
                                          "observation and the reply: gallery.html beside this report.",
                                          *[Path(p) for p in plots]]))  # fmt: skip
    return sections


def sample_count(run: Run) -> int:
    """Samples the run scored: the per-split counts, without the pooled rows (micro, macro, visual)."""
    return int(sum((s or {}).get("n") or 0 for name, s in (run.metrics.get("splits") or {}).items()
                   if name in SPLIT_NAMES and name not in ("micro", "macro", "visual")))  # fmt: skip


def bench_key(config: dict) -> tuple[str, ...]:
    """The benchmark files a run's config names, resolved and sorted: equal keys, same benchmark, however the
    paths were typed."""
    return tuple(sorted(str(Path(p).resolve()) for p in config.get("bench") or []))


def comparison_warnings(runs: Sequence[Run]) -> list[str]:
    """Why runs side by side may not be comparable: another benchmark, or another number of samples per split
    (a `--limit` run beside a full one)."""
    notes = []
    benches = {bench_key(run.config) for run in runs}
    if len(benches) > 1:
        notes.append("The runs were made on different benchmark files (see Runs): their figures do not compare.")
    counts = {run.name: {k: (s or {}).get("n") for k, s in (run.metrics.get("splits") or {}).items()} for run in runs}
    if len({json.dumps(c, sort_keys=True) for c in counts.values()}) > 1:
        shown = ", ".join(f"{name}: {sample_count(run)}" for name, run in zip(counts, runs))
        notes.append(f"The runs scored different sample sets ({shown} samples): compare them only on the same samples "
                     "(`--limit` draws a stratified subset; use the same value for every run).")
    return notes


def _swap_table(runs: list[Run]) -> Table | None:
    swapped = [run for run in runs if (run.metrics.get("demo_swap") or {}).get("all")]
    if not swapped:
        return None
    keys = ("n", "changed", "na", "mean_abs_shift")
    rows = [[run.name] + [_generic(run.metrics["demo_swap"]["all"].get(k)) for k in keys] for run in swapped]
    return Table([("", "Run")] + [("Demo swap", k) for k in keys], rows, title="Demonstration swap")


def paired_table(pairs: Sequence, reference: str) -> Table:
    """`paired.like_for_like`'s pairs: NSE of the reference and of each other run on the samples both answered."""
    rows = []
    for pair in pairs:
        ci = f"[{pair.ci[0]:+.1f}, {pair.ci[1]:+.1f}]" if pair.ci else DASH
        rows.append([pair.other, SPLIT_NAMES.get(pair.split, pair.split), f"{pair.n_both} / {pair.n_split}",
                     fmt(pair.nse_reference), fmt(pair.nse_other), f"{pair.nse_other - pair.nse_reference:+.1f}", ci])
    columns = [("", "Run"), ("", "Split"), ("", "both answered"), ("NSE↓", reference), ("NSE↓", "run"),
               ("", "run - reference"), ("", "95 % interval")]
    return Table(columns, rows, title=f"Like for like: NSE on the samples both answered (reference: {reference})")


def _compare_sections(runs: list[Run], plots: dict[str, list[Path]] | None = None,
                      pairs: Sequence | None = None, families: dict[str, list[Run]] | None = None) -> list[Section]:
    config = _config_table(runs)
    config.columns.append(("", "samples"))
    for row, run in zip(config.rows, runs):
        row.append(str(sample_count(run)))
    sections = [Section("Runs", [*comparison_warnings(runs), config])]
    sections.append(Section("Results", ["Percents. NSE, AFRR: lower is better; PRC, UDA: higher is better; – = undefined.",
                                        table1(runs), table1_strict(runs), table2(runs)]))  # fmt: skip
    if families:
        blocks: list = ["The same runs on each simulator family's samples (a family's rows name it in their `sim` "
                        "record; Meta-World's name none). A model trained in one world may hold there only."]
        for family, family_runs in families.items():
            blocks += [_titled(table1(family_runs), f"{family}: Table 1"), _titled(table2(family_runs), f"{family}: Table 2")]
        swap = {family: _swap_table(family_runs) for family, family_runs in families.items()}
        blocks += [_titled(table, f"{family}: demo swap") for family, table in swap.items() if table is not None]
        sections.append(Section("Per simulator family", blocks))
    if pairs:
        sections.append(Section("Like for like", [
            "A run that answers N/A on hard samples shows a low NSE on the easy ones it keeps. Here each run is "
            "compared with the first on the answerable samples both answered with a value; a negative difference "
            "means the run is closer to the labels than the reference on the same samples (interval: trajectories "
            "resampled).", paired_table(pairs, runs[0].name)]))
    swap = _swap_table(runs)
    if swap is not None:
        sections.append(Section("Demo swap", [
            "Each answerable observation asked again with another task's demonstration and goal: `changed` is the "
            "share of answers that became N/A or moved by 5 points or more. A model that reads the demonstration "
            "changes nearly all of them.", swap]))
    for run in runs:
        blocks: list = list(diagnostics(run))
        blocks += (plots or {}).get(run.name, [])
        sections.append(Section(f"{run.name}: diagnostics and plots", blocks))
    return sections


def _titled(table: Table, title: str) -> Table:
    table.title = title
    return table


def _title(run: Run) -> str:
    return f"ProgressLM report: {run.name}"


def table1_markdown(runs: list[Run]) -> str:
    """Table 1 (NSE / PRC / AFRR per split) followed by the PRC-strict table, as Markdown."""
    return _table_md(table1(runs)) + "\n" + _table_md(table1_strict(runs))


def table2_markdown(runs: list[Run]) -> str:
    """Table 2 (UDA, UDA-lenient, AFRR) as Markdown."""
    return _table_md(table2(runs))


def diagnostics_markdown(run: Run) -> str:
    """Per-split diagnostics of one run as Markdown."""
    return "\n".join(_table_md(t) for t in diagnostics(run))


def render_report_markdown(run: Run, floors: Sequence[Run] = (), plots: Sequence[str | Path] = (),
                           relative_to: str | Path | None = None) -> str:
    """A full report.md for one run, with the shortcut `floors` as extra table rows.

    Plot links are relative to `relative_to` when given, else the bare file name (report.md sits
    beside its plots in the run directory).
    """
    return render_markdown(_title(run), _report_sections(run, list(floors), list(plots)), relative_to)


def render_report_html(run: Run, floors: Sequence[Run] = (), plots: Sequence[str | Path] = ()) -> str:
    """The same report as one self-contained HTML page, plots embedded as base64 PNG."""
    return render_html(_title(run), _report_sections(run, list(floors), list(plots)))


def compare_markdown(runs: Sequence[Run], plots: dict[str, list[Path]] | None = None,
                     relative_to: str | Path | None = None, pairs: Sequence | None = None,
                     families: dict[str, list[Run]] | None = None) -> str:
    """Several runs side by side: their configs and sample counts (with a warning when they differ), Table 1,
    PRC-strict, Table 2, the like-for-like table (`pairs` from `paired.like_for_like`), the demonstration swap,
    and each run's diagnostics and plots (`plots`: run name -> PNGs); with `families` (`by_family.family_runs`),
    Table 1, Table 2 and the demo swap per simulator family."""
    return render_markdown("ProgressLM comparison", _compare_sections(list(runs), plots, pairs, families), relative_to)


def compare_html(runs: Sequence[Run], plots: dict[str, list[Path]] | None = None, pairs: Sequence | None = None,
                 families: dict[str, list[Run]] | None = None) -> str:
    """`compare_markdown` as a self-contained HTML page."""
    return render_html("ProgressLM comparison", _compare_sections(list(runs), plots, pairs, families))


# --------------------------------------------------------------------------------------------
# Renderers


MAX_COLUMNS = 13  # data columns per table: wider tables are split by column group (they fit 1,200 px)


def split_wide(table: Table, max_columns: int = MAX_COLUMNS) -> list[Table]:
    """`table` as several tables of at most `max_columns` data columns, cut between column groups (never inside
    one), each repeating the first (label) column; the title gets "(1/2)", "(2/2)"."""
    data = list(range(1, len(table.columns)))
    if len(data) <= max_columns:
        return [table]
    chunks: list[list[int]] = [[]]
    i = 0
    while i < len(data):
        group = table.columns[data[i]][0]
        span = [data[i]]
        while group and i + len(span) < len(data) and table.columns[data[i + len(span)]][0] == group:
            span.append(data[i + len(span)])
        if chunks[-1] and len(chunks[-1]) + len(span) > max_columns:
            chunks.append([])
        chunks[-1].extend(span)
        i += len(span)
    parts = []
    for n, chunk in enumerate(chunks, 1):
        keep = [0, *chunk]
        title = f"{table.title} ({n}/{len(chunks)})" if table.title else ""
        parts.append(Table([table.columns[j] for j in keep], [[row[j] for j in keep] for row in table.rows], title,
                           table.note if n == len(chunks) else "", table.numeric))  # fmt: skip
    return parts


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table_md(table: Table) -> str:
    header = [" ".join(part for part in column if part) for column in table.columns]
    lines = [f"### {table.title}", ""] if table.title else []
    lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
    lines.append("|" + "|".join("---:" if i and table.numeric else "---" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def render_markdown(title: str, sections: list[Section], relative_to: str | Path | None = None) -> str:
    """Render sections as Markdown; see `render_report_markdown` for plot links."""
    out = [f"# {title}", ""]
    for section in sections:
        out += [f"## {section.heading}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out += [_table_md(part) for part in split_wide(block)]
            elif isinstance(block, Path):
                link = Path(block).name if relative_to is None else _relative(block, Path(relative_to))
                out += [f"![{block.stem}]({link})", ""]
            else:
                out += [block, ""]
    return "\n".join(out).rstrip() + "\n"


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td:first-child, table.text td { text-align: left; }
th { background: #f3f3f3; }
p.note { color: #555; font-size: 0.85em; max-width: 60em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
"""


def _table_html(table: Table) -> str:
    e = html.escape
    grouped = any(group for group, _ in table.columns)
    out = [f"<h3>{e(table.title)}</h3>"] if table.title else []
    out.append("<table>\n<thead>" if table.numeric else '<table class="text">\n<thead>')
    if grouped:
        top, i = [], 0
        while i < len(table.columns):
            group, label = table.columns[i]
            span = 1
            while i + span < len(table.columns) and group and table.columns[i + span][0] == group:
                span += 1
            top.append(f'<th rowspan="2">{e(label)}</th>' if not group else f'<th colspan="{span}">{e(group)}</th>')
            i += span
        out.append("<tr>" + "".join(top) + "</tr>")
        out.append("<tr>" + "".join(f"<th>{e(label)}</th>" for group, label in table.columns if group) + "</tr>")
    else:
        out.append("<tr>" + "".join(f"<th>{e(label)}</th>" for _, label in table.columns) + "</tr>")
    out.append("</thead>\n<tbody>")
    out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in table.rows]
    out.append("</tbody>\n</table>")
    if table.note:
        out.append(f'<p class="note">{e(table.note)}</p>')
    return "\n".join(out)


def _image_html(path: Path) -> str:
    if not path.is_file():
        return f'<p class="note">Plot not found: {html.escape(str(path))}</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


def render_html(title: str, sections: list[Section]) -> str:
    """Render sections as one self-contained HTML page (inline CSS, no scripts or external resources)."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.heading)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                body += [_table_html(part) for part in split_wide(block)]
            elif isinstance(block, Path):
                body.append(_image_html(block))
            else:
                body.append(f"<p>{html.escape(block)}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
