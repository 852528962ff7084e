"""Any OpenAI-compatible chat-completions server: OpenAI, `vllm serve`, SGLang, Ollama, llama.cpp.

Requests go out from a small thread pool (`--concurrency` in flight) and replies are yielded as
they finish. Rate limits (429), server errors (5xx), dropped connections and timeouts are retried
with exponential backoff; any other refusal (bad model name, malformed request) fails at once with
the server's own message, because retrying it would only fail again.

Several `--base-url`s are replicas of one model (`backends/replicas.py`): `--concurrency` requests in
flight on each, the next request to the least busy one, and a request whose replica fails (5xx, 429, dropped
connection, timeout, or a reply that is not a chat completion) goes at once to another that is up, without counting
against `--max-retries`. A replica that sent `Retry-After` rests that long; others rest `COOL_DOWN_S`.

`--timeout` bounds the whole request, connection, upload and every byte of the reply (`backends/deadline.py`),
and a reply may be at most `MAX_REPLY_BYTES`: a server that drips or floods is failed like one that is down.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict
from typing import Any, ClassVar

import httpx

from progresslm.backends.base import Backend, BackendError, BackendOptions, Reply, Request
from progresslm.backends.deadline import deadline_transport, request_deadline
from progresslm.backends.replicas import COOL_DOWN_S, Cancelled, Replica, ReplicaPool, stats_table

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5  # first retry waits about this long, then twice as long each time
BACKOFF_CAP_S = 30.0  # no single wait grows past this, however many retries
RETRY_AFTER_CAP_S = 300.0  # a server asking for more than 5 minutes is treated as asking for 5
RATE_LIMIT_REST_S = 1.0  # a replica that answered 429 without Retry-After takes nothing for this long
# A progress answer is a few hundred bytes; a long reasoning trace is tens of kilobytes. 16 MiB leaves room for any
# real reply and keeps a broken server from filling memory (a 300 MB reply took 1.5 GB when it was read whole).
MAX_REPLY_BYTES = 16 * 2**20
EXAMPLE_URL = "http://127.0.0.1:8000/v1"


class _Retryable(Exception):
    """One attempt failed in a way worth trying again, on another replica first; `retry_after` is the server's own
    wait, if any (the replica rests that long, else `rest_s`, else the pool's cool-down)."""

    def __init__(self, what: str, retry_after: float | None = None, rest_s: float | None = None):
        super().__init__(what)
        self.retry_after = retry_after
        self.rest_s = min(retry_after, RETRY_AFTER_CAP_S) if retry_after is not None else rest_s


def backoff_delay(retry: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number `retry` (0-based): the server's `Retry-After` if it sent
    one, else 0.5 s doubling per retry, capped at 30 s, with jitter so that parallel workers that
    failed together do not all come back together.

    >>> backoff_delay(0, retry_after=2.0), 0.25 <= backoff_delay(0) <= 0.5, 15.0 <= backoff_delay(20) <= 30.0
    (2.0, True, True)
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), RETRY_AFTER_CAP_S)
    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** min(retry, 32))
    return delay * (0.5 + 0.5 * random.random())


def parse_retry_after(value: str | None) -> float | None:
    """A `Retry-After` header in seconds: either a number of seconds or an HTTP date.

    >>> parse_retry_after("3"), parse_retry_after("1.5"), parse_retry_after(None), parse_retry_after("soon")
    (3.0, 1.5, None, None)
    """
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)


def server_message(data: bytes) -> str:
    """The error text a server put in its reply body: OpenAI's `{"error": {"message": ...}}`, the
    `{"error": "..."}` or `{"detail": ...}` of other servers, or the start of the raw body.

    >>> server_message(b'{"error": {"message": "overloaded"}}'), server_message(b"<html>busy</html>")
    ('overloaded', '<html>busy</html>')
    """
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("error", "detail", "message"):
            if body.get(key):
                return str(body[key])
    text = data.decode("utf-8", "replace").strip()
    return text[:500] if text else "(empty body)"


def _token_count(usage: dict, key: str) -> int | None:
    value = usage.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"usage.{key} is {value!r}, not a count")
    return value


