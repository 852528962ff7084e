"""`progresslm report DIR...`: several runs side by side: a compact table on the terminal, and the full comparison
(configs and sample counts, Table 1, PRC-strict, Table 2, demo swap, each run's diagnostics and plots) as Markdown
and HTML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from progresslm import by_family, report_tables
from progresslm.paired import like_for_like
from progresslm.summary import print_like_for_like, print_summary

EXAMPLES = """examples:
  progresslm report runs/example/*                                  # every run folder; other entries are skipped
  progresslm report runs/a runs/b --html compare.html --md compare.md
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="put several eval runs side by side", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Put runs written by `progresslm eval --out DIR` side by side. Entries that are not run folders "
        "(files, folders without metrics.json) are skipped with a note; a run folder with a broken metrics.json is "
        "an error.",
    )  # fmt: skip
    parser.add_argument("runs", nargs="+", metavar="DIR", help="folders written by `progresslm eval --out DIR`")
    parser.add_argument("--md", metavar="FILE", help="write the full comparison as Markdown to FILE (default: none)")
    parser.add_argument("--html", metavar="FILE", help="write the full comparison as HTML to FILE (default: none)")
    parser.set_defaults(handler=run)


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / "metrics.json").exists()


def run(args: argparse.Namespace) -> int:
    folders = []
    for name in args.runs:
        path = Path(name)
        if is_run_folder(path):
            folders.append(path)
        else:
            why = "a file" if path.is_file() else "not a folder" if not path.exists() else "a folder without metrics.json"
            print(f"note: skipping {path}: {why}, not a run folder", file=sys.stderr)
    if not folders:
        print("error: none of the given paths is a run folder (one written by `progresslm eval --out DIR`)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        runs = [report_tables.load_run(path) for path in folders]
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    names = [run.name for run in runs]
    for run, folder in zip(runs, folders):
        if names.count(run.name) > 1:  # one model run twice (with and without hints, say): tell them apart
            run.name = f"{folder.name}: {run.name}" if names.count(folder.name) <= 1 else str(folder)
    for warning in report_tables.comparison_warnings(runs):
        print(f"warning: {warning}", file=sys.stderr)
    print_summary(runs)
    pairs = None
    if len(folders) > 1:
        try:
            pairs = like_for_like(folders, runs)
        except (OSError, ValueError) as err:  # the tables above do not need it
            print(f"note: no like-for-like comparison: {err}", file=sys.stderr)
    print_like_for_like(pairs or [], runs)
    families = by_family.family_runs(runs, folders)
    for family, family_runs in families.items():  # a row per run and family: a model may hold in one world only
        print(file=sys.stdout)
        print_summary(family_runs, title=f"{family}: {report_tables.sample_count(family_runs[0])} samples",
                      legend=False)
    plots = {run.name: sorted(folder.glob("*.png")) for run, folder in zip(runs, folders)}
    if args.md:
        Path(args.md).write_text(report_tables.compare_markdown(runs, plots, relative_to=Path(args.md).parent, pairs=pairs,
                                                                 families=families))
    if args.html:
        Path(args.html).write_text(report_tables.compare_html(runs, plots, pairs=pairs, families=families))
    if args.md or args.html:
        print(f"full comparison: {', '.join(p for p in (args.md, args.html) if p)}")
    return 0
