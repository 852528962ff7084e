"""gallery.html: the samples behind the numbers. For each split, the best and the worst answers (answerable: by
absolute error; unanswerable: a missed N/A is worst), each with the demonstration (keyframe thumbnails or step
texts), the observation, the true and predicted progress, and the model's reply. One self-contained page
(thumbnails inline as JPEG), written beside report.html by `progresslm eval`."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from progresslm.images import ImageReadError, read_image
from progresslm.types import Modality, Prediction, Sample, Status

THUMB = 96  # longest side of a thumbnail, px


def _thumb(path: Path) -> str:
    try:
        image = read_image(path)
    except (ImageReadError, OSError):
        return '<span class="missing">image missing</span>'
    image.thumbnail((THUMB, THUMB))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/jpeg;base64,{data}" alt="{html.escape(path.name)}">'


def _error(sample: Sample, pred: Prediction) -> float:
    """How wrong an answer is, for ranking: |error| in points; a wrong N/A call counts as 100."""
    if not sample.answerable:
        return 0.0 if pred.status is Status.NA else 100.0
    if not pred.has_value or pred.score is None:
        return 100.0
    return abs(pred.score - sample.progress) * 100


def _shown(pred: Prediction) -> str:
    if pred.status is Status.NA:
        return "n/a"
    if not pred.has_value or pred.score is None:
        return "unreadable"
    return f"{pred.score * 100:.0f}%"


def _card(sample: Sample, pred: Prediction, reply: str, image_root: Path | None, label: str) -> str:
    e = html.escape
    if sample.modality is Modality.VISUAL:
        keys = "".join(f"<figure>{_thumb(sample.image_path(item, image_root))}<figcaption>{i + 1}</figcaption></figure>"
                       for i, item in enumerate(sample.demo.items))  # fmt: skip
        demo = f'<div class="keys">{keys}</div>'
    else:
        demo = "<ol>" + "".join(f"<li>{e(step)}</li>" for step in sample.demo.items) + "</ol>"
    observation = _thumb(sample.image_path(sample.observation, image_root))
    truth = "n/a" if not sample.answerable else f"{sample.progress * 100:.0f}%"
    reply_text = reply if len(reply) <= 600 else reply[:600] + " …"
    return (f'<div class="card"><div class="head">{e(label)} · <b>true {truth}</b> · predicted '
            f'<b>{e(_shown(pred))}</b> · {e(sample.uid)}</div><div class="goal">{e(sample.goal)}</div>'
            f'<div class="row">{demo}<div class="obs">{observation}<div>observation</div></div></div>'
            f"<pre>{e(reply_text)}</pre></div>")  # fmt: skip


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
.card { border: 1px solid #ccc; border-radius: 4px; padding: 0.5em; margin: 0.6em 0; }
.head { font-size: 0.9em; } .goal { color: #555; font-size: 0.85em; margin: 0.2em 0; }
.row { display: flex; gap: 1em; align-items: flex-start; }
.keys { display: flex; gap: 4px; flex-wrap: wrap; } figure { margin: 0; text-align: center; font-size: 0.7em; }
.obs { text-align: center; font-size: 0.7em; border-left: 3px solid #1f77b4; padding-left: 0.5em; }
pre { white-space: pre-wrap; font-size: 0.75em; background: #f6f6f6; padding: 0.4em; max-height: 8em; overflow: auto; }
ol { font-size: 0.8em; margin: 0; } .missing { color: #a00; font-size: 0.8em; }
"""


def write_gallery(path: str | Path, samples: Sequence[Sample], preds: Sequence[Prediction], replies: dict[str, str],
                  image_root: str | Path | None, title: str, per_split: int = 3) -> Path:  # fmt: skip
    """Write the gallery: `per_split` best and `per_split` worst answers of every split."""
    by_split: dict[str, list[tuple[Sample, Prediction]]] = {}
    for sample, pred in zip(samples, preds):
        by_split.setdefault(sample.split, []).append((sample, pred))
    body = [f"<h1>{html.escape(title)}: sample gallery</h1>",
            f"<p>The {per_split} best and {per_split} worst answers of each split (answerable: by the error of the "
            "progress; unanswerable: an n/a is right). Keyframes carry their number; the observation is on the "
            "right, under it the model's reply.</p>"]  # fmt: skip
    root = Path(image_root) if image_root else None
    for split in sorted(by_split):
        ranked = sorted(by_split[split], key=lambda pair: (_error(*pair), pair[0].uid))
        best, worst = ranked[:per_split], ranked[-per_split:][::-1]
        worst = [pair for pair in worst if pair not in best]
        body.append(f"<h2>{html.escape(split)} ({len(ranked)} samples)</h2>")
        body += [_card(s, p, replies.get(s.uid, ""), root, "best") for s, p in best]
        body += [_card(s, p, replies.get(s.uid, ""), root, "worst") for s, p in worst]
    page = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}: gallery</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")  # fmt: skip
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
