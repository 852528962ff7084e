"""`progresslm train matcher`: train the matcher on cached features, select on held-out tasks.

    progresslm train matcher --train 'sft/*.jsonl' --val 'rl/*.jsonl' --image-root images --out runs/nano/matcher

1. Features: every image of both pools through the frozen `ImageEncoder`, every goal and step
   through the `TextEncoder`, cached under `--features` (default `OUT/../features`): a rerun, or the
   next stage, computes nothing again.
2. Training on the `--train` pool (the simulator's sft tasks): anchor cross-entropy plus the L1
   error of the progress read at the expected position, for visual and text demonstrations; the N/A
   heads by binary cross-entropy on the pool's unanswerable samples plus, made on the fly, the
   observation against another task's demonstration (visual and text) and demonstrations cut after
   an earlier step (a shorter task: the same observation gets another anchor and score).
3. Every `eval_every` steps the model answers the `--val` pool (tasks training never saw, never the
   benchmark's); the N/A thresholds are chosen there (best balanced accuracy with at most `max_afrr`
   of answerable samples refused), and the step with the best selection score
   (`progresslm.metrics.selection_score`: NSE, wrong N/A calls, and PRC-strict so that a model
   answering one value per trajectory never wins) is kept.

The output folder holds the checkpoint (`config.json`, `model.safetensors`), `train_log.jsonl` and
`select.json` with every evaluation.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from progresslm.bench.format import load_bench
from progresslm.calibrate import best_threshold
from progresslm.images import read_image
from progresslm.io import expand_files, image_root_path
from progresslm.matcher.augmentation import augment_image, view_seed
from progresslm.matcher.encoders import TEXT_DIM, FeatureStore, ImageEncoder, ImageSpec, TextEncoder
from progresslm.matcher.hints import FOLDS_FILE
from progresslm.matcher.modeling_matcher import Matcher, MatcherConfig
from progresslm.metrics import compute_metrics, nse_term, selection_score
from progresslm.types import Modality, Prediction, Sample, Status, task_of

log = logging.getLogger(__name__)


class MatcherTrainError(ValueError):
    """Training data or settings that cannot work; the message says which and what to do."""


@dataclass
class MatcherTrainConfig:
    train: list[str]
    val: list[str]
    out: str
    image_root: str | None = None
    features: str | None = None  # feature cache folder; default OUT/../features
    image: ImageSpec = field(default_factory=ImageSpec)
    embed_dim: int = 256
    text: bool = True
    steps: int = 3000
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    progress_weight: float = 2.0  # L1 progress loss against the anchor cross-entropy
    na_weight: float = 1.0
    task_weight: float = 1.0  # contrastive "same task?" loss (visual)
    dropout: float = 0.1
    similarity: str = "global"  # MatcherConfig.similarity
    swap_rate: float = 0.25  # share of each visual / text batch made of swapped-demo negatives
    cut_rate: float = 0.2  # share of answerable rows whose demo is cut after an earlier step
    eval_every: int = 250
    max_afrr: float = 0.08  # N/A thresholds refuse at most this share of held-out answerable samples
    na_weight_select: float = 0.5
    order_weight: float = 0.25
    seed: int = 0
    device: str = "cpu"
    exclude_tasks: list[str] = field(default_factory=list)  # training tasks left out (cross-fitting folds)
    # Cross-fitting folds train without held-out checks: each branch is taken at the step the main matcher
    # selected ({"visual": 200, "text": 200}) and training stops after the last of them.
    fixed_steps: dict[str, int] = field(default_factory=dict)
    # Generalisation (issue 27); each default keeps the v1 recipe.
    readout: str = "expected"  # MatcherConfig.readout
    demo_norm: bool = False  # MatcherConfig.demo_norm
    order_check: bool = False  # MatcherConfig.order_check
    snap_similarity: float | None = None  # MatcherConfig.snap_similarity (test time only)
    augment_views: int = 0  # augmented copies per training image (matcher.augmentation), encoded once and cached
    augment_strength: float = 0.6
    augment_rate: float = 0.5  # chance that an image of a training row is one of its copies instead of itself
    keyframe_rate: float = 0.0  # share of visual rows whose observation is one of the keyframes (a copy if any)
    hard_negative_rate: float = 0.0  # share of swapped demos taken as the most alike of 8 other tasks' demos
    family_negative_rate: float = 0.0  # share of swapped demos from another simulator family (when there are several)
    calibrate_text: bool = False  # fit MatcherConfig.text_shrink on the --val pool
    text_abstain_afrr: float = 0.0  # > 0: also abstain on weak text evidence, refusing at most this share on --val


# -- data ---------------------------------------------------------------------------------------


@dataclass
class Pool:
    """A benchmark pool as index arrays into one image-feature and one text-feature matrix."""

    samples: list[Sample]
    images: np.ndarray  # (n_images, D)
    texts: np.ndarray  # (n_texts, 384)
    visual: list[dict]  # per visual sample: obs, keys, points, anchor (0-based), progress, na, task, i
    textual: list[dict]  # per text sample: obs, steps, goal, total, anchor (0..T), progress, na, task, i
    views: np.ndarray | None = None  # (n_images, V): rows of `images` holding augmented copies of each image


def image_key(path: Path) -> str:
    return str(Path(path).resolve())


def family_of(sample: Sample) -> str:
    """The simulator family a sample comes from ("metaworld" for Meta-World rows, which carry no family), or
    "data" for samples from users' data."""
    sim = sample.extra.get("sim")
    if not isinstance(sim, dict):
        return "data"
    return str(sim.get("family") or "metaworld")


