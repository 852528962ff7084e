"""The matcher: episodic retrieval as a small learned model over frozen encoders.

For a visual demonstration of K keyframes and one observation (features from `encoders.ImageEncoder`):

    z = normalize(Linear(LayerNorm(features)))            one embedding per image (shared weights)
    s_k = cos(z_obs, z_key_k)                              the similarity profile
    w = softmax(scale * s)                                 the anchor distribution
    position = sum_k w_k * k                               expected position on the keyframe timeline
    progress = demo progress interpolated at position      refined between neighbouring keyframes

so every answer is a comparison with the demonstration: with the demonstration taken away there is
nothing to answer from, which is why it carries over to tasks it never saw (a free-attention model
over the same features memorised its training tasks instead). A text demonstration of T steps gets
the same comparison in a second space: the observation projected toward sentence vectors of the
steps (`encoders.TextEncoder`), with a learned "start" slot standing for progress 0, so the T+1
points 0, 1/T, ..., 1 play the part of keyframes.

N/A: a head on the similarity profile (best, second best, spread, entropy) and, for images, on how
well the observation's cells agree with the keyframes' cells (a recoloured, hidden or replaced object
leaves a few cells without a partner), trained on the simulator's unanswerable samples and swapped
demonstrations. It gives a probability; above `na_threshold` (chosen on held-out tasks) the answer is N/A.

A checkpoint is a folder: `config.json` (this `MatcherConfig`), `model.safetensors`, `README.md`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from progresslm.io import atomic_path
from progresslm.matcher.configuration_matcher import CONFIG_FILE, WEIGHTS_FILE, MatcherConfig, MatcherError
from progresslm.matcher.encoders import STAGE_CHANNELS, TEXT_DIM

PROFILE_FEATURES = 6  # best, second best, mean, spread, max - min, normalised entropy
DEMO_NORM_FEATURES = 2  # log of the observation's distance to the demo over the keyframes' spacing, two feature kinds
ORDER_FEATURES = 2  # agreement of the similarity profile with one peak along the keyframe order; its peak's edge


@dataclass(frozen=True)
class MatchResult:
    """One observation placed on one demonstration."""

    similarities: tuple[float, ...]  # per demo item (keyframes; for text: start slot, then each step)
    weights: tuple[float, ...]  # softmax of the scaled similarities
    position: float  # expected position, in item units (0 .. len - 1)
    progress: float  # in [0, 1]
    p_na: float  # probability that the demonstration does not match the observation
    na: bool  # p_na above the checkpoint's threshold
    text: bool = False

    @property
    def anchor(self) -> int:
        """1-based anchor as the protocol counts it: keyframe index, or step index for text (>= 1)."""
        nearest = int(round(self.position))
        return max(nearest, 1) if self.text else nearest + 1


def _build(config: MatcherConfig):
    import torch  # lazy: torch (the [nano] extra)
    from torch import nn

    class Matcher(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            dim = config.image.dim
            self.image_proj = _projection(dim, config.embed_dim, config.dropout)
            # "Which task" must not change with the camera: read the global taps when there are some.
            self.task_proj = _projection(config.global_dim or dim, config.task_dim, config.dropout)
            self.task_log_scale = nn.Parameter(torch.tensor(float(np.log(10.0))))
            self.log_scale = nn.Parameter(torch.tensor(float(np.log(10.0))))

            tap = config.na_tap
            if tap is not None:
                channels = STAGE_CHANNELS[tap.stage]
                self.cell_proj = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, config.cell_dim))
            cells = tap.cells**2 if tap is not None else 0
            if config.similarity != "global":
                if config.cell_tap is None:
                    raise MatcherError(f"similarity {config.similarity!r} needs a tap with cells (e.g. 4:4)")
                channels = STAGE_CHANNELS[config.cell_tap.stage]
                self.match_cell_proj = _projection(channels, config.match_cell_dim, config.dropout)
            extra = (DEMO_NORM_FEATURES if config.demo_norm else 0) + (ORDER_FEATURES if config.order_check else 0)
            self.na_visual = _mlp(PROFILE_FEATURES + 2 + 3 * cells + extra, config.na_hidden)
            if config.text:
                self.text_image_proj = _projection(dim, config.embed_dim, config.dropout)
                self.text_proj = _projection(TEXT_DIM, config.embed_dim, config.dropout)
                self.start = nn.Parameter(torch.randn(config.embed_dim) * 0.02)
                self.text_log_scale = nn.Parameter(torch.tensor(float(np.log(10.0))))
                self.na_text = _mlp(PROFILE_FEATURES + 2, config.na_hidden)

        # -- visual ----------------------------------------------------------------------------

        def visual(self, obs, keys, mask, points):
            """obs (B, D), keys (B, K, D), mask (B, K) bool, points (B, K) progress of each keyframe.
            Returns logits (B, K), similarities, position (B,), progress (B,), N/A logit (B,)."""
            if config.demo_norm:
                sims = self.similarities(*_demo_standardise(obs, keys, mask))
            else:
                sims = self.similarities(obs, keys)
            logits, position, progress = _place(sims, mask, points, self.log_scale.exp(), config.readout)
            task = self.task_similarity(obs, keys, mask)
            parts = [_profile(sims, logits, mask), task[:, None], task[:, None] * self.task_log_scale.exp()]
            if config.na_tap is not None:
                parts.append(self._cells(obs, keys, mask, logits))
            if config.demo_norm:
                views = [(self._global(obs), self._global(keys))]
                tap = config.cell_tap or config.na_tap
                part = config.tap_slice(tap) if tap is not None else slice(None)
                views.append((obs[:, part], keys[:, :, part]))
                parts.append(_demo_distances(views, mask))
            if config.order_check:
                parts.append(_order_agreement(sims, mask))
            na_logit = self.na_visual(torch.cat(parts, -1)).squeeze(-1)
            if config.snap_similarity is not None and not self.training:
                position, progress, na_logit = _snap(sims, mask, points, position, progress, na_logit,
                                                     config.snap_similarity)
            return logits, sims, position, progress, na_logit

        def similarities(self, obs, keys):
            """(B, K) similarity of each observation with each of its keyframes (`config.similarity`)."""
            parts = []
            if config.similarity in ("global", "both"):
                z_obs = nn.functional.normalize(self.image_proj(obs), dim=-1)
                z_keys = nn.functional.normalize(self.image_proj(keys), dim=-1)
                parts.append(torch.einsum("bd,bkd->bk", z_obs, z_keys))
            if config.similarity in ("late", "both"):
                o, d = self._cell_grids(obs, keys, config.cell_tap)
                o = nn.functional.normalize(self.match_cell_proj(o), dim=-1)
                d = nn.functional.normalize(self.match_cell_proj(d), dim=-1)
                pair = torch.einsum("bce,bkfe->bkcf", o, d)
                parts.append((pair.max(-1).values.mean(-1) + pair.max(-2).values.mean(-1)) / 2)
            return sum(parts) / len(parts)

        def _cell_grids(self, obs, keys, tap):
            """One tap's features as (B, cells, channels) and (B, K, cells, channels)."""
            part = config.tap_slice(tap)
            channels, cells = tap.dim // tap.cells**2, tap.cells**2
            b, k = keys.shape[:2]
            return obs[:, part].reshape(b, cells, channels), keys[:, :, part].reshape(b, k, cells, channels)

        def _global(self, x):
            if not config.global_dim:
                return x
            return torch.cat([x[..., config.tap_slice(t)] for t in config.image.taps if t.cells == 1], -1)

        def task_embeddings(self, obs, keys, mask):
            """The observation's "which task" embedding and its demonstration's (mean over keyframes)."""
            t_obs = nn.functional.normalize(self.task_proj(self._global(obs)), dim=-1)
            t_keys = nn.functional.normalize(self.task_proj(self._global(keys)), dim=-1) * mask[..., None]
            t_demo = nn.functional.normalize(t_keys.sum(1), dim=-1)
            return t_obs, t_demo

        def task_similarity(self, obs, keys, mask):
            t_obs, t_demo = self.task_embeddings(obs, keys, mask)
            return (t_obs * t_demo).sum(-1)

        def _cells(self, obs, keys, mask, logits):
            """How well the observation's cells find partners in the keyframes' cells: sorted cosines of
            cell with same cell of the best keyframe, each observation cell's best partner anywhere in
            the demonstration, and each best-keyframe cell's best partner in the observation."""
            b = keys.shape[0]
            o, d = self._cell_grids(obs, keys, config.na_tap)
            o = nn.functional.normalize(self.cell_proj(o), dim=-1)  # (B, C, E)
            d = nn.functional.normalize(self.cell_proj(d), dim=-1)  # (B, K, C, E)
            best = logits.argmax(-1)
            d_best = d[torch.arange(b), best]  # (B, C, E)
            same = (o * d_best).sum(-1)  # (B, C)
            pair = torch.einsum("bce,bkfe->bckf", o, d)  # obs cell c against keyframe k's cell f
            pair = pair.masked_fill(~mask[:, None, :, None], -1.0)
            obs_to_demo = pair.flatten(2).max(-1).values  # (B, C)
            demo_to_obs = torch.einsum("bce,bfe->bfc", o, d_best).max(-1).values  # (B, C)
            return torch.cat([same.sort(-1).values, obs_to_demo.sort(-1).values, demo_to_obs.sort(-1).values], -1)

        # -- text ------------------------------------------------------------------------------

        def text_embeddings(self, obs, goal):
            """The observation and the goal in the text branch's space (for the "same task?" loss)."""
            z_obs = nn.functional.normalize(self.text_image_proj(obs), dim=-1)
            return z_obs, nn.functional.normalize(self.text_proj(goal), dim=-1)

        def text(self, obs, steps, mask, points, goal):
            """obs (B, D); steps (B, T, 384) sentence vectors, mask (B, T); points (B, T + 1) progress of
            the start slot and each step's end; goal (B, 384). Returns as `visual`."""
            z_obs = nn.functional.normalize(self.text_image_proj(obs), dim=-1)
            z_steps = self.text_proj(steps)
            start = self.start.expand(z_steps.shape[0], 1, -1)
            z_items = nn.functional.normalize(torch.cat([start, z_steps], 1), dim=-1)
            full_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
            sims = torch.einsum("bd,bkd->bk", z_obs, z_items)
            logits, position, progress = _place(sims, full_mask, points, self.text_log_scale.exp(), config.readout)
            z_goal = nn.functional.normalize(self.text_proj(goal), dim=-1)
            goal_sim = (z_obs * z_goal).sum(-1, keepdim=True)
            step_sims = sims[:, 1:].masked_fill(~mask, -1.0).max(-1, keepdim=True).values
            features = torch.cat([_profile(sims, logits, full_mask), goal_sim, step_sims], -1)
            na_logit = self.na_text(features).squeeze(-1)
            if not self.training and (config.text_shrink or config.text_abstain is not None):
                peak = logits.softmax(-1).max(-1).values
                progress = shrink_text(progress, peak, config.text_shrink)
                if config.text_abstain is not None:
                    na_logit = torch.where(peak < config.text_abstain, torch.full_like(na_logit, 50.0), na_logit)
            return logits, sims, position, progress, na_logit

    return Matcher()


