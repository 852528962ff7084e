"""`stream: true`: a finished chat completion sent as OpenAI's server-sent `chat.completion.chunk` events.

The model answers a progress question in one piece (the matcher has no tokens to stream), so the reply is
complete before the first event: each choice gets a chunk with its role, one with its content and one with its
finish reason; `stream_options.include_usage` adds the usage chunk OpenAI sends last (empty `choices`); then
`data: [DONE]`. Clients that read streams (the `openai` package, LangChain, curl -N) see what OpenAI sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator


def chunks(completion: dict, include_usage: bool = False) -> Iterator[str]:
    """The server-sent events for one `chat.completion` object, `data: [DONE]` last."""
    head = {key: completion[key] for key in ("id", "created", "model")}
    extra = {"progresslm": completion["progresslm"]} if "progresslm" in completion else {}

    def event(choices: list, **more) -> str:
        body = {**head, "object": "chat.completion.chunk", "choices": choices, **more}
        return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"

    for choice in completion["choices"]:
        index = choice["index"]
        yield event([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                      "finish_reason": None}], **extra)  # fmt: skip
        yield event([{"index": index, "delta": {"content": choice["message"]["content"]}, "logprobs": None,
                      "finish_reason": None}])  # fmt: skip
        yield event([{"index": index, "delta": {}, "logprobs": None, "finish_reason": choice["finish_reason"]}])
    if include_usage:
        yield event([], usage=completion["usage"])
    yield "data: [DONE]\n\n"
