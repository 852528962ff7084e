"""What a benchmark holds: samples and trajectories per split, demo lengths, defects, missing images."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from progresslm.bench.format import Bench
from progresslm.types import ANSWERABLE_SPLITS, SPLITS


def bench_stats(bench: Bench, image_root: str | Path | None = None) -> dict:
    """Counts as a JSON-ready dict.

    `trajectories` counts unique trajectory ids per answerable split and sums them, as the paper
    counts them (a cross-view trajectory seen through two camera pairs counts once).
    """
    by_split: dict[str, dict] = {}
    ids: dict[str, set[str]] = defaultdict(set)
    lengths: dict[str, Counter] = defaultdict(Counter)
    counts: Counter = Counter()
    for sample in bench.samples:
        split = sample.split
        counts[split] += 1
        ids[split].add(sample.trajectory_id)
        lengths[split][len(sample.demo.items)] += 1
    for split in SPLITS:
        if counts[split]:
            by_split[split] = {
                "samples": counts[split],
                "trajectories": len(ids[split]),
                "demo_lengths": {str(k): v for k, v in sorted(lengths[split].items())},
            }
    stats: dict = {
        "files": [str(path) for path in bench.files],
        "samples": len(bench.samples),
        "trajectories": sum(len(ids[split]) for split in ANSWERABLE_SPLITS),
        "by_split": by_split,
        "demo_lengths": {
            str(k): v for k, v in sorted(sum((lengths[s] for s in lengths), Counter()).items())
        },
        "defects": {
            "count": len(bench.defects),
            "by_kind": dict(Counter(defect.kind for defect in bench.defects)),
            "rows": [
                {"file": d.file, "line": d.line, "uid": d.uid, "kind": d.kind, "message": d.message}
                for d in bench.defects
            ],
        },
    }
    if image_root is not None:
        missing = []
        seen = set()
        for sample in bench.samples:
            for name in sample.image_names():
                path = sample.image_path(name, image_root)
                if path not in seen:
                    seen.add(path)
                    if not path.is_file():
                        missing.append({"uid": sample.uid, "path": str(path)})
        stats["images"] = {"checked": len(seen), "missing": len(missing), "missing_files": missing}
    return stats


def format_stats(stats: dict, max_rows: int = 20) -> str:
    """The stats as a readable text table."""
    lines = [f"files: {', '.join(stats['files'])}", ""]
    lines.append(f"{'split':<22}{'samples':>9}{'trajectories':>14}  demo lengths (items: samples)")
    for split, row in stats["by_split"].items():
        hist = ", ".join(f"{k}: {v}" for k, v in row["demo_lengths"].items())
        lines.append(f"{split:<22}{row['samples']:>9}{row['trajectories']:>14}  {hist}")
    lines.append(f"{'total':<22}{stats['samples']:>9}{stats['trajectories']:>14}  (trajectories: answerable splits)")
    defects = stats["defects"]
    lines.append("")
    lines.append(f"defects: {defects['count']}" + (f" ({defects['by_kind']})" if defects["count"] else ""))
    for row in defects["rows"][:max_rows]:
        lines.append(f"  {row['file']}:{row['line']}: {row['kind']}: {row['message']}")
    if defects["count"] > max_rows:
        lines.append(f"  ... {defects['count'] - max_rows} more (use --json for all)")
    if "images" in stats:
        images = stats["images"]
        lines.append(f"images: {images['checked']} checked, {images['missing']} missing")
        for row in images["missing_files"][:max_rows]:
            lines.append(f"  missing: {row['path']} (sample {row['uid']})")
        if images["missing"] > max_rows:
            lines.append(f"  ... {images['missing'] - max_rows} more (use --json for all)")
    return "\n".join(lines)
