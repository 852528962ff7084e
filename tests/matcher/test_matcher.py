"""The matcher's arithmetic, its checkpoint, and that training teaches it to compare rather than to memorise.

The learning test uses synthetic features with the structure of the real problem: a cell that encodes
progress the same way in every task, a cell that says which task (object) it is, and cells of per-episode
nuisance (lighting, clutter) that is larger than the signal. The matcher trains on some tasks and is
asked about tasks it never saw: only a model that compares the observation with the demonstration
through the progress cell can place it there, and only one that compares the task cells can say N/A.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from progresslm.matcher.encoders import ImageSpec, Tap  # noqa: E402
from progresslm.matcher.modeling_matcher import Matcher, MatcherConfig, MatcherError, _place  # noqa: E402
from progresslm.matcher.training_matcher import (  # noqa: E402
    MatcherTrainConfig,
    Pool,
    answer_pool,
    batch_loss,
    sample_batch,
)

SPEC = ImageSpec(size=32, taps=(Tap(0, 2),))  # 2 x 2 cells of 16 channels: 64 numbers per image
CHANNELS, CELLS = 16, 4


def test_place_reads_the_expected_position_and_interpolates():
    sims = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    points = torch.tensor([[0.0, 0.5, 1.0], [0.0, 1.0, 1.0]])
    logits, position, progress = _place(sims, mask, points, torch.tensor(1e4))
    assert torch.allclose(position[0], torch.tensor(1.0)) and torch.allclose(progress[0], torch.tensor(0.5))
    # Equal similarity over the two valid keyframes: halfway, progress halfway between their points.
    assert torch.allclose(position[1], torch.tensor(0.5)) and torch.allclose(progress[1], torch.tensor(0.5))
    assert logits[1, 2] < -1e3  # the padded keyframe takes no weight


def _progress_code(p: float) -> np.ndarray:
    freqs = np.arange(1, CHANNELS // 2 + 1) * 0.9
    return np.concatenate([np.cos(np.pi * p * freqs), np.sin(np.pi * p * freqs)])


def synthetic_pool(tasks: int, episodes: int, seed: int, unanswerable: bool) -> Pool:
    """Keyframes at 0, 1/3, 2/3, 1 from one episode; observations at 10 points of another episode."""
    rng = np.random.default_rng(seed)
    images, visual = [], []

    def image(code, p, nuisance):
        cells = [3 * code, _progress_code(p), nuisance[0], nuisance[1]]
        images.append(np.concatenate(cells) + rng.normal(0, 0.05, CELLS * CHANNELS))
        return len(images) - 1

    codes = [rng.normal(size=CHANNELS) / np.sqrt(CHANNELS) for _ in range(tasks)]
    demos = []
    for t in range(tasks):
        for _e in range(episodes):
            demo_nuisance, obs_nuisance = rng.normal(0, 3, (2, 2, CHANNELS))
            points = [0.0, 1 / 3, 2 / 3, 1.0]
            keys = [image(codes[t], p, demo_nuisance) for p in points]
            demos.append((t, keys))
            for p in np.linspace(0, 1, 10):
                visual.append({"obs": image(codes[t], p, obs_nuisance), "keys": keys, "points": points, "na": False,
                               "task": f"t{t}", "demo_task": f"t{t}", "i": len(visual), "anchor": int(round(p * 3)),
                               "progress": float(p)})  # fmt: skip
    if unanswerable:
        for row in list(visual):
            t = int(row["task"][1:])
            u, other = next((task, keys) for task, keys in demos if task != t)
            visual.append(dict(row, keys=other, na=True, anchor=None, progress=None, i=len(visual), demo_task=f"t{u}"))
    return Pool([], np.asarray(images, np.float32), np.zeros((0, 384), np.float32), visual, [])


def anchor_accuracy(matcher: Matcher, pool: Pool) -> float:
    answers = answer_pool(matcher, pool)
    rows = [r for r in pool.visual if not r["na"]]
    return float(np.mean([answers[r["i"]][2] == r["anchor"] + 1 for r in rows]))


def test_training_teaches_comparison_that_carries_to_unseen_tasks():
    torch.manual_seed(0)
    train, held_out = synthetic_pool(8, 3, seed=0, unanswerable=True), synthetic_pool(4, 2, seed=1, unanswerable=True)
    matcher = Matcher(MatcherConfig(image=SPEC, embed_dim=32, cell_dim=8, text=False))
    untrained = anchor_accuracy(matcher, held_out)
    config = MatcherTrainConfig(train=[], val=[], out="", batch_size=64, swap_rate=0.25, cut_rate=0.2)
    optimizer = torch.optim.AdamW(matcher.module.parameters(), lr=3e-3)
    rng = random.Random(0)
    for _ in range(400):
        matcher.module.train()
        loss = sum(batch_loss(matcher.module, sample_batch(train.visual, 64, rng, config, False), train, config, False).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    matcher.module.eval()
    trained = anchor_accuracy(matcher, held_out)
    assert untrained < 0.6 and trained > 0.85, (untrained, trained)
    answers = answer_pool(matcher, held_out)
    p_na = {na: np.mean([answers[r["i"]][1] for r in held_out.visual if r["na"] == na]) for na in (False, True)}
    assert p_na[True] > p_na[False] + 0.4, p_na  # another task's demonstration is told apart on new tasks
    errors = [abs(answers[r["i"]][0] - r["progress"]) for r in held_out.visual if not r["na"]]
    assert np.mean(errors) < 0.1


def test_a_checkpoint_round_trips_and_bad_folders_are_named(tmp_path):
    matcher = Matcher(MatcherConfig(image=SPEC, embed_dim=16, cell_dim=4, text=True, na_threshold=0.3))
    matcher.save(tmp_path / "m")
    again = Matcher.load(tmp_path / "m")
    assert again.config.na_threshold == 0.3 and again.config.image == SPEC
    rng = np.random.default_rng(0)
    obs, keys = rng.normal(size=SPEC.dim).astype(np.float32), rng.normal(size=(4, SPEC.dim)).astype(np.float32)
    a, b = matcher.match_visual(obs, keys, [0, 1 / 3, 2 / 3, 1]), again.match_visual(obs, keys, [0, 1 / 3, 2 / 3, 1])
    assert a == b and 1 <= a.anchor <= 4 and 0 <= a.progress <= 1
    text = again.match_text(obs, rng.normal(size=(3, 384)).astype(np.float32), np.ones(384, np.float32), 3)
    assert text.text and len(text.similarities) == 4 and 1 <= text.anchor <= 3
    with pytest.raises(MatcherError, match="no config.json; is it a matcher checkpoint"):
        Matcher.load(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{")
    with pytest.raises(MatcherError, match="not a matcher config"):
        Matcher.load(tmp_path / "bad")
