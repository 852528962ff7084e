"""The compact table `eval`, `report` and `make demo` print: one row per run, within 100 columns."""

from __future__ import annotations

import io
import re

import pytest

from progresslm.report_tables import Run
from progresslm.summary import COLUMNS, plain_table, print_summary, rows


def _split(**values):
    return {"n": 10, **values}


def _run(name, backend, nse=20.0, afrr=0.0, swap=90.0):
    answerable = ("visual_same_view", "visual_cross_view", "text", "micro")
    splits = {s: _split(nse=nse, prc=80.0, afrr=afrr) for s in answerable}
    splits |= {"visual_unanswerable": _split(uda=40.0), "text_unanswerable": _split(uda=60.0)}
    return Run(name, {"splits": splits, "demo_swap": {"all": {"changed": swap}}}, {"backend": backend})


@pytest.fixture
def runs():
    return [_run("a-model-with-a-very-long-checkpoint-name@0123456789abcdef (two-stage)", "hf", nse=15.5),
            _run("second (two-stage)", "matcher", nse=18.25),
            _run("constant-50%", "constant", nse=32.1, swap=0.0)]  # fmt: skip


def test_every_line_fits_a_100_column_terminal(runs):
    table = plain_table(runs)
    assert max(map(len, table.splitlines())) <= 100
    header = table.splitlines()[0].split()
    assert header[0] == "run" and header[-1] == "n" and "UDA" in header and "AFRR" in header


def test_floors_are_marked_and_never_starred(runs):
    header, cells, best = rows(runs)
    assert cells[2][0].endswith("(floor)") and not any(best[2])
    assert cells[0][0].endswith("…") and "(two-stage)" not in cells[1][0]  # long names cut, default mode dropped
    same = header.index("same NSE") - 1
    assert best[0][same] and not best[1][same]  # lower NSE is better
    assert cells[1][same + 1] == "18.2"  # one decimal (18.25 rounds half to even)
    uda = header.index("UDA") - 1
    assert cells[0][uda + 1] == "50.0"  # unanswerable splits pooled by sample count


def test_one_run_gets_no_stars_and_missing_values_show_a_dash():
    run = _run("only", "hf")
    del run.metrics["splits"]["text"]
    header, cells, best = rows([run])
    assert not any(best[0]) and cells[0][header.index("text NSE")] == "–"
    assert "*" not in plain_table([run]).splitlines()[2]


def test_a_terminal_gets_rich_a_pipe_gets_plain_text(runs):
    pytest.importorskip("rich")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal, pipe = Terminal(), io.StringIO()
    print_summary(runs, file=terminal)
    print_summary(runs, file=pipe)
    assert pipe.getvalue().strip() == plain_table(runs).strip()
    styled = terminal.getvalue()
    shown = re.sub(r"\x1b\[[0-9;]*m", "", styled)  # colours off: what the eye sees
    assert "*" not in shown and "second" in shown and "(floor)" in shown
    assert "\x1b[1;32m" in styled  # the best values in bold green
    assert max(map(len, shown.splitlines())) <= 100
    assert len(COLUMNS) == 9