def chat_completion(data: bytes) -> tuple[str, int | None, int | None]:
    """(reply text, prompt tokens, completion tokens) of a chat-completion body; ValueError saying what is wrong
    with anything else (not JSON, no choices, a message or usage of the wrong type).

    >>> chat_completion(b'{"choices": [{"message": {"content": "42%"}}], "usage": {"prompt_tokens": 9}}')
    ('42%', 9, None)
    >>> chat_completion(b'{"choices": []}')
    Traceback (most recent call last):
    ...
    ValueError: choices is an empty list, not a list of answers
    """
    try:
        body = json.loads(data)
    except ValueError as err:  # also UnicodeDecodeError
        raise ValueError(f"not JSON ({err})") from None
    if not isinstance(body, dict):
        raise ValueError(f"a JSON {type(body).__name__}, not an object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        shown = "an empty list" if choices == [] else "missing" if choices is None else f"{choices!r}"[:80]
        raise ValueError(f"choices is {shown}, not a list of answers")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise ValueError(f"choices[0].message is {message!r}"[:120] + ", not an object")
    content = message.get("content")
    if not (content is None or isinstance(content, (str, list))):
        raise ValueError(f"choices[0].message.content is {content!r}"[:120] + ", not text")
    usage = body.get("usage")
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise ValueError(f"usage is {usage!r}"[:120] + ", not an object")
    return reply_text(content), _token_count(usage, "prompt_tokens"), _token_count(usage, "completion_tokens")


def to_openai_messages(messages: list[dict], images: Sequence[str]) -> list[dict]:
    """The prompt's chat messages in the OpenAI format: `{"type": "image"}` parts become
    `image_url` parts carrying `images` in order; a message of text only becomes a plain string
    (what every server accepts for a system message)."""
    n_image_parts = sum(part["type"] == "image" for m in messages for part in m["content"])
    if n_image_parts != len(images):
        raise BackendError(
            f"the prompt has {n_image_parts} image slots but the request carries {len(images)} images; "
            "the openai backend needs the images encoded as data URLs (image_format 'data_url')"
        )
    next_image = iter(images)
    converted = []
    for message in messages:
        parts = message["content"]
        if isinstance(parts, str):
            converted.append({"role": message["role"], "content": parts})
        elif all(part["type"] == "text" for part in parts) and message["role"] != "user":
            converted.append({"role": message["role"], "content": "".join(part["text"] for part in parts)})
        else:
            content = []
            for part in parts:
                if part["type"] == "text":
                    content.append({"type": "text", "text": part["text"]})
                elif part["type"] == "image":
                    content.append({"type": "image_url", "image_url": {"url": next(next_image)}})
                else:
                    raise BackendError(f"unknown prompt content part type {part['type']!r}; expected text or image")
            converted.append({"role": message["role"], "content": content})
    return converted


def reply_text(content: Any) -> str:
    """The reply's text; null content is "" (the parser counts it as a parse failure), and a list of
    parts, which some servers send, is joined."""
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def chat_completions_url(base_url: str | None) -> str:
    """`<base_url>/chat/completions`; a base URL that already ends there is taken as it is."""
    if not base_url:
        raise BackendError(
            f"the openai backend needs --base-url, the server's OpenAI-compatible root, e.g. {EXAMPLE_URL} "
            "for a local `vllm serve`, or https://api.openai.com/v1"
        )
    base = base_url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise BackendError(f"--base-url {base_url!r} must start with http:// or https://, e.g. {EXAMPLE_URL}")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


def replica_urls(base_url: str | Sequence[str] | None) -> list[str]:
    """The chat-completions URL of each replica: `base_url` is one root, several joined by commas, or a list
    of such strings (`--base-url A B`, `--base-url A,B`).

    >>> replica_urls("http://h1:8000/v1")
    ['http://h1:8000/v1/chat/completions']
    >>> replica_urls(["http://h1:8000/v1, http://h2:8000/v1", "http://h3:8000/v1/"])  # doctest: +NORMALIZE_WHITESPACE
    ['http://h1:8000/v1/chat/completions', 'http://h2:8000/v1/chat/completions',
     'http://h3:8000/v1/chat/completions']
    """
    if base_url is None or isinstance(base_url, str):
        given = [base_url] if base_url else []
    else:
        given = list(base_url)
    entries = [part.strip() for text in given for part in str(text).split(",")]
    if len(entries) <= 1:
        return [chat_completions_url(entries[0] if entries else None)]
    urls: list[str] = []
    for position, entry in enumerate(entries, 1):
        if not entry:
            raise BackendError(f"--base-url: entry {position} of {', '.join(entries)!r} is empty; give each "
                               f"replica's root once, e.g. --base-url {EXAMPLE_URL} http://127.0.0.1:8001/v1")
        url = chat_completions_url(entry)
        if url in urls:
            raise BackendError(f"--base-url: {entry!r} is given twice; each replica once (--concurrency is already "
                               "per replica)")
        urls.append(url)
    return urls


# Statuses that refuse one request for its content, not the whole run (bad key, unknown model).
REFUSED_PER_REQUEST = frozenset({400, 413, 422})

class OpenAIBackend(Backend):
    """Chat completions over HTTP, `options.concurrency` requests in flight on each replica (`--base-url`)."""

    image_format: ClassVar[str] = "data_url"
    # How the backoff waits. Tests set a plain function on an instance (or a staticmethod on the
    # class) to run fast.
    sleep = staticmethod(time.sleep)
    cool_down_s: ClassVar[float] = COOL_DOWN_S  # how long a failing replica rests (several --base-url)
    max_reply_bytes: ClassVar[int] = MAX_REPLY_BYTES

    def __init__(self, options: BackendOptions, mode: str):
        super().__init__(options, mode)

        self.urls = replica_urls(options.base_url)
        self.url = self.urls[0]
        if not options.model:
            raise BackendError(
                "the openai backend needs --model, the name the server knows the model by "
                "(`curl <base-url>/models` lists them)"
            )
        if options.concurrency < 1:
            raise BackendError(f"--concurrency must be at least 1, got {options.concurrency}")
        self.replicas = ReplicaPool(self.urls, options.concurrency, self.cool_down_s)
        self.workers = options.concurrency * len(self.urls)  # --concurrency is per replica
        # Enough requests per chunk to keep every worker busy while the chunk drains.
        self.chunk_size = max(type(self).chunk_size, 4 * self.workers)
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(options.api_key_env, "") if options.api_key_env else ""
        if key:  # local servers need no key, so an unset variable simply sends none
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=self.workers, max_keepalive_connections=self.workers)
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(options.timeout_s), limits=limits,
                                    transport=deadline_transport(limits=limits))
        self._stop = threading.Event()  # the current `generate` call's: set, its workers give up
        self._stats_logged = False

    @property
    def model_name(self) -> str:
        return str(self.options.model)

    def body(self, request: Request) -> dict:
        """The JSON body of one chat-completions call."""
        o = self.options
        body = {
            "model": o.model,
            "messages": to_openai_messages(request.prompt.messages, request.images),
            o.token_param: o.max_new_tokens,
        }
        if o.sampling_params:  # GPT-5 and o-series models refuse these
            body.update(
                temperature=o.temperature,
                top_p=o.top_p,
                # Offset by draw: servers that honour a per-request seed would otherwise sample every draw alike.
                seed=o.seed + request.draw,
            )
        return body

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Reply]]:
        # A fresh event per call: a worker of an earlier call that is still winding down keeps seeing its own.
        self._stop = stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="progresslm-openai")
        pending: dict[Future, int] = {}
        failure: BaseException | None = None
        try:
            pending = {pool.submit(self._complete, request, stop): i for i, request in enumerate(requests)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    if future.exception() is None:
                        yield index, future.result()
                    elif failure is None:
                        # Stop new retries, but let requests in flight finish: their replies are paid
                        # for and the caller saves each one before the error reaches it.
                        failure = future.exception()
                        self._cancel(stop)
            if failure is not None:
                raise failure
        except KeyboardInterrupt:
            self._client.close()  # abort requests in flight instead of waiting up to --timeout for them
            raise
        finally:
            # On an error (or a caller that stops early) the other workers give up instead of retrying on.
            self._cancel(stop)
            for future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def _cancel(self, stop: threading.Event) -> None:
        stop.set()
        self.replicas.wake()  # workers waiting for a free replica see the stop

    def _complete(self, request: Request, stop: threading.Event) -> Reply:
        """One request, retried on 429, 5xx, dropped connections, timeouts and replies that are not chat
        completions. A failed try goes at once to another replica that is up, once per replica, without counting
        against --max-retries; once none is up, each retry waits (backoff, or the server's Retry-After) and counts."""
        body = self.body(request)
        retries = tries = 0
        failed_over_from: set[str] = set()
        failures: dict[str, str] = {}  # this request's last failure on each replica it was sent to
        while True:
            try:
                replica = self.replicas.acquire(stop)
            except Cancelled as cancelled:
                raise BackendError(str(cancelled)) from None
            outcome = self._try(replica, body)
            tries += 1
            if isinstance(outcome, Reply):  # answered (a refusal of this one request included)
                return outcome
            failure = outcome
            failures[replica.url] = str(failure)
            if replica.url not in failed_over_from and self.replicas.any_up():
                failed_over_from.add(replica.url)
                continue
            if retries >= self.options.max_retries:
                raise BackendError(self._given_up(request, tries, failure, failures))
            self.sleep(backoff_delay(retries, failure.retry_after))
            retries += 1

    def _try(self, replica: Replica, body: dict) -> Reply | _Retryable:
        """One attempt on `replica`: its reply, or the failure worth retrying; other errors propagate."""
        try:
            reply = self._attempt(replica.url, body)
        except _Retryable as failure:
            self.replicas.release(replica, error=str(failure), fault=True, rest_s=failure.rest_s)
            return failure
        except BaseException as error:
            self.replicas.release(replica, error=f"{type(error).__name__}: {error}")
            raise
        self.replicas.release(replica, latency_s=reply.latency_s)
        return reply

    def _given_up(self, request: Request, tries: int, failure: _Retryable, failures: dict[str, str]) -> str:
        """The message when a request has used its retries: with one server as it always was; with replicas,
        how each replica failed this request (or, one it was not sent to, its state)."""
        if len(self.urls) == 1:
            return (
                f"POST {self.url} failed {tries} time(s) for sample {request.uid} (draw {request.draw}); "
                f"last error: {failure}. Check that the server is running and reachable, that --base-url is "
                f"right (e.g. {EXAMPLE_URL}, the root that ends in /v1), and for a hosted API your rate limits; "
                "--max-retries and --timeout give a slow server more room"
            )
        each = []
        for stats in self.replicas.stats():
            if stats.url in failures:
                each.append(f"{stats.url}: {failures[stats.url]}")
            elif stats.last_error:
                each.append(f"{stats.url}: {stats.last_error} (its last failure; this request was not sent there, "
                            f"{'it was down' if stats.down else 'it was busy'})")
            else:
                each.append(f"{stats.url}: not sent this request (busy with others, no failure)")
        return (
            f"sample {request.uid} (draw {request.draw}) got no reply from any of the {len(self.urls)} replicas "
            f"in {tries} tries. How each replica failed: {'; '.join(each)}. Check that the servers are running and "
            f"reachable and that each --base-url is right (e.g. {EXAMPLE_URL}); --max-retries and --timeout give "
            "slow servers more room"
        )

    def _attempt(self, url: str, body: dict) -> Reply:
        start = time.perf_counter()
        limit = self.options.timeout_s
        try:
            with request_deadline(limit) as deadline, self._client.stream("POST", url, json=body) as response:
                data = self._read(response, deadline)
        except httpx.TimeoutException as error:
            raise _Retryable(f"timed out: no whole reply within --timeout {limit:g} s ({type(error).__name__})"
                             ) from error
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.DecodingError) as error:
            raise _Retryable(f"connection failed ({type(error).__name__}: {error})") from error
        except httpx.HTTPError as error:
            raise BackendError(f"POST {url} could not be sent: {type(error).__name__}: {error}") from error
        latency = time.perf_counter() - start  # of the attempt that answered: the model's time, not our waits
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            # 429 is the server pacing us: it rests briefly (or as long as it asked) while the others answer.
            raise _Retryable(f"HTTP {status}: {server_message(data)}", retry_after,
                             rest_s=RATE_LIMIT_REST_S if status == 429 else None)
        if status in REFUSED_PER_REQUEST:
            # This request alone is refused (too many images, context too long): record it and go on.
            return Reply(text="", latency_s=latency, error=f"HTTP {status}: {server_message(data)}"[:500])
        if status >= 400:
            raise BackendError(
                f"POST {url} was refused with HTTP {status}: {server_message(data)} "
                f"(model {self.options.model!r}; check the model name and the server's limits)"
            )
        try:
            text, prompt_tokens, completion_tokens = chat_completion(data)
        except ValueError as error:
            kind = response.headers.get("Content-Type") or "no Content-Type"
            raise _Retryable(f"HTTP {status} ({kind}) but not a chat completion: {error}; body "
                             f"{data[:120].decode('utf-8', 'replace')!r}; is --base-url an OpenAI-compatible /v1 "
                             "root?") from None
        return Reply(text=text, latency_s=latency, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def _read(self, response: Any, deadline: float) -> bytes:
        """The reply's body, at most `max_reply_bytes` (decoded), read by `deadline` (time.monotonic())."""
        cap = self.max_reply_bytes
        stated = response.headers.get("Content-Length", "")
        if stated.isdigit() and int(stated) > cap:
            raise _Retryable(f"the reply is {int(stated):,} bytes, more than the {cap:,} a chat completion may be")
        data = bytearray()
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > cap:
                raise _Retryable(f"the reply passed {cap:,} bytes, more than a chat completion may be")
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("the reply did not arrive whole in time")
        return bytes(data)

    def run_stats(self) -> dict:
        """Per replica: requests sent (each try), answered, failed, mean latency and last error."""
        return {"replicas": [asdict(stats) for stats in self.replicas.stats()]}

    def close(self) -> None:
        self._cancel(self._stop)
        self._client.close()
        stats = self.replicas.stats()
        if len(stats) > 1 and not self._stats_logged and any(s.requests for s in stats):
            self._stats_logged = True
            for line in stats_table(stats):
                log.info("%s", line)