def build_pool(
    samples: Sequence[Sample], image_root, image_store: FeatureStore, text_store: FeatureStore | None,
    image_encoder, text_encoder, augment: tuple[FeatureStore, int, float, int] | None = None,
) -> Pool:  # fmt: skip
    """Features for every image and text of `samples` (cached in the stores), and the index rows.
    `augment` (store, views, strength, seed): also `views` augmented copies of every image, cached in `store`."""
    image_keys: dict[str, int] = {}
    text_keys: dict[str, int] = {}

    def image_index(sample: Sample, name: str) -> int:
        return image_keys.setdefault(image_key(sample.image_path(name, image_root)), len(image_keys))

    def text_index(text: str) -> int:
        return text_keys.setdefault(text.strip(), len(text_keys))

    visual, textual = [], []
    for i, sample in enumerate(samples):
        labelled = sample.labelled
        if not labelled:
            continue
        task = task_of(sample)
        sim = sample.extra.get("sim") or {}
        # Whose demonstration (or goal) it is, for the "same task?" losses: the observation's task when the
        # row is answerable, the other task for a swapped demonstration, and "?" (matching nothing) for an
        # edited object or a goal naming an absent object: the scene is not the one the demo shows.
        demo_task = sim.get("demo_task") or (task if sample.answerable else "?")
        family = family_of(sample)
        obs = image_index(sample, sample.observation)
        na = not sample.answerable
        demo = sample.demo
        if demo.modality is Modality.VISUAL:
            visual.append({
                "obs": obs, "keys": [image_index(sample, n) for n in demo.items],
                "points": demo.progress_points(), "na": na, "task": task, "demo_task": demo_task, "i": i,
                "family": family,
                "anchor": None if na else sample.closest_idx - 1, "progress": sample.progress,
            })  # fmt: skip
        elif text_store is not None:
            total = demo.total_steps
            textual.append({
                "obs": obs, "steps": [text_index(t) for t in demo.items], "goal": text_index(sample.goal),
                "total": total, "na": na, "task": task, "demo_task": demo_task, "i": i, "progress": sample.progress,
                "family": family,
                "anchor": None if na else int(round(sample.progress * total)),
            })  # fmt: skip
    keys = list(image_keys)
    images = image_store.get(keys, lambda missing: image_encoder().encode_files(missing))
    image_store.save()
    views = None
    if augment is not None and augment[1] > 0:
        copies = augmented_features(keys, augment, image_encoder)
        views = (len(keys) + np.arange(len(copies))).reshape(len(keys), augment[1])
        images = np.concatenate([images, copies])
    texts = np.zeros((0, TEXT_DIM), np.float32)
    if text_store is not None and text_keys:
        texts = text_store.get(list(text_keys), lambda missing: text_encoder().encode(missing))
        text_store.save()
    return Pool(list(samples), images, texts, visual, textual, views)


