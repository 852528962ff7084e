"""The one request loop: samples in, replies (and parsed predictions) out.

Evaluation, the in-process floors, the online scorer and teacher traces all ask a backend the same way: each
(sample, draw, prompt) becomes a `Request` with its images encoded as the backend wants them, the requests go to
`Backend.generate` in chunks of `backend.chunk_size` (so only one chunk's images are held at a time), and each reply
comes back as soon as the backend has it, in whatever order, paired with its request. What a caller does with an
answer (save it, score it, check it against the label) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from progresslm.backends.base import Backend, Reply, Request
from progresslm.images import ImageReadError, ImageStore
from progresslm.parsing import parse_reply
from progresslm.prompts import Prompt
from progresslm.types import Prediction, Sample


@dataclass(frozen=True)
class Item:
    """One reply to ask for: a sample, which draw of it, and its prompt."""

    sample: Sample
    prompt: Prompt
    draw: int = 0


@dataclass(frozen=True)
class Answer:
    request: Request
    reply: Reply

    def prediction(self, mode: str) -> Prediction | None:
        """The parsed reply; None when the backend refused this request (`reply.error`)."""
        return None if self.reply.error else parse_reply(self.reply.text, mode)


def ask(
    backend: Backend,
    items: Sequence[Item],
    images: ImageStore | None = None,
    *,
    on_image_error: Callable[[Item, ImageReadError], None] | None = None,
) -> Iterator[Answer]:
    """Ask `backend` for every item, a chunk at a time; yield each answer as it arrives.

    An image that cannot be read raises ImageReadError, unless `on_image_error` is given: it is called with the
    item and the error (it may raise its own error), and the item is left out."""
    store = images if images is not None else ImageStore()
    image_format = getattr(backend, "image_format", "none")
    chunk = max(1, getattr(backend, "chunk_size", 64))
    for start in range(0, len(items), chunk):
        requests = []
        for item in items[start : start + chunk]:
            try:
                encoded = store.encode_all(item.prompt.images, image_format)
            except ImageReadError as err:
                if on_image_error is None:
                    raise
                on_image_error(item, err)
                continue
            requests.append(Request(item.sample.uid, item.draw, item.prompt, item.sample, encoded))
        if not requests:
            continue
        for index, reply in backend.generate(requests):
            yield Answer(requests[index], reply)
