"""Metrics against hand-computed values (docs/protocol.md §4); the arithmetic is written beside each."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from progresslm.metrics import (
    CI_METRICS,
    PRCResult,
    afrr,
    average_ranks,
    collapse,
    compute_metrics,
    nse,
    prc,
    ref_accuracy,
    ref_error,
    spearman,
    split_metrics,
    uda,
)
from progresslm.types import Demo, Modality, Prediction, Sample, Status, View

_uid = itertools.count()


def visual(traj: str, progress: float | None, closest: int | None = 1, view: View = View.SAME, n_items: int = 5):
    """A visual-demo sample with `n_items` keyframes (T = n_items - 1)."""
    demo = Demo(Modality.VISUAL, items=tuple(f"{i}.jpg" for i in range(n_items)), total_steps=n_items - 1)
    return Sample(
        uid=f"s{next(_uid)}", trajectory_id=traj, goal="stack the cups", demo=demo, observation="o.jpg",
        progress=progress, closest_idx=closest if progress is not None else None, view=view,
    )  # fmt: skip


def text(traj: str, progress: float | None, closest: int | None = 1, n_items: int = 4):
    """A text-demo sample with `n_items` steps (T = n_items)."""
    demo = Demo(Modality.TEXT, items=tuple(f"step {i}" for i in range(n_items)), total_steps=n_items)
    return Sample(
        uid=f"s{next(_uid)}", trajectory_id=traj, goal="stack the cups", demo=demo, observation="o.jpg",
        progress=progress, closest_idx=closest if progress is not None else None,
    )  # fmt: skip


def val(score: float, ref: int | None = None) -> Prediction:
    return Prediction(Status.VALUE, score=score, ref_status=None if ref is None else Status.VALUE, ref=ref)


NA = Prediction(Status.NA)
FAIL = Prediction(Status.PARSE_FAILURE)


# --- ranks --------------------------------------------------------------------------------------


def test_average_ranks_share_ties():
    # sorted: 1(1) 2(2) 2(3) 2(4) 5(5) -> the three 2s share (2+3+4)/3 = 3
    assert average_ranks([2, 5, 2, 1, 2]).tolist() == [3.0, 5.0, 3.0, 1.0, 3.0]


def test_spearman_with_ties_matches_hand_value():
    # ranks x = [1, 2, 3, 4], y = [1, 2.5, 2.5, 4]; centred: [-1.5, -.5, .5, 1.5], [-1.5, 0, 0, 1.5]
    # dot = 2.25 + 2.25 = 4.5; |x|^2 = 5, |y|^2 = 4.5; rho = 4.5 / sqrt(22.5) = 0.9486833
    assert spearman([0.1, 0.2, 0.3, 0.4], [0.1, 0.3, 0.3, 0.5]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))


# --- NSE ----------------------------------------------------------------------------------------


def test_nse_single_sample():
    # |0.2 - 0.5| / max(0.2, 0.8) = 0.3 / 0.8 = 0.375 -> 37.5
    assert nse([visual("t", 0.2)], [val(0.5)]) == pytest.approx(37.5)


def test_nse_mean_over_answerable_values_only():
    samples = [visual("t", 0.2), visual("t", 0.7), visual("t", 0.5), visual("u", None)]
    preds = [val(0.5), val(0.6), NA, val(0.9)]
    # 0.375 and |0.7 - 0.6| / 0.7 = 0.142857; the N/A and the unanswerable sample are left out
    assert nse(samples, preds) == pytest.approx(100 * (0.375 + 0.1 / 0.7) / 2)


def test_nse_none_without_values():
    assert nse([visual("t", 0.3), visual("u", None)], [FAIL, val(0.1)]) is None
    assert nse([], []) is None


def test_misaligned_inputs_raise():
    with pytest.raises(ValueError, match="one prediction per sample"):
        nse([visual("t", 0.2)], [])


# --- PRC ----------------------------------------------------------------------------------------


def _prc_fixture():
    """Two usable groups (A with ties, B reversed) and four the official rule skips."""
    groups = {
        "A": ([0.1, 0.2, 0.3, 0.4], [val(0.1), val(0.3), val(0.3), val(0.5)]),  # rho = 0.9486833
        "B": ([0.2, 0.5, 0.8], [val(0.9), val(0.5), val(0.1)]),  # rho = -1
        "C": ([0.1, 0.9], [val(0.5), val(0.5)]),  # constant predictions -> skipped (strict: 0)
        "D": ([0.3, 0.3], [val(0.1), val(0.2)]),  # constant labels -> skipped (strict: skipped too)
        "E": ([0.1, 0.9], [val(0.4), NA]),  # one value left -> skipped (strict: 0)
        "F": ([0.5], [val(0.5)]),  # single sample -> skipped (strict: skipped too)
    }
    samples, preds = [], []
    for traj, (labels, group_preds) in groups.items():
        samples += [visual(traj, g) for g in labels]
        preds += group_preds
    return samples, preds


def test_prc_official_rule_with_ties_and_skips():
    samples, preds = _prc_fixture()
    result = prc(samples, preds)
    # mean over A and B: (0.9486833 - 1) / 2 = -0.0256584 -> -2.56584
    assert result.value == pytest.approx(100 * (4.5 / math.sqrt(22.5) - 1) / 2)
    assert (result.groups_used, result.groups_skipped, result.groups_zeroed) == (2, 4, 0)


def test_prc_strict_counts_skipped_groups_as_zero():
    samples, preds = _prc_fixture()
    result = prc(samples, preds, strict=True)
    # C and E count as 0 (>= 2 samples, labels vary); D (constant labels) and F (one sample) do not:
    # (0.9486833 - 1 + 0 + 0) / 4 = -0.0128292 -> -1.28292
    assert result.value == pytest.approx(100 * (4.5 / math.sqrt(22.5) - 1) / 4)
    assert (result.groups_used, result.groups_skipped, result.groups_zeroed) == (2, 4, 2)


def test_prc_none_when_no_group_left():
    samples = [visual("a", 0.1), visual("a", 0.9), visual("b", 0.4)]
    preds = [val(0.5), val(0.5), val(0.2)]  # a: collapsed predictions, b: one sample
    assert prc(samples, preds) == PRCResult(value=None, groups_used=0, groups_skipped=2)
    # strict: group a counts as 0, so a collapsed model scores 0 rather than nothing
    assert prc(samples, preds, strict=True).value == 0.0
    assert prc([], []).value is None


def test_prc_pools_both_views_of_one_trajectory():
    samples = [visual("t", 0.2), visual("t", 0.6), visual("t", 0.4, view=View.CROSS), visual("t", 0.8, view=View.CROSS)]
    preds = [val(0.1), val(0.5), val(0.3), val(0.9)]  # monotone in the label -> rho = 1
    result = prc(samples, preds)
    assert (result.value, result.groups_used) == (100.0, 1)


# --- AFRR, UDA ----------------------------------------------------------------------------------


def test_afrr_counts_na_and_parse_failure():
    samples = [visual("t", 0.1), visual("t", 0.2), visual("t", 0.3), visual("t", 0.4), visual("u", None)]
    preds = [val(0.1), NA, FAIL, val(0.4), NA]
    # 2 of the 4 answerable samples have no value -> 50; the unanswerable sample is not counted
    assert afrr(samples, preds) == 50.0
    assert afrr([visual("u", None)], [NA]) is None


def test_uda_strict_and_lenient():
    samples = [visual("u", None), visual("u", None), text("v", None), text("v", None), visual("t", 0.5)]
    preds = [NA, NA, FAIL, val(0.3), NA]
    # strict: 2 N/A of 4 unanswerable -> 50; lenient also counts the parse failure: 3 / 4 -> 75
    assert uda(samples, preds) == 50.0
    assert uda(samples, preds, lenient=True) == 75.0
    assert uda([visual("t", 0.5)], [NA]) is None


# --- anchors ------------------------------------------------------------------------------------


def test_ref_accuracy_and_error():
    # 5 keyframes, so N = 5 and the denominator is max(k - 1, 5 - k)
    samples = [visual("t", 0.25, 2), visual("t", 0.25, 2), visual("t", 0.5, 3), visual("t", 0.75, 4)]
    preds = [
        val(0.25, ref=2),  # hit: |2 - 2| / max(1, 3) = 0
        val(0.9, ref=5),  # |5 - 2| / max(1, 3) = 1
        val(0.6, ref=4),  # |4 - 3| / max(2, 2) = 0.5
        Prediction(Status.VALUE, score=0.7, ref_status=Status.PARSE_FAILURE),  # no anchor: wrong, no error term
    ]
    assert ref_accuracy(samples, preds) == 25.0  # 1 of 4
    assert ref_error(samples, preds) == pytest.approx(50.0)  # (0 + 1 + 0.5) / 3


def test_ref_error_guards_zero_denominator():
    # one demo item and k = 1: max(0, 0) = 0 is taken as 1, so |2 - 1| / 1 -> 100
    assert ref_error([text("t", 1.0, closest=1, n_items=1)], [val(1.0, ref=2)]) == 100.0


def test_ref_metrics_undefined_in_direct_mode():
    # direct replies carry no anchor at all (ref_status None): undefined, not 0
    samples = [visual("t", 0.25, 2)]
    assert ref_accuracy(samples, [val(0.3)]) is None
    assert ref_error(samples, [val(0.3)]) is None


# --- collapse -----------------------------------------------------------------------------------


def test_collapse_histogram_and_shares():
    samples = [visual("t", 0.5)] * 7
    preds = [val(0.0), val(0.5), val(0.5), val(1.0), val(0.25), NA, FAIL]
    out = collapse(samples, preds, bins=4)
    assert out["bins"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # 0 -> [0, .25); 0.25 -> [.25, .5); 0.5, 0.5 -> [.5, .75); 1.0 -> last bin (closed)
    assert out["counts"] == [1, 1, 2, 1]
    # of 5 values: one at 0 (20), two at 0.5 (40), one at 1 (20)
    assert (out["share_at_0"], out["share_at_50"], out["share_at_100"]) == (20.0, 40.0, 20.0)
    assert (out["n_values"], out["n_na"], out["n_fail"]) == (5, 1, 1)


def test_split_metrics_keys_and_values():
    samples = [visual("t", 0.2), visual("t", 0.6), visual("t", 1.0)]
    preds = [val(0.5), val(0.5), NA]
    row = split_metrics(samples, preds)
    assert set(row) == {
        "n", "nse", "prc", "prc_strict", "afrr", "uda", "uda_lenient", "ref_acc", "ref_error",
        "prc_groups_used", "prc_groups_skipped", "n_value", "n_na", "n_parse_failure",
        "share_at_0", "share_at_50", "share_at_100",
    }  # fmt: skip
    # nse: (0.3/0.8 + 0.1/0.6) / 2 = (0.375 + 0.1666667) / 2 = 0.2708333 -> 27.0833
    assert row["nse"] == 27.0833
    # afrr 1/3 -> 33.3333; the one group has constant predictions: skipped; strict counts it as 0
    assert (row["afrr"], row["prc"], row["prc_strict"]) == (33.3333, None, 0.0)
    assert (row["prc_groups_used"], row["prc_groups_skipped"]) == (0, 1)
    assert (row["n"], row["n_value"], row["n_na"], row["share_at_50"], row["uda"]) == (3, 2, 1, 100.0, None)


# --- compute_metrics ----------------------------------------------------------------------------


def _benchmark():
    samples = [
        visual("v1", 0.2), visual("v1", 0.6),  # same view, errors 0.375 and |0.6 - 0.5| / 0.6
        visual("v1", 0.4, view=View.CROSS),  # cross view, error |0.4 - 0.4| = 0
        text("t1", 0.5), text("t1", 1.0),  # errors |0.5 - 0.25| / 0.5 = 0.5, and N/A
        visual("u1", None), text("u2", None), text("u3", None),
    ]  # fmt: skip
    preds = [val(0.5), val(0.5), val(0.4), val(0.25), NA, NA, FAIL, NA]
    return samples, preds


def test_compute_metrics_split_membership():
    out = compute_metrics(*_benchmark(), bootstrap=0)
    splits = out["splits"]
    assert list(splits) == [
        "visual_same_view", "visual_cross_view", "visual", "text",
        "visual_unanswerable", "text_unanswerable", "micro", "macro",
    ]  # fmt: skip
    assert [splits[k]["n"] for k in ("visual_same_view", "visual_cross_view", "visual", "text")] == [2, 1, 3, 2]
    assert (splits["visual_unanswerable"]["n"], splits["text_unanswerable"]["n"], splits["micro"]["n"]) == (1, 2, 8)
    # visual pools both views of trajectory v1: labels [.2, .6, .4], preds [.5, .5, .4]
    # ranks [1, 3, 2] vs [2.5, 2.5, 1]; centred [-1, 1, 0], [.5, .5, -1]: dot 0, so rho = 0
    assert splits["visual"]["prc"] == 0.0 and splits["visual"]["prc_groups_used"] == 1
    # unanswerable splits: only UDA; answerable splits: no UDA
    for name in ("visual_unanswerable", "text_unanswerable"):
        assert all(splits[name][k] is None for k in ("nse", "prc", "afrr", "ref_acc", "ref_error"))
    assert splits["visual_unanswerable"]["uda"] == 100.0
    assert (splits["text_unanswerable"]["uda"], splits["text_unanswerable"]["uda_lenient"]) == (50.0, 100.0)
    assert all(splits[name]["uda"] is None for name in ("visual_same_view", "visual_cross_view", "visual", "text"))
    # micro pools every unanswerable sample for UDA: 2 N/A of 3 -> 66.6667
    assert splits["micro"]["uda"] == 66.6667
    assert set(out["collapse"]) == set(splits) - {"macro"}


def test_compute_metrics_macro_is_mean_of_visual_and_text():
    splits = compute_metrics(*_benchmark(), bootstrap=0)["splits"]
    # visual nse: (0.375 + 0.1/0.6 + 0) / 3 = 0.1805556 -> 18.0556; text nse: 0.5 -> 50
    assert splits["visual"]["nse"] == 18.0556
    assert splits["text"]["nse"] == 50.0
    assert splits["macro"]["nse"] == pytest.approx((18.0555556 + 50.0) / 2, abs=1e-4)  # 34.0278
    # afrr: visual 0, text 50 -> macro 25; micro pools 5 answerable samples, 1 without a value -> 20
    assert (splits["macro"]["afrr"], splits["micro"]["afrr"]) == (25.0, 20.0)
    # text has no usable PRC group (one value left), so macro PRC is undefined
    assert (splits["text"]["prc"], splits["macro"]["prc"]) == (None, None)
    # macro UDA: mean of visual unanswerable (100) and text unanswerable (50; lenient 100)
    assert (splits["macro"]["uda"], splits["macro"]["uda_lenient"]) == (75.0, 100.0)
    assert splits["macro"]["n"] == 5


def test_macro_only_with_both_modalities():
    out = compute_metrics([visual("t", 0.2)], [val(0.5)], bootstrap=0)
    assert list(out["splits"]) == ["visual_same_view", "visual", "micro"]


def _many_trajectories(n_traj: int = 40, per_traj: int = 5, seed: int = 1):
    rng = np.random.default_rng(seed)
    samples, preds = [], []
    for j in range(n_traj):
        make = visual if j % 2 else text
        for i in range(per_traj):
            g = (i + 1) / (per_traj + 1)
            samples.append(make(f"traj{j}", g))
            roll = rng.random()
            preds.append(NA if roll < 0.1 else val(float(np.clip(g + rng.normal(0, 0.15), 0, 1))))
        samples.append(make(f"traj{j}", None))
        preds.append(NA if rng.random() < 0.6 else val(0.5))
    return samples, preds


def test_bootstrap_intervals_contain_estimate_and_are_reproducible():
    samples, preds = _many_trajectories()
    out = compute_metrics(samples, preds, bootstrap=300, seed=3)
    for name in ("visual", "text", "micro", "macro"):
        row = out["splits"][name]
        for metric in ("nse", "prc", "afrr"):
            low, high = row["ci"][metric]
            assert low <= row[metric] <= high, (name, metric)
    assert out["splits"]["visual"]["ci"]["uda"] is None  # undefined in an answerable split
    assert out["splits"]["visual_unanswerable"]["ci"]["nse"] is None
    low, high = out["splits"]["visual_unanswerable"]["ci"]["uda"]
    assert low <= out["splits"]["visual_unanswerable"]["uda"] <= high
    assert compute_metrics(samples, preds, bootstrap=300, seed=3) == out


def test_no_bootstrap_gives_no_intervals():
    out = compute_metrics(*_many_trajectories(n_traj=4), bootstrap=0)
    assert all(row["ci"] == dict.fromkeys(CI_METRICS) for row in out["splits"].values())


def test_output_is_strict_json():
    samples, preds = _many_trajectories(n_traj=6)
    samples += [visual("lonely", 0.3)]  # a group PRC skips, to make sure no NaN leaks
    preds += [FAIL]
    text_out = json.dumps(compute_metrics(samples, preds, bootstrap=50), allow_nan=False)
    assert json.loads(text_out)["splits"]["micro"]["n"] == len(samples)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="confidence"):
        compute_metrics([], [], confidence=1.5)
    with pytest.raises(ValueError, match="bins"):
        collapse([], [], bins=0)
    assert compute_metrics([], []) == {"splits": {}, "collapse": {}}


def test_micro_prc_groups_by_id_only():
    # docs/protocol.md §4: group by the `id` field only, so visual and text samples of one id pool in micro.
    # visual labels [.2, .6] preds [.5, .5]; text labels [.4, .8] preds [.1, .9], all one id.
    # pooled labels [.2, .6, .4, .8] -> ranks [1, 3, 2, 4]; preds [.5, .5, .1, .9] -> ranks [2.5, 2.5, 1, 4]
    # centred [-1.5, .5, -.5, 1.5] and [0, 0, -1.5, 1.5]: dot 3, norms sqrt(5) and sqrt(4.5) -> rho 0.6325
    samples = [visual("t", 0.2), visual("t", 0.6), text("t", 0.4), text("t", 0.8)]
    preds = [val(0.5), val(0.5), val(0.1), val(0.9)]
    micro = compute_metrics(samples, preds, bootstrap=0)["splits"]["micro"]
    assert micro["prc"] == pytest.approx(63.2456, abs=1e-3) and micro["prc_groups_used"] == 1
