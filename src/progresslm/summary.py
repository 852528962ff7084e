"""What `progresslm eval`, `progresslm report` and `make demo` print: one compact table, one row per run, that
fits a 100-column terminal. The full tables (intervals, anchors, diagnostics, plots) stay in report.md and
report.html.

Columns: same-view, cross-view and text NSE / PRC, UDA, AFRR, the share of answers a swapped demonstration
changed, and the number of samples. Floors (constant 50 %, random) are marked; the best model value of each
column is bold in a terminal (rich) and starred in plain text. A run competes for a split's NSE/PRC star only if it
answered at least half of that split's answerable samples (its AFRR there is <= 50), and for the UDA star only if
it answered at least half of all answerable samples: a baseline that refuses nearly everything has a fine NSE on
the few samples it answers and a fine UDA, and is still not the best model.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from progresslm.report_tables import Run, pooled_unanswerable, sample_count
from progresslm.types import is_number

FLOOR_BACKENDS = ("constant", "random", "constant-50%")
COLUMNS = (  # (header, getter key, lower is better)
    ("same NSE", ("visual_same_view", "nse"), True),
    ("PRC", ("visual_same_view", "prc"), False),
    ("cross NSE", ("visual_cross_view", "nse"), True),
    ("PRC", ("visual_cross_view", "prc"), False),
    ("text NSE", ("text", "nse"), True),
    ("PRC", ("text", "prc"), False),
    ("UDA", ("unanswerable", "uda"), False),
    ("AFRR", ("micro", "afrr"), True),
    ("swap %", ("demo_swap", "changed"), False),
)
NAME_WIDTH = 24
MAX_AFRR_FOR_BEST = 50.0  # percent of answerable samples left without a value


def answers_enough(run: Run, key: tuple[str, str]) -> bool:
    """Whether `run` answered enough of the samples behind column `key` to compete for its star."""
    split, field = key
    if field in ("nse", "prc"):
        afrr = run.split(split).get("afrr")
    elif split == "unanswerable":
        afrr = run.split("micro").get("afrr")
    else:
        return True
    return not is_number(afrr) or afrr <= MAX_AFRR_FOR_BEST


def is_floor(run: Run) -> bool:
    return str(run.config.get("backend", run.name)) in FLOOR_BACKENDS or run.name in FLOOR_BACKENDS


def value(run: Run, key: tuple[str, str]):
    split, field = key
    if split == "demo_swap":
        return ((run.metrics.get("demo_swap") or {}).get("all") or {}).get(field)
    if split == "unanswerable":
        return pooled_unanswerable(run, field)
    found = run.split(split).get(field)
    return found if is_number(found) else None


def short_name(name: str) -> str:
    name = name.replace(" (two-stage)", "")  # the default mode goes without saying
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"


def rows(runs: Sequence[Run]) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    """Header, cells and which cells are the best model value of their column."""
    header = ["run", *(c[0] for c in COLUMNS), "n"]
    values = [[value(run, key) for _, key, _ in COLUMNS] for run in runs]
    best: list[list[bool]] = [[False] * len(COLUMNS) for _ in runs]
    models = [i for i, run in enumerate(runs) if not is_floor(run)]
    for j, (_, key, lower) in enumerate(COLUMNS):
        known = [(values[i][j], i) for i in models if values[i][j] is not None and math.isfinite(values[i][j])]
        contenders = [(v, i) for v, i in known if answers_enough(runs[i], key)]
        if len(known) > 1 and contenders:  # a star needs a comparison
            target = (min if lower else max)(v for v, _ in contenders)
            for v, i in contenders:
                best[i][j] = v == target
    cells = []
    for run, row in zip(runs, values):
        name = short_name(run.name)
        name = f"{name} (floor)" if is_floor(run) and len(name) <= NAME_WIDTH - 8 else name
        cells.append([name, *("–" if v is None else f"{v:.1f}" for v in row), str(sample_count(run))])
    return header, cells, best


def plain_table(runs: Sequence[Run], legend: bool = True) -> str:
    header, cells, best = rows(runs)
    marked = [[cell + ("*" if j and j <= len(COLUMNS) and best[i][j - 1] else "") for j, cell in enumerate(row)]
              for i, row in enumerate(cells)]  # fmt: skip
    widths = [max(len(r[j]) for r in [header, *marked]) for j in range(len(header))]
    lines = [" ".join(h.ljust(w) if j == 0 else h.rjust(w) for j, (h, w) in enumerate(zip(header, widths)))]
    lines.append(" ".join("-" * w for w in widths))
    for row in marked:
        lines.append(" ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
    if not legend:
        return "\n".join(lines)
    lines.append("NSE, AFRR: lower is better; PRC, UDA, swap %: higher; * best model (of the runs that answer at least")
    lines.append("half of the samples); swap %: answers changed by another task's demonstration (--swap-demos);")
    lines.append("full tables: report.md / report.html")
    return "\n".join(lines)


def print_summary(runs: Sequence[Run], title: str = "", file=None, legend: bool = True) -> None:
    """The table to `file` (stdout): rich's when it is a terminal and rich is installed, else plain text; `legend`:
    the lines that say how to read it (left out of the tables that follow a first one)."""
    file = file or sys.stdout
    if getattr(file, "isatty", lambda: False)():
        try:
            from rich.console import Console  # lazy: rich is optional (not a dependency): plain text without it
            from rich.table import Table
        except ImportError:
            pass
        else:
            header, cells, best = rows(runs)
            table = Table(title=title or None, title_justify="left", pad_edge=False, box=None, header_style="bold")
            for j, name in enumerate(header):
                table.add_column(name, justify="left" if j == 0 else "right", no_wrap=True)
            for i, row in enumerate(cells):
                styled = [row[0], *(f"[bold green]{c}[/]" if best[i][j] else c for j, c in enumerate(row[1:-1])), row[-1]]
                table.add_row(*styled, style="dim" if is_floor(runs[i]) else None)
            console = Console(file=file, width=100)
            console.print(table)
            if legend:
                console.print("[dim]NSE, AFRR: lower is better; PRC, UDA, swap %: higher; green: best model (of the "
                              "runs that answer at least half of the samples); swap %: answers changed by another "
                              "task's demonstration (--swap-demos)[/]")
            return
    if title:
        print(title, file=file)
    print(plain_table(runs, legend), file=file)


SHORT_SPLITS = {"visual_same_view": "same-view", "visual_cross_view": "cross-view", "text": "text"}


def like_for_like_lines(pairs: Sequence, runs: Sequence[Run]) -> list[str]:
    """The like-for-like pairs worth a line under the table: a model beside the first run on a split where one of
    the two left more than a tenth of the samples without a value (elsewhere the table already compares them).
    First draws only, when runs asked for several replies per sample."""
    floors = {run.name for run in runs if is_floor(run)}
    shown = [p for p in pairs if p.other not in floors and p.n_both < 0.9 * p.n_split]
    if not shown or not runs:
        return []
    reference = short_name(runs[0].name)
    lines = [f"like for like, NSE where both answered (first draw): {reference} vs each run (+: the run is worse)"]
    for p in shown:
        ci = f" [{p.ci[0]:+.1f}, {p.ci[1]:+.1f}]" if p.ci else ""
        lines.append(f"  {short_name(p.other):<{NAME_WIDTH}} {SHORT_SPLITS.get(p.split, p.split):<10} "
                     f"{p.nse_reference:5.1f} vs {p.nse_other:5.1f} ({p.n_both} of {p.n_split} samples; "
                     f"{p.nse_other - p.nse_reference:+.1f}{ci})")
    return lines


def print_like_for_like(pairs: Sequence, runs: Sequence[Run], file=None) -> None:
    for line in like_for_like_lines(pairs, runs):
        print(line, file=file or sys.stdout)