def _projection(inputs: int, outputs: int, dropout: float):
    from torch import nn  # lazy: torch (the [nano] extra)

    return nn.Sequential(nn.LayerNorm(inputs), nn.Dropout(dropout), nn.Linear(inputs, outputs))


def _mlp(inputs: int, hidden: int):
    from torch import nn  # lazy: torch (the [nano] extra)

    return nn.Sequential(nn.LayerNorm(inputs), nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, 1))


def _place(sims, mask, points, scale, readout: str = "expected"):
    """Masked softmax of scale * sims, the expected position and the progress interpolated there.
    readout "local": the position is the mean over the best item and its two neighbours only."""
    import torch  # lazy: torch (the [nano] extra)

    logits = (sims * scale).masked_fill(~mask, -1e4)
    index = torch.arange(sims.shape[1], device=sims.device, dtype=sims.dtype)
    if readout == "local":
        best = logits.argmax(-1, keepdim=True)
        near = ((index[None, :] - best).abs() <= 1) & mask
        weights = logits.masked_fill(~near, -1e4).softmax(-1)
    else:
        weights = logits.softmax(-1)
    position = (weights * index).sum(-1)
    low = position.floor().long().clamp(max=sims.shape[1] - 1)
    high = (low + 1).clamp(max=sims.shape[1] - 1)
    last = mask.sum(-1) - 1
    high = torch.minimum(high, last)
    frac = position - low.to(position.dtype)
    progress = torch.lerp(points.gather(1, low[:, None]), points.gather(1, high[:, None]), frac[:, None]).squeeze(1)
    return logits, position, progress.clamp(0.0, 1.0)


