"""The matcher's out-of-domain settings (issue 27): the local readout, the keyframe check, features in the
demonstration's own statistics, the order check, text calibration, image augmentation and the training rows
that use them. Each setting defaults to the old behaviour, which the tests check as well."""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from progresslm.matcher.augmentation import augment_image, view_seed  # noqa: E402
from progresslm.matcher.configuration_matcher import MatcherConfig  # noqa: E402
from progresslm.matcher.encoders import ImageSpec, Tap  # noqa: E402
from progresslm.matcher.modeling_matcher import Matcher, _place, shrink_text  # noqa: E402
from progresslm.matcher.training_matcher import (  # noqa: E402
    MatcherTrainConfig,
    Pool,
    _views,
    batch_loss,
    calibrate_text,
    sample_batch,
)

SPEC = ImageSpec(size=32, taps=(Tap(0, 2), Tap(7, 1)))  # 64 cell numbers + a 1280-d global part


def _features(rng, n):
    return rng.normal(size=(n, SPEC.dim)).astype(np.float32)


def test_the_local_readout_is_not_pulled_toward_the_middle_by_far_keyframes():
    # The observation is keyframe 0; the other keyframes are less alike but not unlike: the expected position over
    # all of them drifts toward the middle, the local one stays by keyframe 0.
    sims = torch.tensor([[1.0, 0.8, 0.75, 0.75, 0.75]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    points = torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]])
    _, _, expected = _place(sims, mask, points, torch.tensor(10.0))
    _, _, local = _place(sims, mask, points, torch.tensor(10.0), "local")
    assert float(expected) > 0.15 and float(local) < 0.05, (float(expected), float(local))


@pytest.mark.parametrize("readout", ["expected", "local"])
def test_an_observation_that_is_a_keyframe_reads_its_progress_with_the_keyframe_check(readout):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    keys = _features(rng, 5)
    points = [0.0, 0.3, 0.5, 0.8, 1.0]
    config = MatcherConfig(image=SPEC, embed_dim=32, cell_dim=8, text=False, readout=readout, snap_similarity=0.999)
    matcher = Matcher(config)
    for k, point in enumerate(points):
        result = matcher.match_visual(keys[k], keys, points)
        assert abs(result.progress - point) < 1e-6 and not result.na and result.anchor == k + 1
    # An observation that is none of them is answered by the model as before.
    other = _features(rng, 1)[0]
    plain = Matcher(MatcherConfig(image=SPEC, embed_dim=32, cell_dim=8, text=False, readout=readout), matcher.module)
    assert matcher.match_visual(other, keys, points) == plain.match_visual(other, keys, points)


def test_without_the_check_an_untrained_matcher_misreads_its_own_keyframes():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    keys = _features(rng, 1) + 0.3 * _features(rng, 5)  # one scene: the keyframes are alike
    points = [0.0, 0.25, 0.5, 0.75, 1.0]
    matcher = Matcher(MatcherConfig(image=SPEC, embed_dim=32, cell_dim=8, text=False))
    errors = [abs(matcher.match_visual(keys[k], keys, points).progress - p) for k, p in enumerate(points)]
    assert max(errors) > 0.05  # what the check is for


def test_demo_statistics_make_the_comparison_blind_to_a_worlds_offset_and_contrast():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    obs, keys = _features(rng, 1), _features(rng, 4)[None]
    offset = rng.normal(0, 3, SPEC.dim).astype(np.float32)  # what every image of another world shares
    scale = np.float32(2.5)  # and its overall contrast
    mask = torch.ones(1, 4, dtype=torch.bool)
    points = torch.tensor([[0.0, 1 / 3, 2 / 3, 1.0]])

    def sims(config, module, shift):
        o, k = (obs * scale + offset, keys * scale + offset) if shift else (obs, keys)
        module.eval()
        with torch.inference_mode():
            return module.visual(torch.from_numpy(o), torch.from_numpy(k), mask, points)[1]

    normed = Matcher(MatcherConfig(image=SPEC, embed_dim=32, cell_dim=8, text=False, demo_norm=True, order_check=True))
    assert torch.allclose(sims(None, normed.module, False), sims(None, normed.module, True), atol=1e-4)
    plain = Matcher(MatcherConfig(image=SPEC, embed_dim=32, cell_dim=8, text=False))
    assert not torch.allclose(sims(None, plain.module, False), sims(None, plain.module, True), atol=1e-2)


