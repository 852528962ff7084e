"""Benchmarks and runs per simulator family: which family each sample comes from, its counts per axis and kind of
unanswerable sample, and a run's metrics recomputed on each family's samples from its `results.jsonl`.

A simulated row says its family in its `sim` record (`sim.family`); Meta-World rows carry none (they stayed as they
were before families), so a `sim` row without one is Meta-World's. Rows of users' data (`episode` records) belong to
no family. `progresslm report` and the dataset card show a breakdown when the samples name a family (`has_families`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from progresslm.bench.format import load_bench
from progresslm.demo_swap import SWAP_SUFFIX, swap_report
from progresslm.metrics import compute_metrics
from progresslm.report_tables import Run
from progresslm.results import ResultStore
from progresslm.types import SPLITS, Prediction, Sample

UNNAMED_FAMILY = "metaworld"  # the family of `sim` rows without `family` (sim.family.DEFAULT_FAMILY; tested equal)


def family_of(sample: Sample) -> str | None:
    """The simulator family of `sample`, or None for rows that were not simulated.

    >>> from progresslm.types import Demo, Modality
    >>> row = Sample("u", "t", "g", Demo(Modality.TEXT, ("a",), 1), "o.jpg", 0.5, 1, extra={"sim": {"family": "fetch"}})
    >>> family_of(row), family_of(Sample("u", "t", "g", row.demo, "o.jpg", 0.5, 1, extra={"sim": {}}))
    ('fetch', 'metaworld')
    """
    sim = sample.extra.get("sim")
    if not isinstance(sim, dict):
        return None
    return str(sim.get("family") or UNNAMED_FAMILY)


def by_family(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    """The simulated samples grouped by family, families in order of first appearance (others left out)."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        family = family_of(sample)
        if family is not None:
            groups.setdefault(family, []).append(sample)
    return groups


def has_families(families: Sequence[str]) -> bool:
    """Whether a breakdown by family says more than the overall tables: several families, or one other than
    Meta-World (whose rows name none)."""
    return len(set(families)) > 1 or any(f != UNNAMED_FAMILY for f in families)


def unanswerable_kind(sample: Sample) -> str | None:
    """How an unanswerable sample was made (`other_task`, `edit_hide`, `text_object`, ...), from its provenance."""
    record = next((sample.extra[k] for k in ("sim", "episode") if isinstance(sample.extra.get(k), dict)), {})
    kind = record.get("unanswerable")
    return str(kind) if kind else None


def counts(samples: Sequence[Sample]) -> dict:
    """Counts of one family's samples: per split (axis), per view and answerability, and per unanswerable kind.

    >>> from progresslm.types import Demo, Modality
    >>> text = Demo(Modality.TEXT, ("a",), 1)
    >>> rows = [Sample("1", "t", "g", text, "o.jpg", 0.5, 1), Sample("2", "t", "g", text, "o.jpg", None, None,
    ...         extra={"sim": {"unanswerable": "text_object"}})]
    >>> c = counts(rows)
    >>> c["splits"]["text"], c["axes"]["text"], c["axes"]["unanswerable"], c["unanswerable_kinds"]
    (1, 2, 1, {'text_object': 1})
    """
    splits = dict.fromkeys(SPLITS, 0)
    axes = dict.fromkeys(("visual", "text", "same_view", "cross_view", "answerable", "unanswerable"), 0)
    kinds: dict[str, int] = {}
    for sample in samples:
        splits[sample.split] += 1
        axes[sample.modality.value] += 1
        axes["answerable" if sample.answerable else "unanswerable"] += 1
        if sample.split in ("visual_same_view", "visual_cross_view"):
            axes[sample.split.removeprefix("visual_")] += 1
        kind = unanswerable_kind(sample)
        if kind and not sample.answerable:
            kinds[kind] = kinds.get(kind, 0) + 1
    return {"n": len(samples), "splits": splits, "axes": axes, "unanswerable_kinds": dict(sorted(kinds.items()))}


def run_metrics(results: Path, samples: Sequence[Sample]) -> dict:
    """metrics.json's contract (no intervals) for `samples` from the replies in `results` (first draw, latest record
    per sample, parsed again), with `demo_swap` when the run asked swapped demonstrations. Samples without a reply
    (a `--limit` run) are left out, as `progresslm eval` leaves them out."""
    return _metrics(ResultStore(results).latest()[0], samples)


def metrics_by_family(results: Path, samples: Sequence[Sample]) -> dict[str, dict]:
    """`run_metrics` of each family's share of `samples`, from one reading of `results`."""
    latest = ResultStore(results).latest()[0]
    return {family: _metrics(latest, group) for family, group in by_family(samples).items()}


def _metrics(latest: dict, samples: Sequence[Sample]) -> dict:
    pairs: list[tuple[Sample, Prediction]] = []
    swaps = []
    for sample in samples:
        record = latest.get((sample.uid, 0))
        if record is None:
            continue
        prediction = record.prediction()
        pairs.append((sample, prediction))
        swapped = latest.get((sample.uid + SWAP_SUFFIX, 0))
        if swapped is not None:
            swaps.append((sample, prediction, swapped.prediction()))
    metrics = compute_metrics([s for s, _ in pairs], [p for _, p in pairs], bootstrap=0) if pairs else {"splits": {}}
    if swaps:
        metrics["demo_swap"] = swap_report(swaps)
    return metrics


def family_runs(runs: Sequence[Run], folders: Sequence[Path]) -> dict[str, list[Run]]:
    """For each simulator family of the runs' benchmarks (the files each `config.json` names, read once per
    benchmark), the runs recomputed on that family's samples (same names and configs, `run_metrics` as their
    metrics), families in order of first appearance; {} when the benchmarks name no family other than Meta-World
    (the overall table already says it all) or cannot be read."""
    benches: dict[tuple[str, ...], list[Sample]] = {}
    per_family: dict[str, list[Run]] = {}
    for run, folder in zip(runs, folders):
        files = tuple(run.config.get("bench") or [])
        if files not in benches:
            try:
                benches[files] = load_bench(list(files)).samples if files else []
            except (OSError, ValueError):
                benches[files] = []
        for family, metrics in metrics_by_family(Path(folder) / "results.jsonl", benches[files]).items():
            per_family.setdefault(family, []).append(Run(run.name, metrics, run.config))
    return per_family if has_families(list(per_family)) else {}