def _demo_standardise(obs, keys, mask):
    """Observation and keyframes centred on the keyframes' mean and divided by their spread, per feature (the
    spread floored at the mean spread, so a feature the keyframes agree on is not blown up): what the
    demonstration itself says varies, instead of what our worlds taught the projection to look at."""
    m = mask[..., None].to(keys.dtype)
    count = m.sum(1).clamp(min=1.0)
    mean = (keys * m).sum(1) / count  # (B, D)
    var = (((keys - mean[:, None]) ** 2) * m).sum(1) / count
    scale = (var + var.mean(-1, keepdim=True) + 1e-6).sqrt()
    return (obs - mean) / scale, (keys - mean[:, None]) / scale[:, None]


def _demo_distances(views, mask):
    """(B, 2): log(distance of the observation to its nearest keyframe / median distance of a keyframe to its
    nearest other keyframe), for each (obs, keys) pair of `views` (the global features, a grid of cells), each
    vector layer-normalised first. Scale-free and measured inside the user's own world: near 0 or below when the observation sits among
    the keyframes as they sit among themselves, large when it comes from elsewhere."""
    import torch  # lazy: torch (the [nano] extra)
    import torch.nn.functional as F

    out = []
    for obs, keys in views:
        o = F.layer_norm(obs, obs.shape[-1:])
        k = F.layer_norm(keys, keys.shape[-1:])
        to_obs = (k - o[:, None]).norm(dim=-1).masked_fill(~mask, 1e6).min(-1).values  # (B,)
        pair = torch.cdist(k, k)  # (B, K, K)
        eye = torch.eye(k.shape[1], dtype=torch.bool, device=k.device)[None]
        pair = pair.masked_fill(eye | ~mask[:, None, :] | ~mask[:, :, None], 1e6)
        nearest = pair.min(-1).values.masked_fill(~mask, float("nan"))
        spacing = torch.nanmedian(nearest, dim=-1).values
        spacing = torch.where(torch.isfinite(spacing) & (spacing < 1e5), spacing, torch.ones_like(spacing))
        out.append(torch.log((to_obs + 1e-3) / (spacing + 1e-3)))
    return torch.stack(out, -1)


