"""ProgressLM-nano against the shortcut baselines on the simulated benchmark: benchmarks/nano_results.md.

    python benchmarks/nano_results.py                      # small and full presets, every model
    python benchmarks/nano_results.py --presets small      # the small preset only

For each preset's `bench` split (8 or 5 tasks no training stage saw) it evaluates `constant`,
`random`, `pixel-nn`, `retrieval` (N/A threshold calibrated on the full preset's sft pool), nano
after SFT and nano after GRPO, each with `--swap-demos`, and writes the paper's Table 1 (NSE / PRC /
AFRR per answerable axis) and Table 2 (UDA per unanswerable axis) layouts, PRC-strict, UDA per
kind of unanswerable sample, the share of answers that change under swapped demonstrations, the
issue's targets met or missed, and how long each evaluation took. Runs are resumable: a second call
reuses every saved reply (runs/nano_results/<preset>/<model>).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from progresslm.backends.base import BackendOptions
from progresslm.evaluate import EvalConfig, evaluate
from progresslm.official import load_bench
from progresslm.report import Run, fmt, load_run, table1, table1_strict, table2
from progresslm.sim.build import SimBuildConfig, build
from progresslm.types import Status

REPO = Path(__file__).resolve().parents[1]
ANSWERABLE = ("visual_same_view", "visual_cross_view", "text")
KINDS = ("edit_recolor", "edit_hide", "edit_replace", "other_task", "text_object")


def bench_for(preset: str):
    outcome = build(SimBuildConfig(preset=preset), progress=False)
    return outcome


def calibration_file(runs: Path) -> Path:
    """The retrieval threshold from the full preset's sft pool (same-view and visual unanswerable)."""
    from progresslm.backends.retrieval import calibrate_threshold

    path = runs / "retrieval_calibration.json"
    if not path.is_file():
        full = bench_for("full")
        files = [p for p in full.files["sft"] if p.stem in ("visual_same_view", "visual-unanswerable")]
        samples = load_bench(files).samples
        calibrate_threshold(samples, full.image_root, path, made_from=" ".join(str(p) for p in files))
    return path


def models(args, runs: Path) -> list[tuple[str, str, BackendOptions]]:
    """(row name, backend, options) in table order."""
    rows = [
        ("constant 50%", "constant", BackendOptions()),
        ("random", "random", BackendOptions()),
        ("pixel-nn", "pixel-nn", BackendOptions()),
        ("retrieval", "retrieval", BackendOptions(model=str(calibration_file(runs)))),
    ]
    for name, path in (("nano SFT", args.sft), ("nano GRPO", args.grpo)):
        if path and (Path(path) / "config.json").is_file():
            rows.append((name, "nano", BackendOptions(model=str(path), device="cpu", batch_size=16)))
        else:
            print(f"skipping {name}: no model at {path}", file=sys.stderr)
    return rows


def uda_by_kind(run_dir: Path, samples) -> dict[str, float]:
    """UDA (explicit N/A) per kind of unanswerable sample, from the saved replies."""
    kind = {s.uid: (s.extra.get("sim") or {}).get("unanswerable") for s in samples if not s.answerable}
    hits: dict[str, list[bool]] = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        what = kind.get(row["uid"])
        if what:
            hits.setdefault(what, []).append(row["status"] == Status.NA.value)
    return {k: round(100.0 * sum(v) / len(v), 1) for k, v in hits.items()}


