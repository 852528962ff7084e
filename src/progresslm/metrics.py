"""Benchmark metrics of docs/protocol.md §4: pure functions over aligned samples and predictions.

Every figure is a percentage (x100). None stands for "undefined" (nothing to average over), so
results serialise as JSON null and never as NaN. `samples[i]` and `preds[i]` belong together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from progresslm.types import ANSWERABLE_SPLITS, Prediction, Sample, Status

# Metrics that get a bootstrap interval, and the order splits are reported in.
CI_METRICS = ("nse", "prc", "afrr", "uda")
REPORT_SPLITS = (
    "visual_same_view", "visual_cross_view", "visual", "text",
    "visual_unanswerable", "text_unanswerable", "micro",
)  # fmt: skip
_COUNT_KEYS = ("n", "prc_groups_used", "prc_groups_skipped", "n_value", "n_na", "n_parse_failure")


@dataclass(frozen=True)
class PRCResult:
    """Progress rank correlation with its bookkeeping; `value` is None when no group is left."""

    value: float | None
    groups_used: int
    groups_skipped: int
    groups_zeroed: int = 0  # skipped groups counted as 0 (strict variant only)


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span.

    >>> average_ranks([0.3, 0.1, 0.3, 0.2]).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    a = np.asarray(values, dtype=float)
    order = np.argsort(a, kind="mergesort")
    cuts = np.flatnonzero(np.diff(a[order])) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [a.size]))
    ranks = np.empty(a.size)
    # Sorted positions start..end-1 hold ranks start+1..end, whose mean is (start+1+end)/2.
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho (Pearson correlation of average ranks); NaN when either side is constant.

    >>> spearman([1, 2, 3], [1, 3, 2]), round(spearman([0.1, 0.2, 0.2], [1, 2, 3]), 4)
    (0.5, 0.866)
    """
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(np.sqrt((rx @ rx) * (ry @ ry)))
    return float(rx @ ry) / denominator if denominator > 0 else float("nan")


def nse_term(label: float, score: float) -> float:
    """One sample's normalised score error |g - p| / max(g, 1 - g), as a fraction.

    >>> round(nse_term(0.2, 0.5), 6)  # 0.3 / 0.8
    0.375
    """
    return abs(label - score) / max(label, 1.0 - label)


@dataclass(frozen=True)
class _Table:
    """Per-sample arrays of one pool of samples, so every metric is a vectorised reduction."""

    answerable: np.ndarray
    value: np.ndarray
    na: np.ndarray
    fail: np.ndarray
    label: np.ndarray  # NaN when unanswerable
    score: np.ndarray  # NaN when the prediction has no value
    error: np.ndarray  # NSE term; NaN unless answerable with a value
    ref_known: np.ndarray  # answerable with a known anchor
    ref_value: np.ndarray  # ... and the prediction has an anchor value
    ref_hit: np.ndarray
    ref_error: np.ndarray  # NaN unless ref_value
    ref_format: bool  # some prediction's reply format carries an anchor
    cluster: np.ndarray  # index of (modality, trajectory_id)
    n_clusters: int


def _check_aligned(samples: Sequence[Sample], preds: Sequence[Prediction]) -> None:
    if len(samples) != len(preds):
        raise ValueError(
            f"metrics need one prediction per sample, got {len(samples)} samples and {len(preds)} "
            "predictions; pass the two lists aligned by position"
        )


