"""The default models against the shortcut baselines on the simulated benchmark: experiments/nano_results.md.

    python experiments/nano_results.py                                   # small and full presets, every row
    python experiments/nano_results.py --presets small                   # the small preset only
    python experiments/nano_results.py --sft runs/nano/sft-best --matcher runs/nano/matcher --grpo runs/nano/grpo

For each preset's `bench` split (tasks no training stage saw: the checks below refuse an overlap with the full
preset's sft and rl pools) it evaluates the floors (`constant`, `random`), the shortcuts (`pixel-nn`,
`retrieval` with its N/A threshold calibrated on the full preset's sft pool), the `matcher`, nano after SFT
and after GRPO with the matcher's hints, and both nano checkpoints without hints (the ablation: the hints are a
prompt option, so the same weights are asked with and without them). Every evaluation also asks each
answerable observation with another task's demonstration (`--swap-demos`). It writes the paper's Table 1 and
Table 2 layouts, PRC-strict, UDA per kind of unanswerable sample, the demo-swap figures, and the issue's
targets met or missed for both default models. Runs are resumable: a second call reuses every saved reply.
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
from progresslm.bench.format import load_bench
from progresslm.evaluation import EvalConfig, evaluate
from progresslm.report_tables import Run, fmt, load_run, table1, table1_strict, table2
from progresslm.sim.sim_build import SimBuildConfig, build
from progresslm.types import Status

REPO = Path(__file__).resolve().parents[1]
ANSWERABLE = ("visual_same_view", "visual_cross_view", "text")
KINDS = ("edit_recolor", "edit_hide", "edit_replace", "other_task", "text_object")


def bench_for(preset: str):
    return build(SimBuildConfig(preset=preset), progress=False)


def check_unseen(presets: list[str]) -> None:
    """Refuse to report a preset whose benchmark tasks the models trained or were selected on."""
    full = json.loads((bench_for("full").out / "build.json").read_text())["splits"]
    seen = set(full["sft"]) | set(full["rl"])
    for preset in presets:
        tasks = set(json.loads((bench_for(preset).out / "build.json").read_text())["splits"]["bench"])
        if tasks & seen:
            raise SystemExit(f"{preset}: benchmark tasks {sorted(tasks & seen)} were used in training or selection")


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


def models(args, runs: Path, preset: str) -> list[tuple[str, str, BackendOptions, dict]]:
    """(row name, backend, options, extra EvalConfig fields) in table order."""
    rows = [
        ("constant 50%", "constant", BackendOptions(), {}),
        ("random", "random", BackendOptions(), {}),
        ("pixel-nn", "pixel-nn", BackendOptions(), {}),
        ("retrieval", "retrieval", BackendOptions(model=str(calibration_file(runs))), {}),
        ("matcher", "matcher", BackendOptions(model=args.matcher), {}),
    ]
    hints = {"hints_model": args.matcher} if args.matcher else {}
    for name, path in (("nano SFT", args.sft), ("nano GRPO", args.grpo)):
        if name == "nano SFT" and preset not in args.sft_presets:
            continue
        if path and not (Path(path) / "config.json").is_file():
            print(f"skipping {name}: no model at {path}", file=sys.stderr)
            continue
        options = BackendOptions(model=path, device="cpu", batch_size=16)
        rows.append((name, "nano", options, {"hints": "matcher", **hints}))
        rows.append((f"{name}, no hints", "nano", options, {"hints": "none"}))
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


def _num(value):
    return value if isinstance(value, (int, float)) else None


def _le(a, b):
    return _num(a) is not None and a <= b


def _ge(a, b):
    return _num(a) is not None and a >= b


def pooled_uda(run: Run):
    total = weight = 0.0
    for name in ("visual_unanswerable", "text_unanswerable"):
        s = run.split(name)
        if _num(s.get("uda")) is not None and s.get("n"):
            total, weight = total + s["uda"] * s["n"], weight + s["n"]
    return round(total / weight, 2) if weight else None


def targets(run: Run, kinds: dict[str, float]) -> list[tuple[str, str, bool]]:
    """The issue's per-model targets: (target, measured, met)."""
    s, c = run.split("visual_same_view"), run.split("visual_cross_view")
    swap = (run.metrics.get("demo_swap") or {}).get("all", {})
    uda, afrr = pooled_uda(run), run.split("micro").get("afrr")
    worst = min(kinds.values()) if kinds else None
    return [
        ("same-view NSE <= 15 and PRC >= 85", f"{fmt(s.get('nse'))} / {fmt(s.get('prc'))}",
         _le(s.get("nse"), 15) and _ge(s.get("prc"), 85)),
        ("cross-view NSE <= 20 and PRC >= 75", f"{fmt(c.get('nse'))} / {fmt(c.get('prc'))}",
         _le(c.get("nse"), 20) and _ge(c.get("prc"), 75)),
        ("UDA >= 70 with AFRR <= 10", f"UDA {fmt(uda)}, AFRR {fmt(afrr)}", _ge(uda, 70) and _le(afrr, 10)),
        ("UDA >= 50 on every unanswerable kind", ", ".join(f"{k} {v:g}" for k, v in kinds.items()) or "-",
         worst is not None and worst >= 50),
        (">= 80 % of answers change under --swap-demos", fmt(swap.get("changed")), _ge(swap.get("changed"), 80)),
    ]  # fmt: skip