def test_an_old_config_answers_as_before_and_a_bad_readout_is_named():
    old = MatcherConfig(image=SPEC).to_dict()
    for key in ("readout", "snap_similarity", "demo_norm", "order_check", "text_shrink", "text_abstain"):
        old.pop(key)
    config = MatcherConfig.from_dict(old)
    assert (config.readout, config.snap_similarity, config.demo_norm, config.order_check) == ("expected", None, False, False)
    assert config.text_shrink == [] and config.text_abstain is None
    with pytest.raises(ValueError, match="readout 'nearest' is not one of expected, local"):
        MatcherConfig.from_dict(dict(old, readout="nearest"))


def test_text_shrink_pulls_weak_evidence_toward_the_middle():
    progress = torch.tensor([0.9, 0.9, 0.1])
    peak = torch.tensor([0.2, 0.9, 0.3])
    bins = [[0.5, 0.0], [1.01, 1.0]]
    assert torch.allclose(shrink_text(progress, peak, bins), torch.tensor([0.5, 0.9, 0.5]))
    assert torch.equal(shrink_text(progress, peak, []), progress)


def _text_pool(rng, n=200):
    """Text rows whose step vectors carry the answer for half the observations and nothing for the rest."""
    images, texts, rows = [], [], []
    steps = rng.normal(size=(3, 384)).astype(np.float32)
    texts.extend(list(steps))
    goal = len(texts)
    texts.append(rng.normal(size=384).astype(np.float32))
    for i in range(n):
        p = float(rng.uniform())
        images.append(rng.normal(size=SPEC.dim).astype(np.float32))
        rows.append({"obs": i, "steps": [0, 1, 2], "goal": goal, "total": 3, "na": False, "task": "t", "demo_task": "t",
                     "i": i, "progress": p, "anchor": int(round(p * 3)), "family": "metaworld"})  # fmt: skip
    return Pool([], np.asarray(images), np.asarray(texts), [], rows)


def test_text_calibration_on_an_untrained_branch_shrinks_toward_the_middle_and_can_abstain():
    torch.manual_seed(0)
    pool = _text_pool(np.random.default_rng(2))
    matcher = Matcher(MatcherConfig(image=SPEC, embed_dim=32, cell_dim=8))
    shrink, abstain = calibrate_text(matcher, pool, abstain_afrr=0.1)
    # An untrained text branch reads noise: every bin's best factor is near 0 (answer the middle).
    assert len(shrink) == 4 and all(factor <= 0.3 for _, factor in shrink), shrink
    assert abstain is not None and 0 < abstain < 1
    matcher.config.text_shrink, matcher.config.text_abstain = shrink, abstain
    from progresslm.matcher.training_matcher import answer_pool

    answers = answer_pool(matcher, pool)
    refused = np.mean([answers[r["i"]][1] > 0.99 for r in pool.textual])
    assert 0.05 <= refused <= 0.15, refused


def test_augmented_copies_are_seeded_and_differ_from_the_image():
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    a = augment_image(image, np.random.default_rng(view_seed("x.jpg", 0, 0)), 1.0)
    b = augment_image(image, np.random.default_rng(view_seed("x.jpg", 0, 0)), 1.0)
    c = augment_image(image, np.random.default_rng(view_seed("x.jpg", 1, 0)), 1.0)
    assert a.size == image.size and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c)) and not np.array_equal(np.asarray(a), np.asarray(image))
    with pytest.raises(ValueError, match="strength must be in"):
        augment_image(image, np.random.default_rng(0), 0.0)


