"""A Qwen2.5-VL built from scratch, saved like a hub checkpoint, with no download.

No VLM weights can be fetched on these machines, so tests (and the small default model that
training starts from) use the real Qwen2.5-VL architecture with random weights: a byte-level BPE
tokenizer trained on the prompt vocabulary, a Qwen2.5-VL chat template, the standard
`Qwen2_5_VLProcessor`, and `Qwen2_5_VLForConditionalGeneration` from a small config. The saved
directory loads with `AutoProcessor.from_pretrained` and `AutoModelForImageTextToText.from_pretrained`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from progresslm.bench.format import load_bench
from progresslm.io import expand_files
from progresslm.matcher.hints import hints_text
from progresslm.matcher.modeling_matcher import MatchResult
from progresslm.nano.configuration_nano import (
    CHAT_TEMPLATE,
    CHAT_TOKENS,
    VISION_TOKENS,
    base_corpus,
    train_tokenizer,
)
from progresslm.nano.modeling_nano import build_nano_vlm
from progresslm.prompts import build_prompt
from progresslm.train.recipes import builder_settings
from progresslm.train.traces import template_trace
from progresslm.types import Demo, Modality, Sample


def build_tiny_qwen2_5_vl(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 128,
    vision_depth: int = 2,
    vision_hidden_size: int = 32,
    vision_heads: int = 2,
    image_size: int = 56,
    vocab_size: int = 400,
    corpus: Iterable[str] = (),
    initializer_range: float = 0.02,
    tie_embeddings: bool = True,
    seed: int = 0,
) -> Path:
    """Build a Qwen2.5-VL with random weights and save model, tokenizer and processor to `out_dir`.

    `image_size` caps the processor's resolution: an image of up to image_size x image_size pixels
    keeps its size (rounded to multiples of 28), a larger one is scaled down to about that area.
    `corpus` adds text to the tokenizer's training text. Returns `out_dir`.
    """
    import torch  # lazy: torch (the [hf] and [train] extras)
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    if hidden_size % heads or (hidden_size // heads) % 2:
        raise ValueError(f"hidden_size {hidden_size} must split into {heads} heads of even size")
    if image_size % 28:
        raise ValueError(f"image_size {image_size} must be a multiple of 28 (patch 14 x merge 2)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer([*base_corpus(), *corpus], vocab_size=vocab_size)
    max_pixels = image_size * image_size
    min_pixels = min(56 * 56, max_pixels)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
        chat_template=CHAT_TEMPLATE,
    )

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (*CHAT_TOKENS, *VISION_TOKENS)}
    half_head = hidden_size // heads // 2
    # The three mrope sections (time, height, width) share the rotary half of a head in Qwen's
    # proportions (1 : 1.5 : 1.5, e.g. [16, 24, 24] for a 128-wide head).
    spatial = (half_head - half_head // 4) // 2
    mrope_section = [half_head - 2 * spatial, spatial, spatial]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "max_position_embeddings": 4096,
            "initializer_range": initializer_range,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope_section},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": vision_hidden_size * 2,
            "num_heads": vision_heads,
            "out_hidden_size": hidden_size,
            # Full attention in every block: at these image sizes a window would hold the whole image.
            "fullatt_block_indexes": list(range(vision_depth)),
            "initializer_range": initializer_range,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie_embeddings,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def prompt_corpus(files: list[str], image_root: str | None = None) -> list[str]:
    """Texts the tokenizer learns from, from benchmark JSONL files: every prompt's text (goals, step
    lists, questions) and the short two-stage reply of each sample, repeated as often as they occur,
    so the merges follow what the model reads most (the fixed instructions end up as few tokens)."""
    texts: list[str] = []
    for sample in load_bench(expand_files(files)).samples:
        prompt = build_prompt(sample, "two-stage", image_root)
        for message in prompt.messages:
            for part in message["content"]:
                if part["type"] == "text":
                    texts.append(part["text"])
        if sample.labelled:
            texts.append(template_trace(sample, style="short"))
    return texts


def model_settings(path: str | Path) -> dict:
    """`build_tiny_qwen2_5_vl` keyword arguments from a YAML file; `corpus_files` (benchmark JSONL,
    `~`, globs and ${VAR:-default} expanded) become the tokenizer's `corpus`."""
    settings, corpus_files = builder_settings(path, build_tiny_qwen2_5_vl)
    if corpus_files:
        settings["corpus"] = prompt_corpus(corpus_files)
    return settings


def nano_settings(path: str | Path) -> dict:
    """`build_nano_vlm` keyword arguments from a YAML file; `corpus_files` (benchmark JSONL, `~`, globs and
    ${VAR:-default} expanded) make the tokenizer's `corpus`, with examples of the hints line (whose
    numbers are digits, one token each, so a few examples teach the merges of its words)."""
    settings, corpus_files = builder_settings(path, build_nano_vlm)
    if corpus_files:
        settings["corpus"] = prompt_corpus(corpus_files) + hint_examples()
    return settings


def hint_examples(n: int = 200, seed: int = 0) -> list[str]:
    """Hints lines with random numbers, in both forms (keyframes, steps), for the tokenizer's corpus."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        items = rng.randint(3, 6)
        modality = Modality.VISUAL if i % 2 == 0 else Modality.TEXT
        demo = Demo(modality, tuple(str(k) for k in range(items if modality is Modality.VISUAL else items - 1)), items - 1)
        sims = tuple(rng.uniform(-0.2, 1.0) for _ in range(items))
        result = MatchResult(sims, sims, 0.0, 0.0, rng.random(), False, modality is Modality.TEXT)
        lines.append(hints_text(result, Sample("u", "t", "g", demo, "o", 0.0, 1)))
    return lines