def augmented_features(keys: list[str], augment: tuple[FeatureStore, int, float, int], image_encoder,
                       chunk: int = 256) -> np.ndarray:
    """Features of `views` augmented copies of each image file in `keys` (key-major), computed in chunks and
    saved after each, so a killed run keeps what it encoded."""
    store, n_views, strength, seed = augment

    def compute(missing):
        images = []
        for key in missing:
            path, view = key.rsplit("#aug", 1)
            rng = np.random.default_rng(view_seed(path, int(view), seed))
            images.append(augment_image(read_image(path), rng, strength))
        return image_encoder().encode(images)

    wanted = [f"{k}#aug{v}" for k in keys for v in range(n_views)]
    missing = [k for k in wanted if k not in store]
    for start in range(0, len(missing), chunk):
        store.get(missing[start : start + chunk], compute)
        store.save()
    return store.get(wanted, compute)


# -- batches ------------------------------------------------------------------------------------


def _pad(rows: list[list[int]], fill: int = 0) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), fill, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = True
    return out, mask


def _cut(row: dict, rng: random.Random, text: bool) -> dict | None:
    """The row against its demonstration cut after an earlier step that still contains it."""
    total = row["total"] if text else len(row["keys"]) - 1
    p = row["progress"]
    options = [m for m in range(1, total) if p <= m / total + 1e-6]
    if not options:
        return None
    m = rng.choice(options)
    q = min(p * total / m, 1.0)
    if text:
        return dict(row, steps=row["steps"][:m], total=m, progress=q, anchor=int(round(q * m)))
    return dict(row, keys=row["keys"][: m + 1], points=[i / m for i in range(m + 1)], progress=q, anchor=int(round(q * m)))


def _swap(row: dict, rows: list[dict], rng: random.Random, pool: Pool | None = None, hard: bool = False) -> dict | None:
    """The row's observation with the demonstration of another task: N/A. `hard` (needs `pool`): of 8 other
    tasks' demonstrations, the one whose keyframes' mean feature is most like the observation's."""
    candidates = []
    for _ in range(20):
        other = rows[rng.randrange(len(rows))]
        if other["task"] != row["task"]:
            candidates.append(other)
            if not hard or len(candidates) == 8:
                break
    if not candidates:
        return None
    other = candidates[0]
    if hard and pool is not None and len(candidates) > 1 and "keys" in other:
        obs = pool.images[row["obs"]]
        means = np.stack([pool.images[c["keys"]].mean(0) for c in candidates])
        cos = means @ obs / (np.linalg.norm(means, axis=1) * np.linalg.norm(obs) + 1e-9)
        other = candidates[int(np.argmax(cos))]
    return dict(other, obs=row["obs"], na=True, anchor=None, progress=None, task=row["task"],
                demo_task=other["task"], family=row.get("family", ""))


def _keyframe(row: dict, rng: random.Random) -> dict:
    """The row's demonstration with one of its own keyframes as the observation: that keyframe's progress."""
    k = rng.randrange(len(row["keys"]))
    return dict(row, obs=row["keys"][k], anchor=k, progress=row["points"][k])


def sample_batch(rows: list[dict], size: int, rng: random.Random, config: MatcherTrainConfig, text: bool,
                 pool: Pool | None = None) -> list[dict]:
    answerable = [r for r in rows if not r["na"]]
    families = {r.get("family", "") for r in answerable}
    others: dict[str, list[dict]] = {}  # family -> the answerable rows of the other families, made once per batch
    batch = []
    n_swap = int(size * config.swap_rate) if answerable else 0
    for _ in range(n_swap):
        row = rng.choice(answerable)
        source = answerable
        if len(families) > 1 and config.family_negative_rate > 0 and rng.random() < config.family_negative_rate:
            family = row.get("family", "")
            if family not in others:
                others[family] = [r for r in answerable if r.get("family", "") != family] or answerable
            source = others[family]
        hard = not text and config.hard_negative_rate > 0 and rng.random() < config.hard_negative_rate
        made = _swap(row, source, rng, pool, hard)
        if made:
            batch.append(made)
    while len(batch) < size:
        row = rng.choice(rows)
        if not row["na"] and not text and config.keyframe_rate > 0 and rng.random() < config.keyframe_rate:
            row = _keyframe(row, rng)
        elif not row["na"] and rng.random() < config.cut_rate:
            row = _cut(row, rng, text) or row
        batch.append(row)
    return batch


