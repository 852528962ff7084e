"""The writer and dataset card of a built benchmark (`sim build` and `data build`): split files in the authors'
JSONL format; a card with counts per axis, tasks, settings, the command, shortcut baselines per axis, expert success
rates and edit visibility (simulated builds), and a contact sheet of examples.

Rows record how they were made under one provenance key (`sim` for simulated builds, `episode` for users' data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from progresslm import by_family, evaluation
from progresslm.bench.format import FILE_STEMS, load_bench
from progresslm.io import write_text_atomic
from progresslm.types import Sample

SPLITS = ("bench", "sft", "rl")
PROVENANCE_KEYS = ("sim", "episode")
AXES = ("visual_same_view", "visual_cross_view", "text", "visual_unanswerable", "text_unanswerable")
# Above this same-view PRC the pixel-matching shortcut reads progress too well: the benchmark rewards matching pixels.
PIXEL_NN_PRC_LIMIT = 70.0


def write_splits(out: Path, rows: dict[str, dict[str, list[dict]]]) -> tuple[dict[str, list[Path]], dict[str, dict[str, int]]]:
    """OUT/<split>/<stem>.jsonl for every split that holds a row (atomic writes); (files, counts) per split."""

    files: dict[str, list[Path]] = {}
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        files[split], counts[split] = [], {}
        if not any(rows.get(split, {}).values()):
            continue
        (out / split).mkdir(exist_ok=True)
        for stem in FILE_STEMS:
            path = out / split / f"{stem}.jsonl"
            records = rows[split].get(stem, [])
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
            files[split].append(path)
            counts[split][stem] = len(records)
    return files, counts


def provenance(record: dict) -> dict:
    """How a row was made (its `sim` or `episode` entry), or {}."""
    return next((record[k] for k in PROVENANCE_KEYS if isinstance(record.get(k), dict)), {})


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def _fmt2(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _axis_counts(samples: list[Sample]) -> dict[str, int]:

    counts = dict.fromkeys(AXES, 0)
    for sample in samples:
        counts[sample.split] += 1
    return counts


def pixel_nn_flag(splits: dict) -> bool:
    """Whether `pixel-nn`'s same-view PRC (`splits` of its metrics) is above PIXEL_NN_PRC_LIMIT."""
    prc = (splits.get("visual_same_view") or {}).get("prc")
    return prc is not None and prc > PIXEL_NN_PRC_LIMIT


def family_cards(samples: dict[str, list[Sample]], baselines_dir: Path, baselines: dict) -> dict[str, dict]:
    """Per simulator family: counts per split and per axis (`by_family.counts`) and per unanswerable kind, the card's
    shortcut baselines on the family's bench samples (from their results under `baselines_dir`), and whether
    `pixel-nn` reads same-view progress too well there. {} when no sample is simulated."""
    groups = {split: by_family.by_family(rows) for split, rows in samples.items()}
    names = list(dict.fromkeys(name for split in groups.values() for name in split))
    bench = samples.get("bench") or []
    scored = {baseline: by_family.metrics_by_family(baselines_dir / baseline / "results.jsonl", bench)
              for baseline in baselines} if bench else {}  # each baseline's results read once
    out = {}
    for name in names:
        entry = {"samples": {split: by_family.counts(g[name]) for split, g in groups.items() if name in g}}
        if name in groups.get("bench", {}) and baselines:
            entry["baselines"] = {baseline: scored[baseline][name]["splits"] for baseline in baselines}
            entry["pixel_nn_too_good"] = pixel_nn_flag(entry["baselines"].get("pixel-nn", {}))
        out[name] = entry
    return out


