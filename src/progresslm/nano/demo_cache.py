"""What a FastVLM computes for a demonstration, kept across requests: image features and the prompt's prefix.

Online scoring asks one demonstration about frame after frame, and a benchmark asks each demonstration about
many observations. The prompt puts the demonstration first and the observation last (`progresslm.prompts`:
system, goal, keyframes, "Current observation: " <image>, hints, question), so for the `nano` backend:

- each image's features (the vision tower's map through the projector: `tokens_per_image` vectors of the
  LM's width) are kept by image content (a digest of the pixels), so a keyframe goes through the image
  processor and the tower once, whichever request or session shows it again;
- for a request asked alone (the online case), the language model's KV cache of the prompt up to its last
  image is kept by (those tokens, those images), so a frame's prefill covers only the observation, the
  hints line and the question.

Both are LRU-bounded. The model computes the same thing from a cached prefix as from the whole prompt, up to
float rounding; tests check that greedy answers of the shipped model do not change. One thread at a time
uses a backend (the scorer's lock, the server's worker), so the cache takes no lock of its own.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from progresslm.backends.base import BackendError

# 256 images of nano's 16 x 256 floats are 4 MiB: every keyframe of a few dozen demonstrations.
MAX_IMAGES = 256
# A nano prefix (5 keyframes, ~330 tokens) is ~1.3 MiB of keys and values; 8 demonstrations in turn stay warm.
MAX_PREFIXES = 8
# Shorter shared prefixes save less prefill than copying their cache costs.
MIN_PREFIX_TOKENS = 32


class LRU:
    """A dict of at most `capacity` entries; reading or writing one makes it the newest, the oldest goes first.

    >>> lru = LRU(2)
    >>> lru.put("a", 1); lru.put("b", 2); lru.get("a"); lru.put("c", 3)
    1
    >>> sorted(lru.keys())
    ['a', 'c']
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"an LRU cache holds at least 1 entry, got capacity {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[Hashable]:
        return list(self._items)

    def get(self, key: Hashable) -> Any | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


def image_key(image: Any) -> bytes:
    """A digest of a PIL image's mode, size and pixels: equal for equal pictures, whatever object holds them."""
    if not (hasattr(image, "tobytes") and hasattr(image, "mode") and hasattr(image, "size")):
        raise BackendError(f"the demonstration cache takes PIL images, got a {type(image).__name__}")
    digest = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(image.tobytes())
    return digest.digest()


def _tokens_per_image(processor: Any) -> int | None:
    """How many tokens the processor widens each image placeholder to, or None when that depends on the image
    (found by asking it about two images of different sizes and shapes)."""
    counts = set()
    for size in ((40, 40), (300, 90)):
        ids = processor(text=[processor.image_token], images=[Image.new("RGB", size)], return_tensors="pt")["input_ids"]
        counts.add(int((ids == processor.image_token_id).sum()))
    return counts.pop() if len(counts) == 1 else None


@dataclass
class CacheStats:
    """What the cache saved: images and prefixes found (hits) or computed (misses)."""

    image_hits: int = 0
    image_misses: int = 0
    prefix_hits: int = 0
    prefix_misses: int = 0