def _views(index: np.ndarray, pool: Pool, rng: np.random.Generator | None, rate: float) -> np.ndarray:
    """Each image index replaced, with probability `rate`, by one of its augmented copies (training only)."""
    if rng is None or pool.views is None or rate <= 0:
        return index
    flat = index.reshape(-1)
    use = (rng.random(flat.shape) < rate) & (flat < len(pool.views))
    choice = rng.integers(0, pool.views.shape[1], flat.shape)
    out = flat.copy()
    out[use] = pool.views[flat[use], choice[use]]
    return out.reshape(index.shape)


def visual_tensors(batch: list[dict], pool: Pool, rng: np.random.Generator | None = None, rate: float = 0.0):
    import torch  # lazy: torch (the [nano] extra)

    keys, mask = _pad([r["keys"] for r in batch])
    points = np.zeros(mask.shape, np.float32)
    for i, r in enumerate(batch):
        points[i, : len(r["points"])] = r["points"]
        points[i, len(r["points"]) :] = r["points"][-1]
    obs = _views(np.array([r["obs"] for r in batch]), pool, rng, rate)
    return (
        torch.from_numpy(pool.images[obs]),
        torch.from_numpy(pool.images[_views(keys, pool, rng, rate)]),
        torch.from_numpy(mask),
        torch.from_numpy(points),
    )


def text_tensors(batch: list[dict], pool: Pool, rng: np.random.Generator | None = None, rate: float = 0.0):
    import torch  # lazy: torch (the [nano] extra)

    steps, mask = _pad([r["steps"] for r in batch])
    points = np.zeros((len(batch), mask.shape[1] + 1), np.float32)
    for i, r in enumerate(batch):
        pts = [j / r["total"] for j in range(len(r["steps"]) + 1)]
        points[i, : len(pts)] = pts
        points[i, len(pts) :] = pts[-1]
    return (
        torch.from_numpy(pool.images[_views(np.array([r["obs"] for r in batch]), pool, rng, rate)]),
        torch.from_numpy(pool.texts[steps]),
        torch.from_numpy(mask),
        torch.from_numpy(points),
        torch.from_numpy(pool.texts[[r["goal"] for r in batch]]),
    )


def batch_loss(module, batch: list[dict], pool: Pool, config: MatcherTrainConfig, text: bool,
               views_rng: np.random.Generator | None = None):
    import torch  # lazy: torch (the [nano] extra)
    import torch.nn.functional as F

    make = text_tensors if text else visual_tensors
    tensors = make(batch, pool, views_rng, config.augment_rate)
    logits, _, _, progress, na_logit = (module.text if text else module.visual)(*tensors)
    na = torch.tensor([r["na"] for r in batch], dtype=torch.float32)
    answerable = na == 0
    losses = {}
    if answerable.any():
        anchors = torch.tensor([r["anchor"] if r["anchor"] is not None else 0 for r in batch])
        target = torch.tensor([r["progress"] if r["progress"] is not None else 0.0 for r in batch])
        losses["anchor"] = F.cross_entropy(logits[answerable], anchors[answerable])
        losses["progress"] = config.progress_weight * (progress[answerable] - target[answerable]).abs().mean()
    losses["na"] = config.na_weight * _balanced_bce(na_logit, na)
    if config.task_weight > 0:
        losses["task"] = config.task_weight * task_loss(module, tensors, batch, text)
    return losses


def _balanced_bce(logits, targets):
    """Binary cross-entropy with both classes weighted equally, whatever share of the batch each has."""
    import torch  # lazy: torch (the [nano] extra)
    import torch.nn.functional as F

    positive = targets.float().mean().clamp(0.02, 0.98)
    weights = torch.where(targets > 0.5, 0.5 / positive, 0.5 / (1 - positive))
    return F.binary_cross_entropy_with_logits(logits, targets.float(), weight=weights)