def _order_agreement(sims, mask):
    """(B, 2): Pearson correlation of the similarities with -|k - best| over the keyframes (1: one peak that
    falls off along the known order), and the drop from the peak to its neighbours' mean."""
    import torch  # lazy: torch (the [nano] extra)

    m = mask.to(sims.dtype)
    count = m.sum(-1).clamp(min=1.0)
    index = torch.arange(sims.shape[1], device=sims.device, dtype=sims.dtype)
    best = sims.masked_fill(~mask, -2.0).argmax(-1, keepdim=True)
    shape = -(index[None] - best.to(sims.dtype)).abs()

    def centred(x):
        return (x - (x * m).sum(-1, keepdim=True) / count[:, None]) * m

    a, b = centred(sims), centred(shape)
    corr = (a * b).sum(-1) / ((a * a).sum(-1).sqrt() * (b * b).sum(-1).sqrt()).clamp(min=1e-6)
    near = ((index[None] - best).abs() == 1) & mask
    peak = sims.gather(1, best).squeeze(1)
    neighbours = (sims * near).sum(-1) / near.sum(-1).clamp(min=1)
    return torch.stack([corr, peak - neighbours], -1)


def _snap(sims, mask, points, position, progress, na_logit, threshold: float):
    """Where the observation is one of the keyframes (similarity at least `threshold`), its exact place."""
    import torch  # lazy: torch (the [nano] extra)

    best = sims.masked_fill(~mask, -2.0).max(-1)
    hit = best.values >= threshold
    if not bool(hit.any()):
        return position, progress, na_logit
    exact = points.gather(1, best.indices[:, None]).squeeze(1)
    return (torch.where(hit, best.indices.to(position.dtype), position), torch.where(hit, exact, progress),
            torch.where(hit, torch.full_like(na_logit, -50.0), na_logit))


def shrink_text(progress, peak, bins):
    """Text progress shrunk toward 0.5 by the factor of the first `[upper, factor]` bin whose upper edge the
    anchor distribution's peak weight is below (the last bin takes the rest); no bins: unchanged."""
    import torch  # lazy: torch (the [nano] extra)

    if not bins:
        return progress
    factor = torch.full_like(progress, float(bins[-1][1]))
    for upper, value in reversed(bins[:-1]):
        factor = torch.where(peak < upper, torch.full_like(progress, float(value)), factor)
    return 0.5 + factor * (progress - 0.5)