def table_md(table) -> str:
    head = [f"{group} {label}".strip() for group, label in table.columns]
    lines = [f"**{table.title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines)


def targets(run: Run, others: dict[str, Run], kinds: dict[str, float], sft: Run | None) -> list[tuple[str, str, bool]]:
    """The issue's targets for nano after GRPO: (target, measured, met)."""
    s, c = run.split("visual_same_view"), run.split("visual_cross_view")
    swap = (run.metrics.get("demo_swap") or {}).get("all", {})
    pooled_uda = _pooled_uda(run)
    out = [
        ("same-view NSE <= 15", fmt(s.get("nse")), _le(s.get("nse"), 15)),
        ("same-view PRC >= 80", fmt(s.get("prc")), _ge(s.get("prc"), 80)),
        ("cross-view PRC >= 60", fmt(c.get("prc")), _ge(c.get("prc"), 60)),
    ]
    for name in ("pixel-nn", "retrieval"):
        other = others.get(name)
        if other is None:
            continue
        o = other.split("visual_cross_view")
        better = _lt(c.get("nse"), o.get("nse")) and _gt(c.get("prc"), o.get("prc"))
        out.append((f"cross-view NSE and PRC better than {name}",
                    f"{fmt(c.get('nse'))} / {fmt(c.get('prc'))} vs {fmt(o.get('nse'))} / {fmt(o.get('prc'))}", better))
    afrr = run.split("micro").get("afrr")
    out.append(("UDA >= 70 with AFRR <= 10", f"UDA {fmt(pooled_uda)}, AFRR {fmt(afrr)}",
                _ge(pooled_uda, 70) and _le(afrr, 10)))
    worst = min(kinds.values()) if kinds else None
    out.append(("UDA >= 50 on each unanswerable kind", ", ".join(f"{k} {v:g}" for k, v in kinds.items()) or "-",
                worst is not None and worst >= 50))
    out.append((">= 80 % of answers change under --swap-demos", fmt(swap.get("changed")), _ge(swap.get("changed"), 80)))
    if sft is not None:
        better = []
        for group in ANSWERABLE:
            g, f = run.split(group), sft.split(group)
            if _lt(g.get("nse"), f.get("nse")) or _gt(g.get("prc"), f.get("prc")):
                better.append(group)
        shown = "; ".join(
            f"{g}: NSE {fmt(sft.split(g).get('nse'))} -> {fmt(run.split(g).get('nse'))}, "
            f"PRC {fmt(sft.split(g).get('prc'))} -> {fmt(run.split(g).get('prc'))}" for g in ANSWERABLE
        )
        out.append(("GRPO better than SFT on NSE or PRC", shown, bool(better)))
    return out


def _num(value):
    return value if isinstance(value, (int, float)) else None


def _le(a, b):
    return _num(a) is not None and a <= b


def _ge(a, b):
    return _num(a) is not None and a >= b


def _lt(a, b):
    return _num(a) is not None and _num(b) is not None and a < b


def _gt(a, b):
    return _num(a) is not None and _num(b) is not None and a > b


def _pooled_uda(run: Run):
    total = weight = 0.0
    for name in ("visual_unanswerable", "text_unanswerable"):
        s = run.split(name)
        if _num(s.get("uda")) is not None and s.get("n"):
            total, weight = total + s["uda"] * s["n"], weight + s["n"]
    return round(total / weight, 2) if weight else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "full"], choices=["small", "full"])
    parser.add_argument("--sft", default=str(REPO / "runs/nano/sft-best"),
                        help="nano after SFT (a model directory; default: the checkpoint `make nano` selected)")
    parser.add_argument("--grpo", default=str(REPO / "src/progresslm/models/nano"),
                        help="nano after GRPO (default: the shipped checkpoint)")
    parser.add_argument("--runs", default=str(REPO / "runs/nano_results"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/nano_results.md"))
    args = parser.parse_args(argv)

    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    rows = models(args, runs)
    sections = [
        "# ProgressLM-nano on the simulated benchmark",
        "",
        f"Made by `python benchmarks/{Path(__file__).name} {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" on {time.strftime('%Y-%m-%d')}, {platform.machine()} CPU with {os.cpu_count()} cores, no GPU. "
        "Every model sees the benchmark split's tasks for the first time (the sft pool has 28 other tasks, the "
        "rl pool 6 more). Each evaluation also asks every answerable observation again with another task's "
        "goal and demonstration (`--swap-demos`).",
    ]
    for preset in args.presets:
        outcome = bench_for(preset)
        samples = load_bench(outcome.bench_files()).samples
        loaded: dict[str, Run] = {}
        seconds: dict[str, float] = {}
        kinds: dict[str, dict[str, float]] = {}
        for name, backend, options in rows:
            out = runs / preset / name.replace(" ", "_").replace("%", "")
            started = time.perf_counter()
            config = EvalConfig(bench=[str(p) for p in outcome.bench_files()], out=str(out), backend=backend,
                                image_root=str(outcome.image_root), swap_demos=True, floors=False, plots=True,
                                options=options)  # fmt: skip
            evaluate(config, progress=sys.stderr.isatty())
            seconds[name] = time.perf_counter() - started
            loaded[name] = load_run(out, name)
            kinds[name] = uda_by_kind(out, samples)
            print(f"{preset} {name}: {seconds[name]:.0f} s", file=sys.stderr)
        table_runs = list(loaded.values())
        sections += ["", f"## {preset} preset: {len(samples)} samples, {outcome.out.name}", ""]
        sections += [table_md(table1(table_runs)), "", table_md(table1_strict(table_runs)), "",
                     table_md(table2(table_runs)), ""]
        sections += ["**UDA by kind of unanswerable sample** (explicit N/A, %)", "",
                     "| Run | " + " | ".join(KINDS) + " |", "|---|" + "---:|" * len(KINDS)]
        sections += [f"| {name} | " + " | ".join(fmt(kinds[name].get(k)) for k in KINDS) + " |" for name in loaded]
        sections += ["", "**Demonstration swap** (answerable observations asked with another task's demo)", "",
                     "| Run | changed % | N/A % | mean shift (points) | time of this call (saved replies are reused) |", "|---|---:|---:|---:|---:|"]
        for name, run in loaded.items():
            swap = (run.metrics.get("demo_swap") or {}).get("all", {})
            sections.append(f"| {name} | {fmt(swap.get('changed'))} | {fmt(swap.get('na'))} | "
                            f"{fmt(swap.get('mean_abs_shift'))} | {seconds[name]:.0f} s |")
        if "nano GRPO" in loaded:
            sections += ["", "**Targets for nano after GRPO** (issue 5)", "", "| target | measured | met |", "|---|---|---|"]
            for target, measured, met in targets(loaded["nano GRPO"], loaded, kinds["nano GRPO"], loaded.get("nano SFT")):
                sections.append(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
    Path(args.out).write_text("\n".join(sections) + "\n")
    print(f"written {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