def write_card(outcome, splits: dict[str, list[str]], settings: dict, title: str) -> None:
    """card.json, card.md and contact_sheet.png in the build folder. `settings` (seed, size, command, ...) lead the
    card; `title` heads card.md."""
    out = outcome.out
    samples = {split: load_bench(files).samples for split, files in outcome.files.items() if files}
    axis_counts = {split: _axis_counts(rows) for split, rows in samples.items()}
    baselines = {}
    if outcome.files.get("bench"):
        baselines = evaluation.baseline_metrics(outcome.files["bench"], out / "images", out / "baselines")
    made: dict[str, int] = {}
    changed: dict[str, list[float]] = {}
    for _split, files in outcome.files.items():
        for path in files:
            for line in path.read_text().splitlines():
                sim = provenance(json.loads(line))
                kind = sim.get("unanswerable")
                if kind:
                    made[kind] = made.get(kind, 0) + 1
                if kind and "changed_pct" in sim.get("edit", {}):
                    changed.setdefault(kind, []).append(sim["edit"]["changed_pct"])
    card = {
        "title": title,
        **settings,
        "tasks": splits,
        "samples": axis_counts,
        "unanswerable_kinds": made,
        "edit_visibility": edit_visibility(changed, getattr(outcome, "invisible_edits", {})),
        "success": getattr(outcome, "success", {}),
        "frames_rendered": getattr(outcome, "frames", None),
        "baselines": baselines,
        "pixel_nn_too_good": pixel_nn_flag(baselines.get("pixel-nn", {})),
        "per_family": family_cards(samples, out / "baselines", baselines),
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "card.md").write_text(render_card(card))
    try:
        contact_sheet(outcome, out / "contact_sheet.png")
    except (OSError, ValueError, KeyError) as err:  # a card without a picture beats no card
        (out / "contact_sheet.error.txt").write_text(str(err))


def edit_visibility(changed: dict[str, list[float]], invisible: dict[str, int]) -> dict[str, dict]:
    """Per edit kind: how many pixels the edit changes (percent of the image, edited against unedited
    render of the same frame), as min / 10th percentile / median / max, and how many edits were not made
    because no frame showed them.

    >>> edit_visibility({"edit_hide": [0.5, 1.0, 2.0]}, {"hide": 1})["edit_hide"]
    {'n': 3, 'min': 0.5, 'p10': 0.6, 'median': 1.0, 'max': 2.0, 'not_made': 1}
    """

    out = {}
    for kind in sorted(set(changed) | {f"edit_{k}" for k in invisible}):
        values = np.asarray(changed.get(kind, []), dtype=float)
        stats = {"n": int(values.size)}
        if values.size:
            stats.update({name: round(float(f(values)), 3) for name, f in (
                ("min", np.min), ("p10", lambda v: np.percentile(v, 10)), ("median", np.median), ("max", np.max))})
        stats["not_made"] = int(invisible.get(kind.removeprefix("edit_"), 0))
        out[kind] = stats
    return out


