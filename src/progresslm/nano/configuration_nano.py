"""ProgressLM-nano's configuration: its vision tower and image tokens, and the tokenizer and chat template it shares
with the tiny test models (`progresslm.train.tiny_model`), all built here with no download."""

from __future__ import annotations

from collections.abc import Iterable

from progresslm import prompts

IMAGE_TOKEN = "<|image_pad|>"
TOWER = "tf_efficientnet_lite0"
TOWER_CHANNELS = 1280
STRIDE = 32  # the tower's output stride: a side of 128 px gives 4 x 4 tokens

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
    # lazy: tokenizers and transformers (the [nano] extra)
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