def task_loss(module, tensors, batch: list[dict], text: bool):
    """Every observation of the batch against every demonstration (visual) or goal (text) of the batch:
    "same task?" (any camera, any episode; an edited object or an absent object named counts as not the
    same), so the embedding learns what stays when the view changes and what differs between tasks."""
    import torch  # lazy: torch (the [nano] extra)

    if text:
        obs, _, _, _, goal = tensors
        z_obs, z_demo = module.text_embeddings(obs, goal)
        scale = module.text_log_scale.exp()
    else:
        obs, keys, mask, _ = tensors
        z_obs, z_demo = module.task_embeddings(obs, keys, mask)
        scale = module.task_log_scale.exp()
    same = torch.tensor([[r["task"] == other["demo_task"] for other in batch] for r in batch], dtype=torch.float32)
    return _balanced_bce(((z_obs @ z_demo.T) * scale).flatten(), same.flatten())


# -- evaluation on held-out tasks ---------------------------------------------------------------


def answer_pool(matcher: Matcher, pool: Pool) -> dict[int, tuple[float, float, int, bool]]:
    """sample index -> (progress, p_na, anchor 1-based, text) for every labelled sample of the pool."""
    import torch  # lazy: torch (the [nano] extra)

    out = {}
    module = matcher.module
    with torch.inference_mode():
        for rows, text in ((pool.visual, False), (pool.textual, True)):
            for start in range(0, len(rows), 1024):
                batch = rows[start : start + 1024]
                tensors = text_tensors(batch, pool) if text else visual_tensors(batch, pool)
                _, _, position, progress, na_logit = (module.text if text else module.visual)(*tensors)
                for r, pos, prog, p_na in zip(batch, position.tolist(), progress.tolist(), na_logit.sigmoid().tolist()):
                    nearest = int(round(pos))
                    out[r["i"]] = (prog, p_na, max(nearest, 1) if text else nearest + 1, text)
    return out


def thresholds(pool: Pool, answers: dict, max_afrr: float) -> tuple[float, float]:
    """N/A thresholds (visual, text) with the best balanced accuracy refusing at most `max_afrr`."""
    chosen = []
    for text in (False, True):
        pos = [1 - answers[i][1] for i, s in enumerate(pool.samples) if i in answers and answers[i][3] == text and s.answerable]
        neg = [1 - answers[i][1] for i, s in enumerate(pool.samples) if i in answers and answers[i][3] == text and not s.answerable]
        if pos and neg:
            threshold, _ = best_threshold(pos, neg, max_afrr=max_afrr)
            chosen.append(float(np.clip(1 - threshold, 0.0, 1.0)))
        else:
            chosen.append(0.5)
    return chosen[0], chosen[1]


def predictions(pool: Pool, answers: dict, na_thresholds: tuple[float, float]) -> tuple[list[Sample], list[Prediction]]:
    samples, preds = [], []
    for i, sample in enumerate(pool.samples):
        if i not in answers:
            continue
        progress, p_na, anchor, text = answers[i]
        if p_na > na_thresholds[1 if text else 0]:
            preds.append(Prediction(Status.NA, ref_status=Status.NA))
        else:
            preds.append(Prediction(Status.VALUE, score=progress, ref_status=Status.VALUE, ref=anchor))
        samples.append(sample)
    return samples, preds


VISUAL_SPLITS = ("visual_same_view", "visual_cross_view", "visual_unanswerable")
TEXT_SPLITS = ("text", "text_unanswerable")


def evaluate_pool(matcher: Matcher, pool: Pool, config: MatcherTrainConfig) -> tuple[dict, dict, tuple[float, float]]:
    """Metrics on the pool, the selection score of each branch (visual, text), and the N/A thresholds."""
    answers = answer_pool(matcher, pool)
    chosen = thresholds(pool, answers, config.max_afrr)
    samples, preds = predictions(pool, answers, chosen)
    metrics = compute_metrics(samples, preds, bootstrap=0)
    scores = {}
    for branch, names in (("visual", VISUAL_SPLITS), ("text", TEXT_SPLITS)):
        part = {"splits": {n: metrics["splits"][n] for n in names if metrics["splits"].get(n, {}).get("n")}}
        if any(n in part["splits"] for n in ("visual_same_view", "visual_cross_view", "text")):
            scores[branch] = selection_score(part, config.na_weight_select, config.order_weight)
    return metrics, scores, chosen


