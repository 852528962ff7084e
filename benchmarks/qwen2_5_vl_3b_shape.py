"""A random-init model with Qwen2.5-VL-3B-Instruct's shape, processor settings and chat template, built offline.

Shared by `benchmarks/full_size_dry_run.py` (the CPU) and `benchmarks/gpu_smoke.sh` (a GPU). Nothing is downloaded:
the sizes below are copied from the hub checkpoint's `config.json`, `preprocessor_config.json` and
`generation_config.json`, the chat template is Qwen2.5-VL's own as TRL ships it (`trl/chat_templates/qwen2_5_vl.jinja`,
byte for byte the checkpoint's), and the tokenizer is the project's small byte-level BPE with Qwen's special tokens
(`progresslm.train.tiny_model`), so the vocabulary is 2,048 tokens instead of 151,936 (the one difference in shape:
311 M fewer embedding parameters). Weights are saved in bfloat16, as the checkpoint is.

    python benchmarks/qwen2_5_vl_3b_shape.py --out runs/qwen3b-shape            # the real shape (~3.4 B parameters)
    python benchmarks/qwen2_5_vl_3b_shape.py --out runs/qwen3b-small --reduced  # 2 layers, same kinds of modules

`--reduced` keeps every kind of module and setting (head size 128, grouped KV heads, windowed vision attention with
full attention every few blocks, the SwiGLU vision MLP, the 2x2 merger, the processor and template) at a size that
builds and trains in seconds, to check a script before the real run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Qwen/Qwen2.5-VL-3B-Instruct config.json (text part).
TEXT_3B = {
    "hidden_size": 2048,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "intermediate_size": 11008,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "use_sliding_window": False,
    "sliding_window": 32768,
    "max_window_layers": 70,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
}
# Its vision_config: 32 blocks of 1280 with windowed attention (112 px windows) and full attention every 8th block.
VISION_3B = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "hidden_act": "silu",
    "in_channels": 3,
    "out_hidden_size": 2048,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "initializer_range": 0.02,
}
# Small sizes with the same kinds of modules (head size 128 as in the 3B, 2 query heads per KV head; vision head 80).
TEXT_REDUCED = {**TEXT_3B, "hidden_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "intermediate_size": 1024}  # fmt: skip
VISION_REDUCED = {**VISION_3B, "depth": 4, "hidden_size": 160, "intermediate_size": 432, "num_heads": 2,
                  "out_hidden_size": 512, "fullatt_block_indexes": [1, 3]}  # fmt: skip
# preprocessor_config.json: 4 to 16,384 patches of 14 px (the recipes cap it with max_pixels), CLIP's statistics.
PROCESSOR_3B = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}
# generation_config.json: the checkpoint samples by default, with a light repetition penalty.
GENERATION_3B = {"do_sample": True, "repetition_penalty": 1.05, "temperature": 0.1, "top_p": 0.001, "top_k": 1}
VOCAB_SIZE = 2048


def qwen2_5_vl_chat_template() -> str:
    """Qwen2.5-VL's chat template, from TRL's copy of it (the same text as the checkpoint's chat_template.json)."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / "qwen2_5_vl.jinja").read_text()


def build(out_dir: str | Path, *, reduced: bool = False, corpus_files: list[str] = (), seed: int = 0) -> dict:
    """Build and save model, tokenizer and processor to `out_dir`; returns what was built (parameter counts, sizes).

    `corpus_files` (benchmark JSONL) add their prompts to the tokenizer's training text, so the prompts the model
    is run on tokenize to about as many tokens as with Qwen's tokenizer."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    from progresslm.train.tiny_model import CHAT_TOKENS, VISION_TOKENS, base_corpus, prompt_corpus, train_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    template = qwen2_5_vl_chat_template()
    corpus = [*base_corpus(), *(prompt_corpus(list(corpus_files)) if corpus_files else [])]
    tokenizer = train_tokenizer(corpus, vocab_size=VOCAB_SIZE)
    tokenizer.chat_template = template
    tokenizer.model_max_length = 131072  # tokenizer_config.json
    pixels = {key: PROCESSOR_3B[key] for key in ("min_pixels", "max_pixels", "patch_size", "temporal_patch_size",
                                                 "merge_size", "image_mean", "image_std")}  # fmt: skip
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels),
        chat_template=template,
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (*CHAT_TOKENS, *VISION_TOKENS)}
    text = dict(TEXT_REDUCED if reduced else TEXT_3B)
    text.update(vocab_size=len(tokenizer), bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"])  # fmt: skip
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(VISION_REDUCED if reduced else VISION_3B),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16: the 3B in fp32 would need 14 GB just to exist
    try:
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        **GENERATION_3B,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    vision = sum(p.numel() for p in model.model.visual.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {"parameters": total, "vision_parameters": vision, "language_parameters": total - vision,
            "vocab_size": len(tokenizer), "layers": text["num_hidden_layers"], "hidden_size": text["hidden_size"],
            "vision_depth": config.vision_config.depth, "dtype": "bfloat16", "reduced": reduced}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the model, tokenizer and processor to")
    parser.add_argument("--reduced", action="store_true", help="2 layers and small widths, same kinds of modules")
    parser.add_argument("--corpus", nargs="*", default=[], help="benchmark JSONL whose prompts train the tokenizer")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    built = build(args.out, reduced=args.reduced, corpus_files=args.corpus)
    built["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(built))
    return 0


if __name__ == "__main__":
    sys.exit(main())