def render_card(card: dict) -> str:
    lines = [f"# {card['title']}", ""]
    lines += [f"Made by: `{card.get('command') or 'progresslm'}`", ""]
    shown = [k for k in card.get("settings_shown", []) if k in card]
    if shown:
        lines += ["Settings: " + ", ".join(f"{k} `{card[k]}`" for k in shown) + ".", ""]
    lines += ["## Samples per split and axis", "", "| split | " + " | ".join(AXES) + " | total |",
              "|---|" + "---:|" * (len(AXES) + 1)]
    for split, counts in card["samples"].items():
        lines.append(f"| {split} | " + " | ".join(str(counts[a]) for a in AXES) + f" | {sum(counts.values())} |")
    lines += ["", "Unanswerable samples by how they were made: "
              + ", ".join(f"{k} {v}" for k, v in sorted(card["unanswerable_kinds"].items())), ""]
    if card.get("edit_visibility"):
        lines += ["## Can the edits be seen?", "",
                  "Pixels an edit changes (percent of the image: edited against unedited render of the same "
                  "frame, any channel by more than 40 of 255). Cameras are framed on each episode's task region, "
                  "and an edit is made only on a frame where it changes at least 0.5 % of the pixels; "
                  "`not made` counts edits no frame of the episode showed.", "",
                  "| kind | n | min | 10th pct | median | max | not made |", "|---|---:|---:|---:|---:|---:|---:|"]
        for kind, v in card["edit_visibility"].items():
            lines.append(f"| {kind} | {v['n']} | {_fmt2(v.get('min'))} | {_fmt2(v.get('p10'))} | "
                         f"{_fmt2(v.get('median'))} | {_fmt2(v.get('max'))} | {v['not_made']} |")
        lines.append("")
    lines += [f"## {card.get('split_title', 'Tasks (disjoint between splits)')}", ""]
    for split, tasks in card["tasks"].items():
        lines.append(f"- **{split}** ({len(tasks)}): {', '.join(tasks)}")
    if card.get("notes"):
        lines += [""] + [f"- {note}" for note in card["notes"]]
    if card.get("success"):
        lines += ["", "## Expert success (episodes kept / rolled out)", "", "| task | kept | rolled out | rate |",
                  "|---|---:|---:|---:|"]
        for task, s in sorted(card["success"].items()):
            lines.append(f"| {task} | {s['successes']} | {s['attempts']} | "
                         f"{100 * s['successes'] / max(s['attempts'], 1):.0f}% |")
    if card["baselines"]:
        lines += ["", "## Shortcut baselines on the bench split", "",
                  "NSE↓ / PRC↑ / AFRR↓ on answerable axes, UDA↑ on unanswerable ones. `pixel-nn` answers with the "
                  "progress of the keyframe nearest in pixels: a benchmark on which it scores well rewards pixel "
                  "matching, not progress reasoning.", "",
                  "| baseline | " + " | ".join(AXES) + " |", "|---|" + "---:|" * len(AXES)]
        for name, splits in card["baselines"].items():
            cells = []
            for axis in AXES:
                row = splits.get(axis, {})
                if axis.endswith("unanswerable"):
                    cells.append(_fmt(row.get("uda")))
                else:
                    cells.append(f"{_fmt(row.get('nse'))} / {_fmt(row.get('prc'))} / {_fmt(row.get('afrr'))}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if card.get("pixel_nn_too_good"):
            lines += ["", f"**Warning**: `pixel-nn` same-view PRC is above {PIXEL_NN_PRC_LIMIT:.0f}: on this benchmark "
                      "matching pixels reads progress; look at the scene randomisation (`--level`) and the cameras."]
    lines += render_families(card.get("per_family") or {})
    lines += ["", "![contact sheet](contact_sheet.png)", ""]
    return "\n".join(lines)


FAMILY_AXES = (("visual", "visual"), ("text", "text"), ("same view", "same_view"), ("cross view", "cross_view"),
               ("answerable", "answerable"), ("unanswerable", "unanswerable"))


def render_families(families: dict[str, dict]) -> list[str]:
    """The card's per-family section: counts per split and axis, unanswerable kinds, pixel-nn's same-view PRC."""
    if not families:
        return []
    lines = ["", "## Per simulator family", "",
             "Samples per family and split on each axis (visual / text, same / cross view, answerable / "
             f"unanswerable), how the unanswerable ones were made, and `pixel-nn`'s same-view PRC on the family's bench "
             f"samples (flagged above {PIXEL_NN_PRC_LIMIT:.0f}: there pixel matching reads progress).", "",
             "| family | split | n | " + " | ".join(label for label, _ in FAMILY_AXES)
             + " | unanswerable kinds | pixel-nn same-view PRC |", "|---|---|" + "---:|" * (len(FAMILY_AXES) + 1)
             + "---|---:|"]
    for name, entry in families.items():
        pixel = (entry.get("baselines", {}).get("pixel-nn") or {}).get("visual_same_view") or {}
        for split, c in entry["samples"].items():
            kinds = ", ".join(f"{k} {v}" for k, v in c["unanswerable_kinds"].items()) or "–"
            prc = "–"
            if split == "bench" and "baselines" in entry:
                prc = _fmt(pixel.get("prc")) + (f" **> {PIXEL_NN_PRC_LIMIT:.0f}: too good**" if entry.get("pixel_nn_too_good") else "")
            lines.append(f"| {name} | {split} | {c['n']} | " + " | ".join(str(c["axes"][key]) for _, key in FAMILY_AXES)
                         + f" | {kinds} | {prc} |")
    if any("baselines" in entry for entry in families.values()):
        lines += ["", "Shortcut baselines per family on the bench split (NSE↓ / PRC↑ on answerable axes, UDA↑ on "
                  "unanswerable ones):", "", "| family | baseline | " + " | ".join(AXES) + " |",
                  "|---|---|" + "---:|" * len(AXES)]
        for name, entry in families.items():
            for baseline, splits in entry.get("baselines", {}).items():
                cells = [_fmt((splits.get(a) or {}).get("uda")) if a.endswith("unanswerable") else
                         f"{_fmt((splits.get(a) or {}).get('nse'))} / {_fmt((splits.get(a) or {}).get('prc'))}"
                         for a in AXES]
                lines.append(f"| {name} | {baseline} | " + " | ".join(cells) + " |")
    return lines


def contact_sheet(outcome, path: Path, tasks: int = 4, thumb: int = 112) -> Path:
    """Per task: same-view demo keyframes; cross-view demo keyframes; observations; each unanswerable kind."""

    files = outcome.files.get("bench") or next(f for f in outcome.files.values() if f)
    by_stem = {p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in files}
    root = outcome.out / "images"
    blocks = []
    seen_tasks: set[str] = set()
    for record in by_stem["visual_same_view"]:  # the first episode of each task
        task = provenance(record).get("task", record["task_goal"])
        if task in seen_tasks:
            continue
        seen_tasks.add(task)
        if len(seen_tasks) > tasks:
            break
        same = record
        cross = next((r for r in by_stem["visual_cross_view"] if r["id"] == record["id"]), None)
        observations = [r["stage_to_estimate"][0] for r in by_stem["visual_same_view"] if r["id"] == record["id"]]
        step = max(len(observations) // 6, 1)
        edits = [r for r in by_stem["visual-unanswerable"] if r["id"] == record["id"]]
        kinds = [provenance(r).get("unanswerable", "") for r in edits]
        rows = [("demo (same view)", same["visual_demo"])]
        if cross is not None:
            rows.append((f"demo ({cross['camera_combination'].split('+')[0]})", cross["visual_demo"]))
        rows += [
            ("observations", observations[::step][:7]),
            ("unanswerable", [r["stage_to_estimate"][0] for r, k in zip(edits, kinds) if k.startswith("edit")]
             + [r["visual_demo"][len(r["visual_demo"]) // 2] for r, k in zip(edits, kinds) if k == "other_task"][:1]),
        ]
        labels = [[record["task_goal"]]] + [[] for _ in rows[1:-1]] + [
            [k for k in kinds if k.startswith("edit")] + ["other task's demo"]]
        blocks.append((record["id"], rows, labels))
    width = 160 + 8 * thumb
    height = sum(len(rows) * (thumb + 14) + 20 for _, rows, _ in blocks)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for trajectory, rows, labels in blocks:
        draw.text((4, y + 2), trajectory, fill="black")
        y += 16
        for (title, names), captions in zip(rows, labels):
            draw.text((4, y + thumb // 2), title, fill="black")
            for i, name in enumerate(names[:8]):
                with Image.open(root / trajectory / name) as image:
                    sheet.paste(image.convert("RGB").resize((thumb, thumb)), (160 + i * thumb, y))
                if captions and i < len(captions) and title == "unanswerable":
                    draw.text((162 + i * thumb, y + thumb), captions[i], fill="black")
            y += thumb + 14
        y += 4
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