def is_text_parameter(name: str) -> bool:
    """Whether a matcher parameter belongs to the text branch (selected apart from the visual one)."""
    return name.startswith(("text_", "na_text")) or name == "start"


def summary(metrics: dict) -> dict:
    s = metrics["splits"]
    keep = {"visual_same_view": ("nse", "prc_strict", "ref_acc"), "visual_cross_view": ("nse", "prc_strict", "ref_acc"),
            "text": ("nse", "prc_strict"), "visual_unanswerable": ("uda",), "text_unanswerable": ("uda",),
            "micro": ("afrr",)}  # fmt: skip
    return {f"{name}_{key}": s.get(name, {}).get(key) for name, keys in keep.items() for key in keys}


# -- the stage ----------------------------------------------------------------------------------


def load_pool_samples(patterns: Sequence[str]) -> list[Sample]:
    files = expand_files(list(patterns))
    missing = [str(f) for f in files if not f.is_file()]
    if not files or missing:
        raise MatcherTrainError(f"no benchmark files at {', '.join(missing or patterns)}; build them (progresslm sim build)")
    return [s for s in load_bench(files).samples if s.labelled]


def finished(config: MatcherTrainConfig) -> dict | None:
    """The report of a finished run of exactly this configuration in `config.out`, or None: a rerun reuses it."""
    out = Path(config.out)
    try:
        report = json.loads((out / "select.json").read_text())
    except (OSError, ValueError):
        return None
    done = report.get("config") == json.loads(json.dumps(_plain(config))) and (out / "model.safetensors").is_file()
    return report if done else None