def _profile(sims, logits, mask):
    """Shape of the similarity profile: best, second best, mean, spread, range, normalised entropy."""
    import torch  # lazy: torch (the [nano] extra)

    count = mask.sum(-1).clamp(min=1).to(sims.dtype)
    top = sims.masked_fill(~mask, -2.0).topk(2, dim=-1).values
    mean = (sims * mask).sum(-1) / count
    spread = (((sims - mean[:, None]) ** 2) * mask).sum(-1).div(count).sqrt()
    low = sims.masked_fill(~mask, 2.0).min(-1).values
    weights = logits.softmax(-1)
    entropy = -(weights * weights.clamp(min=1e-9).log()).sum(-1) / count.log().clamp(min=1e-6)
    return torch.stack([top[:, 0], top[:, 1], mean, spread, top[:, 0] - low, entropy], -1)


class Matcher:
    """A matcher checkpoint ready to answer: `MatcherConfig` + the torch module (CPU, eval mode)."""

    def __init__(self, config: MatcherConfig, module=None):
        self.config = config
        self.module = module if module is not None else _build(config)
        self.module.eval()

    @classmethod
    def load(cls, folder: str | Path) -> Matcher:
        folder = Path(folder)
        try:
            config = MatcherConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text()))
        except FileNotFoundError:
            raise MatcherError(f"{folder}: no {CONFIG_FILE}; is it a matcher checkpoint (progresslm train matcher)?") from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise MatcherError(f"{folder / CONFIG_FILE}: not a matcher config ({type(err).__name__}: {err})") from None
        from safetensors.torch import load_file  # lazy: safetensors (the [nano] extra)

        module = _build(config)
        try:
            state = load_file(str(folder / WEIGHTS_FILE))
            module.load_state_dict(state)
        except (OSError, RuntimeError) as err:
            raise MatcherError(f"{folder / WEIGHTS_FILE}: cannot load the matcher's weights ({err})") from None
        return cls(config, module)

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file  # lazy: safetensors (the [nano] extra)

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.module.state_dict().items()}
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp))
        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        return folder

    # -- answering ---------------------------------------------------------------------------

    def match_visual(self, obs: np.ndarray, keys: np.ndarray, points: list[float]) -> MatchResult:
        """One observation (D,) against keyframe features (K, D) at progress `points`."""
        import torch  # lazy: torch (the [nano] extra)

        with torch.inference_mode():
            out = self.module.visual(
                torch.from_numpy(obs[None]).float(), torch.from_numpy(keys[None]).float(),
                torch.ones(1, len(keys), dtype=torch.bool), torch.tensor([points], dtype=torch.float32),
            )  # fmt: skip
        return self._result(out, self.config.na_threshold, text=False)

    def match_text(self, obs: np.ndarray, steps: np.ndarray, goal: np.ndarray, total_steps: int) -> MatchResult:
        """One observation (D,) against step sentence vectors (T, 384) and the goal's (384,)."""
        import torch  # lazy: torch (the [nano] extra)

        if not self.config.text:
            raise MatcherError("this matcher has no text branch; it answers visual demonstrations only")
        points = [i / max(total_steps, 1) for i in range(len(steps) + 1)]
        with torch.inference_mode():
            out = self.module.text(
                torch.from_numpy(obs[None]).float(), torch.from_numpy(steps[None]).float(),
                torch.ones(1, len(steps), dtype=torch.bool), torch.tensor([points], dtype=torch.float32),
                torch.from_numpy(goal[None]).float(),
            )  # fmt: skip
        return self._result(out, self.config.text_na_threshold, text=True)

    @staticmethod
    def _result(out, threshold: float, text: bool) -> MatchResult:
        logits, sims, position, progress, na_logit = out
        p_na = float(na_logit.sigmoid()[0])
        return MatchResult(
            similarities=tuple(round(float(x), 4) for x in sims[0]),
            weights=tuple(round(float(x), 4) for x in logits[0].softmax(-1)),
            position=float(position[0]),
            progress=float(progress[0]),
            p_na=p_na,
            na=p_na > threshold,
            text=text,
        )