class DemoCache:
    """Builds `model.generate` inputs for a FastVLM (`FastVlmForConditionalGeneration` with a `LlavaProcessor`
    that resizes every image to one size) from cached image features and prompt prefixes.

    `DemoCache.unsupported(model, processor)` says why a model cannot use it (None when it can)."""

    def __init__(self, model: Any, processor: Any, max_images: int = MAX_IMAGES, max_prefixes: int = MAX_PREFIXES):
        reason = self.unsupported(model, processor)
        if reason:
            raise BackendError(f"the demonstration cache does not fit this model: {reason}")
        self.model = model
        self.processor = processor
        self.image_token = processor.image_token
        self.image_token_id = model.config.image_token_id
        self.tokens_per_image = _tokens_per_image(processor)
        self.features = LRU(max_images)  # image_key -> features (tokens_per_image x hidden)
        self.prefixes = LRU(max_prefixes)  # digest of prefix ids and images -> the LM's KV cache of the prefix
        self.stats = CacheStats()

    @staticmethod
    def unsupported(model: Any, processor: Any) -> str | None:
        """Why `model` and `processor` cannot use the cache, or None: it needs a FastVLM (whose forward takes
        precomputed image features) and a processor that gives every image the same number of tokens (the
        cache widens each image placeholder itself, as the processor would, without preprocessing the image)."""
        if getattr(model.config, "model_type", None) != "fast_vlm":
            return f"it is a {getattr(model.config, 'model_type', type(model).__name__)} model, not a FastVLM"
        if type(processor).__name__ != "LlavaProcessor":
            return f"its processor is a {type(processor).__name__}, not a LlavaProcessor"
        if _tokens_per_image(processor) is None:
            return "its processor gives images of different sizes different numbers of tokens"
        return None

    def inputs(self, texts: Sequence[str], images: Sequence[Any]) -> dict[str, Any]:
        """The generate inputs for chat `texts` (image placeholders not yet widened) and their `images` in
        order: ids and mask as the processor makes them, the images' features, and for one text with a
        long enough shared part before its last image, a copy of that part's KV cache."""
        import torch  # lazy: torch (the [nano] extra)

        wide = self.image_token * self.tokens_per_image
        tokens = self.processor.tokenizer([text.replace(self.image_token, wide) for text in texts],
                                          padding=True, return_tensors="pt")  # fmt: skip
        ids = tokens["input_ids"].to(self.model.device)
        mask = tokens["attention_mask"].to(self.model.device)
        placeholders = int((ids == self.image_token_id).sum())
        if placeholders != len(images) * self.tokens_per_image:
            raise BackendError(
                f"the prompts hold {placeholders} image tokens, not {self.tokens_per_image} for each of the "
                f"{len(images)} images; a prompt's text must not contain {self.image_token} itself"
            )
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if not images:
            return inputs
        keys = [image_key(image) for image in images]
        with torch.inference_mode():
            start = self._prefix_length(ids) if len(texts) == 1 else 0
            if start:
                inputs["cache"] = self._prefix_cache(ids, mask, start, images[:-1], keys[:-1])
                images, keys = images[-1:], keys[-1:]
            inputs["mm_encoder_outputs"] = {"image": self._encoder_output(self._features(images, keys))}
        return inputs

    def _prefix_length(self, ids) -> int:
        """Where the last image's tokens begin in a one-row batch (0 when the part before is too short)."""
        positions = (ids[0] == self.image_token_id).nonzero().flatten()
        start = int(positions[-self.tokens_per_image])
        return start if start >= MIN_PREFIX_TOKENS else 0

    def _prefix_cache(self, ids, mask, start: int, images: Sequence[Any], keys: Sequence[bytes]):
        """A copy of the KV cache of `ids[:, :start]` (which shows `images`), computed on a miss; `generate`
        extends the copy, the kept one stays as it was."""
        digest = hashlib.sha256(ids[0, :start].cpu().numpy().tobytes())
        for key in keys:
            digest.update(key)
        cache = self.prefixes.get(digest.digest())
        if cache is None:
            self.stats.prefix_misses += 1
            encoded = {"image": self._encoder_output(self._features(images, keys))} if images else None
            output = self.model(input_ids=ids[:, :start], attention_mask=mask[:, :start], mm_encoder_outputs=encoded,
                                use_cache=True, logits_to_keep=1)  # fmt: skip
            cache = output.cache
            self.prefixes.put(digest.digest(), cache)
        else:
            self.stats.prefix_hits += 1
        return copy.deepcopy(cache)

    def _features(self, images: Sequence[Any], keys: Sequence[bytes]):
        """The projected features of `images`, stacked in order; only the ones not cached go through the tower."""
        import torch  # lazy: torch (the [nano] extra)

        found: dict[bytes, Any] = {}
        missing: dict[bytes, Any] = {}
        for image, key in zip(images, keys):
            if key not in found and key not in missing:
                value = self.features.get(key)
                if value is None:
                    missing[key] = image
                else:
                    found[key] = value
        self.stats.image_misses += len(missing)
        self.stats.image_hits += len(keys) - len(missing)
        if missing:
            pixels = self.processor.image_processor(images=list(missing.values()), return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.model.device, self.model.dtype)
            computed = self.model.get_image_features(pixel_values=pixels).pooler_output
            for key, features in zip(missing, computed):
                features = features.clone()  # a row of its own: the LRU bound then bounds the memory
                self.features.put(key, features)
                found[key] = features
        return torch.stack([found[key] for key in keys])

    @staticmethod
    def _encoder_output(features):
        from transformers.modeling_outputs import BaseModelOutputWithPooling  # lazy: transformers (the [nano] extra)

        return BaseModelOutputWithPooling(pooler_output=features)

    def clear(self) -> None:
        self.features.clear()
        self.prefixes.clear()