def train_matcher(config: MatcherTrainConfig, progress: bool = True) -> dict:
    """Train, select and save the matcher into `config.out` (or reuse a finished run of the same settings);
    returns the selection report."""
    import torch  # lazy: torch (the [nano] extra)
    from tqdm.auto import tqdm

    if (report := finished(config)) is not None:
        log.info("%s: already trained with these settings; reusing it", config.out)
        return report


    out = Path(config.out)
    if config.steps < 1 or config.eval_every < 1 or config.batch_size < 8:
        raise MatcherTrainError("steps and eval_every must be positive and batch_size at least 8")
    image_root = image_root_path(config.image_root)
    train_samples, val_samples = load_pool_samples(config.train), load_pool_samples(config.val)
    left_out = set(config.exclude_tasks)
    train_samples = [s for s in train_samples if task_of(s) not in left_out]
    overlap = {task_of(s) for s in train_samples} & {task_of(s) for s in val_samples}
    if overlap:
        raise MatcherTrainError(
            f"--train and --val share tasks ({', '.join(sorted(overlap)[:5])}): selection must be on tasks training "
            "never saw; use the sft and rl pools of one simulator build"
        )
    features = Path(config.features) if config.features else out.parent / "features"
    image_store = FeatureStore(features / config.image.name, config.image.dim, config.image.name)
    text_store = FeatureStore(features / "minilm-l6", TEXT_DIM, "minilm-l6") if config.text else None
    encoders: dict = {}

    def image_encoder():
        return encoders.setdefault("image", ImageEncoder(config.image, device=config.device))

    def text_encoder():
        return encoders.setdefault("text", TextEncoder(device=config.device))

    started = time.perf_counter()
    augment = None
    if config.augment_views > 0:
        name = f"{config.image.name}-aug{config.augment_strength:g}-s{config.seed}"
        augment = (FeatureStore(features / name, config.image.dim, name), config.augment_views,
                   config.augment_strength, config.seed)  # fmt: skip
    train = build_pool(train_samples, image_root, image_store, text_store, image_encoder, text_encoder, augment)
    val = build_pool(val_samples, image_root, image_store, text_store, image_encoder, text_encoder)
    feature_seconds = time.perf_counter() - started
    if not [r for r in train.visual if not r["na"]]:
        raise MatcherTrainError("the training pool has no answerable visual sample")
    log.info("features: %d train, %d val images in %.0f s", len(train.images), len(val.images), feature_seconds)

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    matcher_config = MatcherConfig(
        image=config.image, embed_dim=config.embed_dim, text=config.text and bool(train.textual), dropout=config.dropout,
        similarity=config.similarity, readout=config.readout, demo_norm=config.demo_norm,
        order_check=config.order_check, snap_similarity=config.snap_similarity,
    )
    matcher = Matcher(matcher_config)
    views_rng = np.random.default_rng(config.seed)
    module = matcher.module
    log.info("matcher: %d parameters", sum(p.numel() for p in module.parameters()))
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(step / config.steps, 1.0)))
    )
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    log_path.write_text("")
    evaluations: list[dict] = []
    best: dict[str, dict] = {}
    kept: dict[str, dict] = {}  # branch -> parameters of its best step
    last = max(config.fixed_steps.values()) if config.fixed_steps else config.steps
    bar = tqdm(range(1, last + 1), desc="train matcher", unit="step", disable=not progress)
    for step in bar:
        module.train()
        visual_batch = sample_batch(train.visual, config.batch_size, rng, config, False, train)
        losses = batch_loss(module, visual_batch, train, config, False, views_rng)
        if matcher_config.text:
            text_batch = sample_batch(train.textual, config.batch_size // 2, rng, config, True, train)
            text_losses = batch_loss(module, text_batch, train, config, True, views_rng)
            losses.update({f"text_{k}": v for k, v in text_losses.items()})
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        for branch, at in config.fixed_steps.items():
            if step == at:
                best[branch] = {"step": step, f"score_{branch}": None}
                kept[branch] = {k: v.detach().clone() for k, v in module.state_dict().items()
                                if is_text_parameter(k) == (branch == "text")}  # fmt: skip
        if not config.fixed_steps and (step % config.eval_every == 0 or step == config.steps):
            module.eval()
            metrics, scores, chosen = evaluate_pool(matcher, val, config)
            row = {"step": step, "loss": round(float(loss.detach()), 4),
                   **{k: round(float(v.detach()), 4) for k, v in losses.items()},
                   **{f"score_{b}": v for b, v in scores.items()}, "na_threshold": round(chosen[0], 4),
                   "text_na_threshold": round(chosen[1], 4), **summary(metrics)}  # fmt: skip
            evaluations.append(row)
            with log_path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            bar.set_postfix(scores)
            for branch, score in scores.items():
                if branch not in best or score < best[branch][f"score_{branch}"]:
                    best[branch] = row
                    kept[branch] = {k: v.detach().clone() for k, v in module.state_dict().items()
                                    if is_text_parameter(k) == (branch == "text")}  # fmt: skip
    # Each branch from the step that did best on it (they share no parameters).
    state = module.state_dict()
    for params in kept.values():
        state.update(params)
    module.load_state_dict(state)
    matcher.config.made_from = {
        "train": list(config.train), "val": list(config.val), "steps": config.steps,
        "selected_step": {b: r["step"] for b, r in best.items()},
        "selection_score": {b: r[f"score_{b}"] for b, r in best.items()}, "seed": config.seed,
        "train_samples": len(train.samples), "val_samples": len(val.samples),
        "val_tasks": sorted({task_of(s) for s in val_samples}),
    }  # fmt: skip
    if config.fixed_steps:  # a cross-fitting fold: no held-out check, no thresholds of its own
        matcher.save(out)
        report = {"config": _plain(config), "best": best, "evaluations": [],
                  "feature_seconds": round(feature_seconds, 1), "seconds": round(time.perf_counter() - started, 1)}
        (out / "select.json").write_text(json.dumps(report, indent=2) + "\n")
        return report
    if config.calibrate_text and matcher.config.text:
        matcher.config.text_shrink, matcher.config.text_abstain = calibrate_text(matcher, val, config.text_abstain_afrr)
        matcher.config.made_from["text_calibration"] = {"shrink": matcher.config.text_shrink,
                                                        "abstain": matcher.config.text_abstain}
    final, scores, chosen = evaluate_pool(matcher, val, config)  # the branches are independent: same thresholds
    matcher.config.na_threshold, matcher.config.text_na_threshold = chosen
    matcher.save(out)
    best = {"step": matcher.config.made_from["selected_step"], **{f"score_{b}": v for b, v in scores.items()},
            "na_threshold": matcher.config.na_threshold, "text_na_threshold": matcher.config.text_na_threshold,
            **summary(final)}  # fmt: skip
    report = {"config": _plain(config), "best": best, "evaluations": evaluations,
              "feature_seconds": round(feature_seconds, 1), "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    (out / "select.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def text_evidence(matcher: Matcher, pool: Pool) -> list[tuple[float, float, float]]:
    """(progress as read, label, peak weight of the anchor distribution) of every answerable text row, read
    without any text calibration."""
    import torch  # lazy: torch (the [nano] extra)

    config = matcher.config
    saved = config.text_shrink, config.text_abstain
    config.text_shrink, config.text_abstain = [], None
    rows = [r for r in pool.textual if not r["na"]]
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, len(rows), 1024):
                batch = rows[start : start + 1024]
                logits, _, _, progress, _ = matcher.module.text(*text_tensors(batch, pool))
                peak = logits.softmax(-1).max(-1).values
                out.extend((float(p), float(r["progress"]), float(w)) for r, p, w in zip(batch, progress, peak))
    finally:
        config.text_shrink, config.text_abstain = saved
    return out


def calibrate_text(matcher: Matcher, pool: Pool, abstain_afrr: float = 0.0, bins: int = 4) -> tuple[list, float | None]:
    """Shrink factors toward 50 % per quantile bin of the text anchor distribution's peak weight, each the factor
    (0, 0.05, ..., 1) with the lowest mean normalised score error on `pool` (held-out tasks); and, with
    `abstain_afrr` > 0, the peak weight under which a text answer is N/A, refusing at most that share of the
    pool's answerable text rows. Weak evidence gets pulled toward the middle, where a wrong answer costs least."""
    rows = text_evidence(matcher, pool)
    if len(rows) < 4 * bins:
        return [], None
    read, label, peak = (np.array(x) for x in zip(*rows))
    edges = list(np.quantile(peak, [(b + 1) / bins for b in range(bins - 1)])) + [1.01]
    lower = -1.0
    shrink = []
    for upper in edges:
        inside = (peak >= lower) & (peak < upper)
        lower = upper
        if not inside.any():
            shrink.append([round(float(upper), 4), 1.0])
            continue
        best = min(np.linspace(0, 1, 21), key=lambda c: np.mean([nse_term(g, 0.5 + c * (r - 0.5))
                                                                  for r, g in zip(read[inside], label[inside])]))
        shrink.append([round(float(upper), 4), round(float(best), 2)])
    abstain = None
    if abstain_afrr > 0:
        abstain = round(float(np.quantile(peak, abstain_afrr)), 4)
    return shrink, abstain


def _plain(config: MatcherTrainConfig) -> dict:
    data = asdict(config)
    data["image"] = config.image.to_dict()
    return data


def train_folds(config: MatcherTrainConfig, folds: int, progress: bool = True) -> list[dict]:
    """K matchers, each trained without 1/K of the training tasks (seeded split), saved as
    OUT/folds/<k>; OUT/folds.json says which tasks each held out (`progresslm.matcher.hints.HintProvider`).

    Each fold repeats the main matcher's training (same settings and schedule) and takes each branch at the
    step the main matcher selected, without held-out checks of its own: they would cost most of the time, and
    a fold's only use is to write hints for the tasks it never saw."""
    tasks = sorted({task_of(s) for s in load_pool_samples(config.train)})
    if len(tasks) < folds:
        raise MatcherTrainError(f"--folds {folds} needs at least {folds} training tasks, found {len(tasks)}")
    random.Random(f"folds:{config.seed}").shuffle(tasks)
    out = Path(config.out)
    features = config.features or str(out.parent / "features")
    selected = json.loads((out / "config.json").read_text())["made_from"]["selected_step"]
    made = []
    for k in range(folds):
        held = sorted(tasks[k::folds])
        fold_config = MatcherTrainConfig(**{**asdict(config), "image": config.image})
        fold_config.out, fold_config.features, fold_config.exclude_tasks = str(out / "folds" / str(k)), features, held
        fold_config.fixed_steps = selected
        report = train_matcher(fold_config, progress=progress)
        made.append({"dir": f"folds/{k}", "tasks": held, "best": report["best"]})
    (out / FOLDS_FILE).write_text(json.dumps({"folds": made}, indent=2) + "\n")
    return made
