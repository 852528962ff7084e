"""OpenAI chat messages <-> the toolkit's prompts.

`read_messages` turns a request's messages back into the form `progresslm.prompts` builds (content
parts `{"type": "text"}` / `{"type": "image"}`, text-only messages as one text part) plus the
images in order, so a local backend sees what it sees in `progresslm eval`. `recognise_sample`
then recovers the `Sample` behind a progresslm prompt (goal, demonstration, observation): backends
that answer from the sample rather than the text (pixel-nn, the floors) need it. A prompt counts
as recognised only if `build_prompt` rebuilds exactly the messages received.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from progresslm.prompts import SYSTEM, build_prompt
from progresslm.serve.errors import ApiError
from progresslm.serve.request_images import RequestPixels, Upload, decode_data_url
from progresslm.types import Demo, Modality, Sample

ROLES = ("system", "developer", "user", "assistant")
# Anchored at the start of the text (re.match) and without nested repetition: linear in the prompt's length.
_VISUAL = re.compile(r"Demonstration: (\d{1,6}) keyframes, the start and then the end of each of its (\d{1,6}) steps")
_TEXT = re.compile(r"Demonstration: (\d{1,6}) steps\.\n")
IMAGE_MARK = "\x00image\x00"


@dataclass(frozen=True)
class ChatInput:
    """A request's messages in prompt form and its images, in the order of the image parts."""

    messages: list[dict]
    uploads: list[Upload]

    def key(self) -> str:
        """A stable id for this exact input (messages and image bytes): the request uid."""
        digest = hashlib.sha256(json.dumps(self.messages, sort_keys=True).encode())
        for upload in self.uploads:
            digest.update(upload.digest.encode())
        return digest.hexdigest()[:24]


def read_messages(
    raw: Any,
    max_images: int,
    max_pixels: int,
    max_prompt_chars: int = 262_144,
    pixels: RequestPixels | None = None,
    work_side: int = 1024,
) -> ChatInput:
    """The messages of a chat-completions body, checked; every problem is a 400 naming its place, text over
    `max_prompt_chars` a 413 (checked before any image is decoded)."""
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "expected a non-empty list of chat messages", "messages")
    _check_text_size(raw, max_prompt_chars)
    messages: list[dict] = []
    uploads: list[Upload] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApiError(400, f"expected an object with role and content, got {type(message).__name__}", where)
        role = message.get("role")
        if role not in ROLES:
            raise ApiError(400, f"role must be one of {', '.join(ROLES)}, got {role!r}", f"{where}.role")
        content = message.get("content")
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        elif isinstance(content, list) and content:
            parts = [_read_part(part, f"{where}.content[{j}]", uploads, max_images, max_pixels, pixels, work_side)
                     for j, part in enumerate(content)]  # fmt: skip
        else:
            what = "content must be a string or a non-empty list of text and image_url parts"
            raise ApiError(400, what, f"{where}.content")
        messages.append({"role": "system" if role == "developer" else role, "content": parts})
    if messages[-1]["role"] == "assistant":
        what = "the last message must not be the assistant's: there is nothing to answer"
        raise ApiError(400, what, f"messages[{len(raw) - 1}].role")
    return ChatInput(messages, uploads)


def _check_text_size(raw: list, limit: int) -> None:
    total = 0
    for message in raw:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        if total > limit:
            raise ApiError(413, f"the messages hold more than {limit} characters of text (--max-prompt-chars); a "
                           "progresslm prompt has about 2,000", "messages", "prompt_too_long")  # fmt: skip


def _read_part(part: Any, where: str, uploads: list[Upload], max_images: int, max_pixels: int,
               pixels: RequestPixels | None = None, work_side: int = 1024) -> dict:  # fmt: skip
    if not isinstance(part, dict):
        raise ApiError(400, f"expected a content part object, got {type(part).__name__}", where)
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise ApiError(400, "a text part needs a string field 'text'", f"{where}.text")
        return {"type": "text", "text": part["text"]}
    if kind == "image_url":
        image_url = part.get("image_url")
        url = image_url.get("url") if isinstance(image_url, dict) else image_url
        if len(uploads) >= max_images:
            what = f"more than {max_images} images in one request (--max-images)"
            raise ApiError(400, what, where, "too_many_images")
        uploads.append(decode_data_url(url, f"{where}.image_url.url", max_pixels, pixels, work_side))
        return {"type": "image"}
    raise ApiError(400, f"part type must be 'text' or 'image_url', got {kind!r}", f"{where}.type")