def _table(samples: Sequence[Sample], preds: Sequence[Prediction]) -> _Table:
    _check_aligned(samples, preds)
    answerable = np.array([s.answerable for s in samples], dtype=bool)
    status = [p.status for p in preds]
    value = np.array([st is Status.VALUE for st in status], dtype=bool)
    label = np.array([np.nan if s.progress is None else s.progress for s in samples], dtype=float)
    score = np.array([p.score if p.has_value and p.score is not None else np.nan for p in preds], dtype=float)
    value &= ~np.isnan(score)
    with np.errstate(invalid="ignore"):
        error = np.abs(label - score) / np.maximum(label, 1.0 - label)
    ref_known = answerable & np.array([s.closest_idx is not None for s in samples], dtype=bool)
    ref_value = ref_known & np.array([p.ref_status is Status.VALUE and p.ref is not None for p in preds], dtype=bool)
    ref_hit = np.zeros(len(samples), dtype=bool)
    ref_error = np.full(len(samples), np.nan)
    for i in np.flatnonzero(ref_value):
        k, guess, n_items = samples[i].closest_idx, preds[i].ref, len(samples[i].demo.items)
        ref_hit[i] = guess == k
        ref_error[i] = abs(guess - k) / (max(k - 1, n_items - k) or 1)
    keys: dict[str, int] = {}  # docs/protocol.md §4: groups are keyed by the `id` field only
    cluster = np.array([keys.setdefault(s.trajectory_id, len(keys)) for s in samples], dtype=int)
    return _Table(
        answerable=answerable, value=value,
        na=np.array([st is Status.NA for st in status], dtype=bool),
        fail=np.array([st is Status.PARSE_FAILURE for st in status], dtype=bool),
        label=label, score=score, error=error, ref_known=ref_known, ref_value=ref_value,
        ref_hit=ref_hit, ref_error=ref_error, ref_format=any(p.ref_status is not None for p in preds),
        cluster=cluster, n_clusters=len(keys),
    )  # fmt: skip


def _share(mask: np.ndarray, among: np.ndarray) -> float | None:
    """100 * |mask & among| / |among|, None when `among` is empty."""
    total = int(among.sum())
    return 100.0 * int((mask & among).sum()) / total if total else None


def _nse(t: _Table) -> float | None:
    used = t.answerable & t.value
    return 100.0 * float(t.error[used].mean()) if used.any() else None


