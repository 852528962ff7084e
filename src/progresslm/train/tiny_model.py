"""A Qwen2.5-VL built from scratch, saved like a hub checkpoint, with no download.

No VLM weights can be fetched on these machines, so tests (and the small default model that
training starts from) use the real Qwen2.5-VL architecture with random weights: a byte-level BPE
tokenizer trained on the prompt vocabulary, a Qwen2.5-VL chat template, the standard
`Qwen2_5_VLProcessor`, and `Qwen2_5_VLForConditionalGeneration` from a small config. The saved
directory loads with `AutoProcessor.from_pretrained` and `AutoModelForImageTextToText.from_pretrained`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Qwen's control tokens, in the order Qwen's own vocabulary has them.
CHAT_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
# The two-stage answer tags, one token each so an answer is short and the tags cannot split.
REASONING_TOKENS = (
    "<ref_think>",
    "</ref_think>",
    "<ref>",
    "</ref>",
    "<score_think>",
    "</score_think>",
    "<score>",
    "</score>",
)

DEFAULT_SYSTEM = "You are a helpful assistant."

# Qwen2.5-VL's chat format: `<|im_start|>role\n...<|im_end|>\n` per message, each image part as
# `<|vision_start|><|image_pad|><|vision_end|>` (the processor widens the pad to one token per
# merged patch), content either a string or a list of parts, a default system message when the
# conversation has none, and `<|im_start|>assistant\n` when a generation prompt is asked for.
CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}"
    "{{ part['text'] }}"
    "{%- elif part['type'] in ('image', 'image_url') or 'image' in part -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- endif -%}"
)


def base_corpus() -> list[str]:
    """Text the tokenizer learns its merges from: the prompts, answers in the two-stage format,
    and the words of robot and human task goals."""
    from progresslm import prompts

    texts = [*prompts.SYSTEM.values(), *prompts.QUESTION.values()]
    texts += [
        "Task goal: place the blue block on the table\nDemonstration: 5 keyframes, one at the end of each step.\n",
        "Task goal: Put the plate on the table and place the carrot in the plate.\nDemonstration: 5 steps.\n",
        "Step 1 (0%): \nStep 2 (25%): \nStep 3 (50%): \nStep 4 (75%): \nStep 5 (100%): \n",
        "Step 1: picks up the green plate from the dish rack (ends at 20%)\n",
        "Current observation: \n",
        "<ref_think>The observation is closest to step 3: the gripper holds the block above the table."
        "</ref_think><ref>3</ref><score_think>It is a little after step 3, the block is lower."
        "</score_think><score>58%</score>",
        "<ref_think>n/a</ref_think><ref>n/a</ref><score_think>n/a</score_think><score>n/a</score>",
        "The robot arm moves the gripper towards the object, grasps it, lifts it, opens the drawer, "
        "pushes the button, closes the door, picks the cup and puts it in the box. The person pours water, "
        "folds the towel, wipes the table, stacks the bowls, turns the knob, presses the switch. "
        "left right top front wrist camera red green blue yellow pink white black orange purple cube "
        "before after at between almost halfway started finished done n/a 45%",
    ]
    texts += [f"{value}%" for value in range(101)]
    texts += [" ".join(str(digit) for digit in range(10))]
    return texts


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 400):
    """A byte-level BPE tokenizer in Qwen's style (digits one per token, Qwen's control tokens,
    the answer tags as single tokens), wrapped as a `PreTrainedTokenizerFast` with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = [*CHAT_TOKENS, *VISION_TOKENS]
    tokenizer = Tokenizer(models.BPE())
    # Digits split one by one as in Qwen's tokenizer, so every percentage is spelled the same way.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=special[1:],
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    # Added but not special: decoding with skip_special_tokens=True keeps the answer tags.
    wrapped.add_tokens(list(REASONING_TOKENS), special_tokens=False)
    return wrapped


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
    import torch
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
    from progresslm.bench.format import load_bench
    from progresslm.io import expand_files
    from progresslm.prompts import build_prompt
    from progresslm.train.traces import template_trace

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
    from progresslm.train.config import builder_settings

    settings, corpus_files = builder_settings(path, build_tiny_qwen2_5_vl)
    if corpus_files:
        settings["corpus"] = prompt_corpus(corpus_files)
    return settings