def comparisons(loaded: dict[str, Run]) -> list[tuple[str, str, bool]]:
    """nano against the matcher (NSE on at least two splits) and GRPO against SFT."""
    out = []
    nano, matcher, sft = loaded.get("nano GRPO"), loaded.get("matcher"), loaded.get("nano SFT")
    if nano and matcher:
        better = [g for g in ANSWERABLE if _num(nano.split(g).get("nse")) is not None
                  and _num(matcher.split(g).get("nse")) is not None and nano.split(g)["nse"] < matcher.split(g)["nse"]]
        shown = "; ".join(f"{g}: {fmt(matcher.split(g).get('nse'))} -> {fmt(nano.split(g).get('nse'))}" for g in ANSWERABLE)
        out.append(("nano (GRPO) NSE below the matcher's on >= 2 splits", shown, len(better) >= 2))
    if nano and sft:
        better = [g for g in ANSWERABLE if _num(nano.split(g).get("nse")) is not None
                  and _num(sft.split(g).get("nse")) is not None and nano.split(g)["nse"] < sft.split(g)["nse"]]
        shown = "; ".join(f"{g}: NSE {fmt(sft.split(g).get('nse'))} -> {fmt(nano.split(g).get('nse'))}, "
                          f"PRC {fmt(sft.split(g).get('prc'))} -> {fmt(nano.split(g).get('prc'))}" for g in ANSWERABLE)
        out.append(("GRPO better than SFT (NSE on more splits than not)", shown, len(better) >= 2))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "full"], choices=["small", "full"])
    parser.add_argument("--matcher", help="matcher checkpoint (default: the shipped one); also writes nano's hints")
    parser.add_argument("--sft", default=str(REPO / "runs/nano/sft-best"),
                        help="nano after SFT (default: the checkpoint `make nano` selected)")
    parser.add_argument("--sft-presets", nargs="+", default=["small", "full"], choices=["small", "full"],
                        help="presets with the SFT rows (each full-preset nano row costs ~15 min on 2 cores)")
    parser.add_argument("--grpo", help="nano after GRPO (default: the shipped checkpoint)")
    parser.add_argument("--runs", default=str(REPO / "runs/nano_results"))
    parser.add_argument("--out", default=str(REPO / "experiments/nano_results.md"))
    args = parser.parse_args(argv)

    check_unseen(args.presets)
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    sections = [
        "# The default models on the simulated benchmark",
        "",
        f"Made by `python experiments/{Path(__file__).name} {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" on {time.strftime('%Y-%m-%d')}, {platform.machine()} CPU with {os.cpu_count()} cores, no GPU. "
        "Every model sees the benchmark split's tasks for the first time (the sft pool has 28 other tasks, the "
        "rl pool 6 more, used only for selection and GRPO). Each evaluation also asks every answerable observation "
        "again with another task's goal and demonstration (`--swap-demos`). nano rows use the matcher's hints "
        "(`--hints matcher`) unless marked; the no-hints rows ask the same weights without them.",
    ]
    for preset in args.presets:
        rows = models(args, runs, preset)
        outcome = bench_for(preset)
        samples = load_bench(outcome.bench_files()).samples
        loaded: dict[str, Run] = {}
        seconds: dict[str, float] = {}
        kinds: dict[str, dict[str, float]] = {}
        for name, backend, options, extra in rows:
            out = runs / preset / name.replace(" ", "_").replace("%", "").replace(",", "")
            started = time.perf_counter()
            config = EvalConfig(bench=[str(p) for p in outcome.bench_files()], out=str(out), backend=backend,
                                image_root=str(outcome.image_root), swap_demos=True, floors=False, plots=True,
                                options=options, **extra)  # fmt: skip
            evaluate(config, progress=sys.stderr.isatty())
            seconds[name] = time.perf_counter() - started
            loaded[name] = load_run(out, name)
            kinds[name] = uda_by_kind(out, samples)
            print(f"{preset} {name}: {seconds[name]:.0f} s", file=sys.stderr)
        table_runs = list(loaded.values())
        sections += ["", f"## {preset} preset: {len(samples)} samples, {outcome.out.name}", ""]
        sections += [table_md(table1(table_runs)), "", table_md(table1_strict(table_runs)), "",
                     table_md(table2(table_runs)), ""]  # fmt: skip
        sections += ["**UDA by kind of unanswerable sample** (explicit N/A, %)", "",
                     "| Run | " + " | ".join(KINDS) + " |", "|---|" + "---:|" * len(KINDS)]  # fmt: skip
        sections += [f"| {name} | " + " | ".join(fmt(kinds[name].get(k)) for k in KINDS) + " |" for name in loaded]
        sections += ["", "**Demonstration swap** (answerable observations asked with another task's demo)", "",
                     "| Run | changed % | N/A % | mean shift (points) | time of this call (saved replies are reused) |",
                     "|---|---:|---:|---:|---:|"]  # fmt: skip
        for name, run in loaded.items():
            swap = (run.metrics.get("demo_swap") or {}).get("all", {})
            sections.append(f"| {name} | {fmt(swap.get('changed'))} | {fmt(swap.get('na'))} | "
                            f"{fmt(swap.get('mean_abs_shift'))} | {seconds[name]:.0f} s |")  # fmt: skip
        for model in ("matcher", "nano GRPO"):
            if model in loaded:
                sections += ["", f"**Targets: {model}**", "", "| target | measured | met |", "|---|---|---|"]
                for target, measured, met in targets(loaded[model], kinds[model]):
                    sections.append(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
        pairs = comparisons(loaded)
        if pairs:
            sections += ["", "**Targets: nano against the matcher, GRPO against SFT**", "",
                         "| target | measured | met |", "|---|---|---|"]  # fmt: skip
            sections += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in pairs]
    Path(args.out).write_text("\n".join(sections) + "\n")
    print(f"written {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