def _group_rhos(t: _Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cluster: rho (NaN where the official rule skips), whether it has answerable samples,
    and whether PRC-strict counts it (at least 2 samples, labels not all equal)."""
    rho = np.full(t.n_clusters, np.nan)
    present = np.zeros(t.n_clusters, dtype=bool)
    eligible = np.zeros(t.n_clusters, dtype=bool)
    idx = np.flatnonzero(t.answerable)
    idx = idx[np.argsort(t.cluster[idx], kind="stable")]
    for group in np.split(idx, np.flatnonzero(np.diff(t.cluster[idx])) + 1):
        if group.size == 0:
            continue
        c = t.cluster[group[0]]
        present[c] = True
        eligible[c] = group.size >= 2 and np.ptp(t.label[group]) > 0
        kept = group[t.value[group]]
        if kept.size < 2 or np.ptp(t.score[kept]) == 0 or np.ptp(t.label[kept]) == 0:
            continue
        rho[c] = spearman(t.label[kept], t.score[kept])  # stays NaN if undefined: skipped
    return rho, present, eligible


def _prc(t: _Table, strict: bool) -> PRCResult:
    rho, present, eligible = _group_rhos(t)
    used = np.isfinite(rho)
    n_used, n_skipped = int(used.sum()), int((present & ~used).sum())
    zeroed = int((present & eligible & ~used).sum()) if strict else 0
    denominator = n_used + zeroed
    value = 100.0 * float(rho[used].sum()) / denominator if denominator else None
    return PRCResult(value=value, groups_used=n_used, groups_skipped=n_skipped, groups_zeroed=zeroed)


def _ref_accuracy(t: _Table) -> float | None:
    # A reply format without an anchor (direct mode) leaves the anchor metrics undefined, not 0.
    return _share(t.ref_hit, t.ref_known) if t.ref_format else None


def _ref_error(t: _Table) -> float | None:
    return 100.0 * float(t.ref_error[t.ref_value].mean()) if t.ref_value.any() else None


def nse(samples: Sequence[Sample], preds: Sequence[Prediction]) -> float | None:
    """Normalised score error (lower is better): mean NSE term over answerable samples whose
    prediction is a value, x100; None when there is no such sample."""
    return _nse(_table(samples, preds))


def prc(samples: Sequence[Sample], preds: Sequence[Prediction], strict: bool = False) -> PRCResult:
    """Progress rank correlation (higher is better): mean per-trajectory Spearman rho, x100.

    Official rule: per trajectory, drop samples without a value; skip the group when fewer than
    2 remain, or predictions or labels are all equal. `strict=True` counts a skipped group with
    at least 2 samples and non-constant labels as 0, so abstaining or collapsing is not flattered.
    Groups are keyed by the trajectory id only (docs/protocol.md §4): both camera pairs of a cross-view
    trajectory pool together, and in `micro` so do visual and text samples of one id.
    """
    return _prc(_table(samples, preds), strict)


def afrr(samples: Sequence[Sample], preds: Sequence[Prediction]) -> float | None:
    """Answerable false rejection rate: share of answerable samples with no value (N/A or parse
    failure), x100; None without answerable samples."""
    t = _table(samples, preds)
    return _share(~t.value, t.answerable)


def uda(samples: Sequence[Sample], preds: Sequence[Prediction], lenient: bool = False) -> float | None:
    """Unanswerable detection accuracy: share of unanswerable samples answered by an explicit N/A
    (`lenient`: a parse failure counts too), x100; None without unanswerable samples."""
    t = _table(samples, preds)
    return _share(t.na | t.fail if lenient else t.na, ~t.answerable)


def ref_accuracy(samples: Sequence[Sample], preds: Sequence[Prediction]) -> float | None:
    """Share of answerable samples whose predicted anchor equals `closest_idx`, x100. A missing
    anchor counts as wrong; None without answerable samples or when no reply carries an anchor."""
    return _ref_accuracy(_table(samples, preds))


def ref_error(samples: Sequence[Sample], preds: Sequence[Prediction]) -> float | None:
    """Mean |k^ - k| / max(k - 1, N - k) over answerable samples with a predicted anchor, x100
    (N = number of demo items; a zero denominator counts as 1)."""
    return _ref_error(_table(samples, preds))


def _collapse(t: _Table, bins: int) -> dict:
    if bins < 1:
        raise ValueError(f"collapse needs at least 1 histogram bin, got bins={bins}")
    values = t.score[t.value]
    counts, edges = np.histogram(np.clip(values, 0.0, 1.0), bins=bins, range=(0.0, 1.0))

    def at(x: float) -> float | None:
        return 100.0 * int((np.abs(values - x) < 1e-9).sum()) / values.size if values.size else None

    return {
        "bins": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts],
        "share_at_0": at(0.0), "share_at_50": at(0.5), "share_at_100": at(1.0),
        "n_values": int(values.size), "n_na": int(t.na.sum()), "n_fail": int(t.fail.sum()),
    }  # fmt: skip


def collapse(samples: Sequence[Sample], preds: Sequence[Prediction], bins: int = 10) -> dict:
    """Score-collapse diagnostics: histogram of predicted values over [0, 1] (`bins` edges and
    counts), shares (x100) of values exactly at 0, 0.5 and 1, and the counts of values, N/As
    and parse failures."""
    return _collapse(_table(samples, preds), bins)


def _split_row(t: _Table) -> dict:
    official, strict = _prc(t, strict=False), _prc(t, strict=True)
    shape = _collapse(t, bins=10)
    return {
        "n": int(t.answerable.size), "nse": _nse(t), "prc": official.value, "prc_strict": strict.value,
        "afrr": _share(~t.value, t.answerable), "uda": _share(t.na, ~t.answerable),
        "uda_lenient": _share(t.na | t.fail, ~t.answerable),
        "ref_acc": _ref_accuracy(t), "ref_error": _ref_error(t),
        "prc_groups_used": official.groups_used, "prc_groups_skipped": official.groups_skipped,
        "n_value": shape["n_values"], "n_na": shape["n_na"], "n_parse_failure": shape["n_fail"],
        "share_at_0": shape["share_at_0"], "share_at_50": shape["share_at_50"],
        "share_at_100": shape["share_at_100"],
    }  # fmt: skip


def _rounded(x: object) -> object:
    """Floats rounded to 4 decimals, recursively through dicts and lists."""
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return round(x, 4) if isinstance(x, float) else x


def split_metrics(samples: Sequence[Sample], preds: Sequence[Prediction]) -> dict:
    """Every metric of one pool of samples in one flat dict (floats rounded to 4 decimals).

    Answerable metrics read the answerable samples of the pool, UDA the unanswerable ones, so
    each is None where the pool has none of the kind it needs.
    """
    return _rounded(_split_row(_table(samples, preds)))


def _bootstrap(t: _Table, rounds: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Replicates (x100, NaN when undefined) of each CI metric, resampling trajectories.

    Each metric is a ratio of per-trajectory sums, so one weight matrix (how often each
    trajectory is drawn in each round) turns every round into two matrix products.
    """
    c = t.n_clusters
    draws = rng.integers(0, c, size=(rounds, c)) + c * np.arange(rounds)[:, None]
    weights = np.bincount(draws.ravel(), minlength=rounds * c).reshape(rounds, c).astype(float)

    def per_cluster(x: np.ndarray) -> np.ndarray:
        return np.bincount(t.cluster, weights=x.astype(float), minlength=c)

    rho = _group_rhos(t)[0]
    used = t.answerable & t.value
    parts = {
        "nse": (per_cluster(np.where(used, t.error, 0.0)), per_cluster(used)),
        "prc": (np.nan_to_num(rho), np.isfinite(rho).astype(float)),
        "afrr": (per_cluster(t.answerable & ~t.value), per_cluster(t.answerable)),
        "uda": (per_cluster(~t.answerable & t.na), per_cluster(~t.answerable)),
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        return {name: 100.0 * (weights @ num) / (weights @ den) for name, (num, den) in parts.items()}


def mean_interval(values: Sequence[float], clusters: Sequence[str], rounds: int = 1000, seed: int = 0,
                  confidence: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of the mean of per-sample `values`, resampling whole clusters (trajectories:
    samples of one trajectory are not independent), as the split metrics' intervals do. None with one cluster.

    >>> mean_interval([1.0, 1.0, 3.0, 3.0], ["a", "a", "b", "b"], rounds=200)
    [1.0, 3.0]
    """
    index = {cluster: k for k, cluster in enumerate(dict.fromkeys(clusters))}
    if len(index) < 2:
        return None
    cluster = np.array([index[c] for c in clusters])
    sums = np.bincount(cluster, weights=np.asarray(values, dtype=float), minlength=len(index))
    counts = np.bincount(cluster, minlength=len(index)).astype(float)
    draws = np.random.default_rng(seed).integers(0, len(index), size=(rounds, len(index)))
    return _interval(sums[draws].sum(axis=1) / counts[draws].sum(axis=1), confidence)


def _interval(replicates: np.ndarray, confidence: float) -> list[float] | None:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return None
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return [float(low), float(high)]


def _macro(visual: dict, text: dict, unanswerable: tuple[dict, dict] | None = None) -> dict:
    """Mean of the visual and the text figure; None where either is undefined; counts summed.
    UDA figures are the mean of the visual and text unanswerable splits when both exist."""
    row = {}
    for key, a in visual.items():
        b = text[key]
        if key in ("uda", "uda_lenient"):
            a, b = (unanswerable[0][key], unanswerable[1][key]) if unanswerable else (None, None)
        if key in _COUNT_KEYS:
            row[key] = a + b
        else:
            row[key] = None if a is None or b is None else (a + b) / 2.0
    return row


def compute_metrics(
    samples: Sequence[Sample],
    preds: Sequence[Prediction],
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """The metrics.json contract: `{"splits": {name: row + "ci"}, "collapse": {name: histogram}}`.

    Splits are those of REPORT_SPLITS that hold a sample, plus `macro` when both `visual` and
    `text` do. `micro` pools every sample: its answerable metrics read all answerable samples,
    its UDA all unanswerable ones. Intervals are percentile bootstraps over trajectories within
    the split (`bootstrap` rounds; None when the metric is undefined or `bootstrap` is 0).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be a number of rounds >= 0, got {bootstrap}")
    _check_aligned(samples, preds)
    members: dict[str, list[int]] = {name: [] for name in REPORT_SPLITS}
    for i, sample in enumerate(samples):
        members[sample.split].append(i)
        members["micro"].append(i)
    members["visual"] = sorted(members["visual_same_view"] + members["visual_cross_view"])

    rows: dict[str, dict] = {}
    replicates: dict[str, dict[str, np.ndarray]] = {}
    histograms: dict[str, dict] = {}
    for k, name in enumerate(REPORT_SPLITS):
        if not members[name]:
            continue
        t = _table([samples[i] for i in members[name]], [preds[i] for i in members[name]])
        rows[name] = _split_row(t)
        histograms[name] = _collapse(t, bins=10)
        if bootstrap:
            # One generator per split, so a split's interval does not depend on which others exist.
            replicates[name] = _bootstrap(t, bootstrap, np.random.default_rng([seed, k]))
    if "visual" in rows and "text" in rows:
        both_na = ("visual_unanswerable" in rows and "text_unanswerable" in rows) or None
        rows["macro"] = _macro(
            rows["visual"], rows["text"], both_na and (rows["visual_unanswerable"], rows["text_unanswerable"])
        )
        if bootstrap:
            replicates["macro"] = {m: (replicates["visual"][m] + replicates["text"][m]) / 2.0 for m in CI_METRICS}
            if both_na:
                replicates["macro"]["uda"] = (
                    replicates["visual_unanswerable"]["uda"] + replicates["text_unanswerable"]["uda"]
                ) / 2.0

    for name, row in rows.items():
        row["ci"] = {
            m: _interval(replicates[name][m], confidence) if bootstrap and row[m] is not None else None
            for m in CI_METRICS
        }
    return _rounded({"splits": rows, "collapse": histograms})


def selection_score(metrics: dict, na_weight: float = 0.5, order_weight: float = 0.0) -> float:
    """Mean NSE over the answerable splits plus `na_weight` x the share of wrong N/A calls (percent),
    plus `order_weight` x (100 - mean PRC-strict over the answerable splits). A split with samples but
    no usable answer (every reply unparseable) counts as 100 on NSE and wrong calls, 0 on PRC-strict.

    NSE alone rewards hedging: a checkpoint that gives every observation of a trajectory the same
    answer near its mean can score best while reading nothing from the frames (it happened to nano:
    step 330 of a run, constant per trajectory, NSE 33.5, beat step 660, same-view PRC 86.6, NSE 34.8).
    `order_weight` > 0 makes frame order count (PRC-strict counts a constant trajectory as 0).

    >>> m = {"splits": {"visual_same_view": {"n": 10, "nse": 20.0, "afrr": 10.0},
    ...                 "visual_unanswerable": {"n": 10, "uda": 60.0}}}
    >>> selection_score(m)  # 20 + 0.5 * (10 + 40) / 2
    32.5
    >>> m["splits"]["visual_same_view"]["prc_strict"] = 80.0
    >>> selection_score(m, order_weight=0.25)  # 32.5 + 0.25 * (100 - 80)
    37.5
    """
    splits = metrics["splits"]
    present = {name: s for name, s in splits.items() if s.get("n")}
    answerable = [present[name] for name in ANSWERABLE_SPLITS if name in present]
    if not answerable:
        raise ValueError("no answerable split with samples in these metrics")
    nse = [100.0 if s.get("nse") is None else s["nse"] for s in answerable]
    wrong = [100.0 if s.get("afrr") is None else s["afrr"] for s in answerable]
    wrong += [
        100.0 if s.get("uda") is None else 100.0 - s["uda"] for name, s in present.items() if name.endswith("_unanswerable")
    ]
    order = [s.get("prc_strict") or 0.0 for s in answerable]
    disorder = 100.0 - sum(order) / len(order)
    return round(sum(nse) / len(nse) + na_weight * sum(wrong) / len(wrong) + order_weight * disorder, 3)