def _visual_pool(rng, families=("metaworld",)):
    images, rows = [], []
    for f, family in enumerate(families):
        for t in range(3):
            keys = list(range(len(images), len(images) + 4))
            images.extend(_features(rng, 4) + f * 5)
            for _ in range(5):
                p = float(rng.uniform())
                images.append(_features(rng, 1)[0] + f * 5)
                rows.append({"obs": len(images) - 1, "keys": keys, "points": [0, 1 / 3, 2 / 3, 1], "na": False,
                             "task": f"{family}{t}", "demo_task": f"{family}{t}", "i": len(rows), "progress": p,
                             "anchor": int(round(p * 3)), "family": family})  # fmt: skip
    n = len(images)
    views = (n + np.arange(2 * n)).reshape(n, 2)
    images = np.asarray(images, np.float32)
    return Pool([], np.concatenate([images, images + 0.1, images + 0.2]), np.zeros((0, 384), np.float32), rows, [], views)


def test_keyframe_rows_hard_and_other_family_negatives_are_made_as_asked():
    pool = _visual_pool(np.random.default_rng(3), families=("metaworld", "panda"))
    config = MatcherTrainConfig(train=[], val=[], out="", swap_rate=0.5, cut_rate=0.0, keyframe_rate=1.0,
                                hard_negative_rate=1.0, family_negative_rate=1.0)  # fmt: skip
    batch = sample_batch(pool.visual, 64, random.Random(0), config, False, pool)
    swaps = [r for r in batch if r["na"]]
    assert len(swaps) == 32 and all(r["demo_task"][:5] != r["task"][:5] for r in swaps)  # other family's demos
    kept = [r for r in batch if not r["na"]]
    assert all(r["obs"] == r["keys"][r["anchor"]] and r["progress"] == r["points"][r["anchor"]] for r in kept)
    old = MatcherTrainConfig(train=[], val=[], out="")
    plain = sample_batch(pool.visual, 64, random.Random(0), old, False)
    assert not any(r["obs"] in r["keys"] for r in plain)  # the old recipe makes no keyframe rows


def test_augmented_views_replace_images_only_in_training_batches():
    pool = _visual_pool(np.random.default_rng(4))
    index = np.arange(len(pool.views))
    assert np.array_equal(_views(index, pool, None, 0.5), index)  # evaluation: the images themselves
    mixed = _views(index, pool, np.random.default_rng(0), 0.5)
    swapped = mixed != index
    assert 0.3 < swapped.mean() < 0.7 and np.all((mixed[swapped] >= len(index)))
    config = MatcherTrainConfig(train=[], val=[], out="", augment_rate=0.5, keyframe_rate=0.3)
    matcher = Matcher(MatcherConfig(image=SPEC, embed_dim=32, cell_dim=8, text=False, readout="local",
                                    demo_norm=True, order_check=True))  # fmt: skip
    losses = batch_loss(matcher.module, sample_batch(pool.visual, 32, random.Random(0), config, False, pool), pool,
                        config, False, np.random.default_rng(0))  # fmt: skip
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


def test_other_family_negatives_come_from_the_rows_given_batch_after_batch():
    """The other-family source was memoised by id() of a list made anew each batch: once freed, its id came back for
    another list, and a visual batch drew a text pool's rows (KeyError: 'keys' in training with two families)."""
    a = _visual_pool(np.random.default_rng(5), families=("metaworld", "panda"))
    b = _visual_pool(np.random.default_rng(6), families=("fetch", "panda"))
    for row in b.visual:
        row["task"] = row["demo_task"] = "b-" + row["task"]
    config = MatcherTrainConfig(train=[], val=[], out="", swap_rate=0.5, cut_rate=0.0, family_negative_rate=1.0)
    rng = random.Random(0)
    for turn in range(20):  # alternate the two pools, as training alternates visual and text batches
        rows = (a, b)[turn % 2].visual
        own = {r["task"] for r in rows}
        for made in sample_batch(rows, 16, rng, config, False):
            assert made["demo_task"] in own, (turn, made["demo_task"])