def _split_images(content: list[dict]) -> str:
    return "".join(part["text"] if part["type"] == "text" else IMAGE_MARK for part in content)


def recognise_sample(messages: list[dict], image_names: list[str], uid: str) -> tuple[Sample, str] | None:
    """The sample and mode behind a progresslm prompt (as `build_prompt` writes it), or None.

    `image_names` stand for the images in order (demonstration keyframes, then the observation).
    """
    if len(messages) != 2 or [m["role"] for m in messages] != ["system", "user"]:
        return None
    system = _split_images(messages[0]["content"])
    mode = next((name for name, text in SYSTEM.items() if text == system), None)
    user = _split_images(messages[1]["content"])
    if mode is None or not user.startswith("Task goal: ") or "\nDemonstration: " not in user:
        return None
    goal, _, rest = user[len("Task goal: "):].partition("\nDemonstration: ")
    rest = "Demonstration: " + rest
    for demo in _candidate_demos(rest, image_names):
        observation = image_names[-1] if image_names else ""
        sample = Sample(uid=uid, trajectory_id="served", goal=goal, demo=demo, observation=observation,
                        progress=None, closest_idx=None, labelled=False)  # fmt: skip
        if len(sample.image_names()) == len(image_names) and build_prompt(sample, mode).messages == messages:
            return sample, mode
    return None


def own_prompt(messages: list[dict]) -> bool:
    """A prompt `build_prompt` wrote, perhaps with a hints line (`--hints`): its system message is progresslm's."""
    if not messages or messages[0]["role"] != "system":
        return False
    return _split_images(messages[0]["content"]) in SYSTEM.values()


def _candidate_demos(text: str, image_names: list[str]) -> list[Demo]:
    visual = _VISUAL.match(text)
    if visual:
        keyframes, steps = int(visual.group(1)), int(visual.group(2))
        return [Demo(Modality.VISUAL, tuple(image_names[:keyframes]), total_steps=steps)]
    text_demo = _TEXT.match(text)
    if not text_demo:
        return []
    count = int(text_demo.group(1))
    found = _step_lines(text[text_demo.end() :], count)
    if found is None or count == 0:
        return []
    steps = tuple(description for description, _ in found)
    # The prompt shows "ends at P%" with P = round(100 * k / T); T is the record's step count, usually `count`.
    last = found[-1][1]
    others = range(max(count - 2, 1), 4 * count + 4)
    totals = [count] + [t for t in others if t != count and round(100 * count / t) == last]
    return [Demo(Modality.TEXT, steps, total_steps=total) for total in totals]


def _step_lines(text: str, count: int) -> list[tuple[str, int]] | None:
    """The first `count` lines `Step k: DESCRIPTION (ends at P%)`, k = 1, 2, ..., as (description, P); None
    when a line does not have that form. Plain string scanning, one pass: a prompt of many stray "Step 1: "
    fragments cannot make it slow (a lazy `.*?` across lines did: 13 s for 160 kB)."""
    found = []
    lines = iter(text.split("\n", count)[:count])
    for k in range(1, count + 1):
        line = next(lines, None)
        head = f"Step {k}: "
        if line is None or not line.startswith(head) or not line.endswith("%)"):
            return None
        description, sep, percent = line[len(head) : -2].rpartition(" (ends at ")
        if not sep or not percent.isdigit() or len(percent) > 3:
            return None
        found.append((description, int(percent)))
    return found


def generic_sample(uid: str, image_names: list[str]) -> Sample:
    """A stand-in sample for a chat that is not a progresslm prompt (backends that read only the text)."""
    observation = image_names[-1] if image_names else ""
    return Sample(uid=uid, trajectory_id="served", goal="", demo=Demo(Modality.TEXT, (), 0), observation=observation,
                  progress=None, closest_idx=None, labelled=False)  # fmt: skip


def completion(reply_texts: list[tuple[str, int | None, int | None]], model: str, uid: str, created: int,
               max_new_tokens: int) -> dict:  # fmt: skip
    """An OpenAI `chat.completion` object for one or more replies (text, prompt tokens, completion tokens)."""
    choices = []
    prompt_tokens = completion_tokens = 0
    for index, (text, prompt, completed) in enumerate(reply_texts):
        prompt_tokens = max(prompt_tokens, prompt or 0)
        completion_tokens += completed or 0
        finish = "length" if completed is not None and completed >= max_new_tokens else "stop"
        message = {"role": "assistant", "content": text}
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
    return {
        "id": f"chatcmpl-{uid}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},  # fmt: skip
    }
