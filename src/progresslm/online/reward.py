"""A dense reward from progress estimates: a gymnasium wrapper that scores rendered frames.

`ProgressReward(env, demo, backend)` renders a frame every `every` steps (and at reset, and at the
end of an episode), sends it to a `ProgressScorer` and adds a shaping term to the env's reward:

- `delta`: the change in progress since the previous estimate (an episode sums to last - first);
- `pbrs`: `gamma * Phi(new) - Phi(previous)` with the potential Phi = progress;
- `absolute`: the progress itself.

Scoring runs in a background `ScoringWorker` thread, in batches of the frames that queued up
meanwhile (several wrapped envs can share one worker, so a model serves them all in one batch), so
`step()` is not blocked by the model. The price is a delay: a step's shaping comes from the
estimates that finished since the previous step, which may be of frames rendered several steps
earlier (`info["progress_stale_steps"]` says how many). The shaping terms an episode earns do not
depend on the delay, only the step that receives them: with `flush_on_done` (the default) the last
step waits for every pending frame, so the episode's shaped return is complete. `asynchronous=False`
scores each frame in `step()` itself, for when the shaping must not be delayed.

    from progresslm.online.reward import MetaWorldCamera, ProgressReward, demo_from_expert
    from progresslm.sim.metaworld.rollout import make_env

    demo = demo_from_expert("drawer-open-v3", seed=0, camera="corner2", size=224)
    env = make_env("drawer-open-v3", seed=1)
    env = ProgressReward(env, demo, every=5, render=MetaWorldCamera(env, "corner2", 224, framing=demo.framing))

An estimate that is N/A (or a reply that cannot be read) adds no shaping and leaves the progress as
it was; `info["progress_na"]` counts them. The wrapper keeps the env's own reward: the reward is
`env reward + scale * shaping`, or `scale * shaping` alone with `replace=True`.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import gymnasium
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError("progresslm.online.reward needs gymnasium: pip install -e '.[sim]' (in the progresslm clone)") from error

from progresslm.backends.base import Backend, BackendOptions
from progresslm.backends.registry import DEFAULT_BACKEND
from progresslm.online.scorer import Estimate, ProgressScorer
from progresslm.sim.metaworld.experts import ExpertDemo, MetaWorldCamera, demo_from_expert, meta_world_goal
from progresslm.types import is_number

SHAPINGS = ("delta", "absolute", "pbrs")
# Frames in flight per env before step() waits for the oldest: a backend slower than the env then
# slows the env down instead of filling memory (64 frames of 224 px are ~10 MB).
MAX_PENDING = 64
# How long close() waits for a batch that is being scored before leaving the (daemon) thread behind.
CLOSE_TIMEOUT_S = 30.0


class ProgressRewardError(ValueError):
    """Bad arguments or a failed scoring: says what, where and what to do."""


def shaping_term(kind: str, previous: float | None, current: float, gamma: float = 0.99) -> float:
    """The shaping one new progress estimate `current` earns after `previous` (None: the first).

    >>> shaping_term("delta", 0.25, 0.5), shaping_term("pbrs", 0.5, 1.0, gamma=0.9), shaping_term("absolute", None, 0.5)
    (0.25, 0.4, 0.5)
    >>> shaping_term("delta", None, 0.5)  # nothing to compare with yet
    0.0
    """
    if kind == "absolute":
        return current
    if previous is None:
        return 0.0
    if kind == "delta":
        return current - previous
    if kind == "pbrs":
        return gamma * current - previous
    raise ProgressRewardError(f"shaping: {kind!r} is not one of {', '.join(SHAPINGS)}")


# --------------------------------------------------------------------------- the scoring worker


class ScoringWorker:
    """One `ProgressScorer` served by a background thread that scores queued frames in batches.

    `submit(frame)` returns at once with a `Future[Estimate]`; the thread takes up to `max_batch`
    queued frames per `scorer.score` call, in the order they came, whichever env sent them.
    `score_now(frames)` scores in the caller's thread (the scorer serialises the two).
    Pass one worker as the `backend` of several `ProgressReward`s to batch their frames together.
    """

    def __init__(
        self, scorer: ProgressScorer, max_batch: int = 8, *, owns_scorer: bool = False, close_when_unused: bool = False
    ):
        if not isinstance(scorer, ProgressScorer):
            raise ProgressRewardError(f"ScoringWorker: expected a ProgressScorer, got {type(scorer).__name__}")
        _check_int("max_batch", max_batch, 1)
        self.scorer = scorer
        self.max_batch = max_batch
        self.batch_sizes: Counter[int] = Counter()  # batch size -> number of scorer calls
        self._owns_scorer = owns_scorer
        self._close_when_unused = close_when_unused  # set by the wrapper that made it
        self._queue: queue.Queue[tuple[np.ndarray, Future] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._users = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, frame: np.ndarray) -> Future:
        """Queue one frame; the future holds its `Estimate` (or the scorer's exception)."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise ProgressRewardError("the scoring worker is closed; make a new ProgressReward (or ScoringWorker)")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="progresslm-scoring", daemon=True)
                self._thread.start()
            self._queue.put((frame, future))
        return future

    def score_now(self, frames: Sequence[np.ndarray]) -> list[Estimate]:
        """Score `frames` in this thread, as one batch."""
        if self._closed:
            raise ProgressRewardError("the scoring worker is closed; make a new ProgressReward (or ScoringWorker)")
        estimates = self.scorer.score(frames)
        with self._lock:
            self.batch_sizes[len(frames)] += 1
        return estimates

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            # a frame of an episode that was reset meanwhile was cancelled: skip it
            batch = [(frame, future) for frame, future in batch if future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                estimates = self.score_now([frame for frame, _ in batch])
            except BaseException as error:  # handed to the env that waits for it, never lost
                for _, future in batch:
                    future.set_exception(error)
            else:
                for (_, future), estimate in zip(batch, estimates, strict=True):
                    future.set_result(estimate)

    def attach(self) -> None:
        """Count one more env that uses this worker (see `release`)."""
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """One env stopped using the worker; a worker made by a wrapper closes with its last env."""
        with self._lock:
            self._users = max(self._users - 1, 0)
            unused = self._users == 0
        if unused and self._close_when_unused:
            self.close()

    def close(self) -> None:
        """Cancel queued frames, let a batch being scored finish, stop the thread, close an owned scorer."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[1].cancel()
            self._queue.put(None)
            thread = self._thread
        if thread is not None:
            thread.join(CLOSE_TIMEOUT_S)
        if self._owns_scorer:
            self.scorer.close()

    def __enter__(self) -> ScoringWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- the wrapper


@dataclass
class _Pending:
    step: int  # env steps since reset when the frame was rendered (0: the reset frame)
    future: Future


class ProgressReward(gymnasium.Wrapper):
    """Adds `scale * shaping` from progress estimates of rendered frames to the env's reward.

    `demo`: keyframe images or step descriptions (see `ProgressScorer`), or an `ExpertDemo`
    (`demo_from_expert`), or None when `backend` is a shared `ProgressScorer` / `ScoringWorker`.
    `backend`: a backend name (built with `options`), a `Backend`, a `ProgressScorer`, or the
    `ScoringWorker` of another `ProgressReward` (`wrapper.worker`) to share its model and batches.
    `goal`: the task goal; by default the `ExpertDemo`'s, or the registered goal of a Meta-World env.
    `every`: render and score one frame every `every` steps (the reset frame and, on episode end,
    the last frame are always scored). `render(env) -> H x W x 3 uint8`; by default `env.render()`,
    which needs `render_mode="rgb_array"`; for Meta-World envs `MetaWorldCamera` is faster.

    `info` of every step (and of reset) gets: `progress` (latest estimate in [0, 1], None before the
    first), `progress_reward` (what was added to the reward), `progress_pending` (frames of this env
    in flight), `progress_stale_steps` (steps since the frame behind `progress` was rendered),
    `progress_scored` and `progress_na` (estimates applied and N/A ones, this episode).
    """

    def __init__(
        self,
        env: gymnasium.Env,
        demo: Any,
        backend: str | Backend | ProgressScorer | ScoringWorker | None = None,
        *,
        goal: str | None = None,
        every: int = 1,
        shaping: str = "delta",
        gamma: float = 0.99,
        scale: float = 1.0,
        replace: bool = False,
        render: Callable[[gymnasium.Env], np.ndarray] | None = None,
        asynchronous: bool = True,
        max_batch: int = 8,
        max_pending: int = MAX_PENDING,
        flush_on_done: bool = True,
        flush_timeout_s: float | None = None,
        options: BackendOptions | None = None,
    ):
        if not isinstance(env, gymnasium.Env):
            raise ProgressRewardError(f"env: expected a gymnasium.Env, got {type(env).__name__}")
        _check_int("every", every, 1)
        _check_int("max_batch", max_batch, 1)
        _check_int("max_pending", max_pending, 1)
        if shaping not in SHAPINGS:
            raise ProgressRewardError(f"shaping: {shaping!r} is not one of {', '.join(SHAPINGS)}")
        if not is_number(gamma) or not 0.0 < gamma <= 1.0:
            raise ProgressRewardError(f"gamma: the discount must be in (0, 1], got {gamma!r}")
        if not is_number(scale):
            raise ProgressRewardError(f"scale: expected a finite number, got {scale!r}")
        if flush_timeout_s is not None and (not is_number(flush_timeout_s) or flush_timeout_s <= 0):
            raise ProgressRewardError(
                f"flush_timeout_s: expected a positive number of seconds or None, got {flush_timeout_s!r}"
            )
        if render is None and getattr(env, "render_mode", None) != "rgb_array":
            raise ProgressRewardError(
                f"render: env.render_mode is {getattr(env, 'render_mode', None)!r}, so env.render() gives no frame; "
                "make the env with render_mode='rgb_array' or pass render=callable(env) -> H x W x 3 uint8 "
                "(for Meta-World: render=MetaWorldCamera(env, 'corner2', 224))"
            )
        if render is not None and not callable(render):
            raise ProgressRewardError(f"render: expected a callable(env) -> frame, got {type(render).__name__}")
        super().__init__(env)
        self.every, self.shaping, self.replace = every, shaping, replace
        self.gamma, self.scale = float(gamma), float(scale)
        self.asynchronous, self.max_pending = asynchronous, max_pending
        self.flush_on_done, self.flush_timeout_s = flush_on_done, flush_timeout_s
        self._render = render
        self.worker = _make_worker(env, demo, backend, goal, options, max_batch)
        self.worker.attach()
        self._closed = False
        self._pending: deque[_Pending] = deque()
        self._clear()

    # -- state ---------------------------------------------------------------------------------

    def _clear(self) -> None:
        for pending in self._pending:
            pending.future.cancel()  # a frame already being scored finishes; its result is dropped
        self._pending = deque()
        self._steps = 0
        self._progress: float | None = None
        self._progress_step: int | None = None
        self._scored = 0
        self._na = 0

    @property
    def progress(self) -> float | None:
        """The latest applied progress estimate in [0, 1] (None before the first of the episode)."""
        return self._progress

    # -- gymnasium API -------------------------------------------------------------------------

    def reset(self, **kwargs):
        self._check_open()
        self._clear()
        obs, info = self.env.reset(**kwargs)
        self._submit(0)
        shaping = self._collect()  # the reset frame is a baseline: it earns nothing
        return obs, {**info, **self._info(shaping)}

    def step(self, action):
        self._check_open()
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        done = bool(terminated or truncated)
        if self._steps % self.every == 0 or done:
            self._submit(self._steps)
        if done and self.flush_on_done:
            self._wait(self.flush_timeout_s, where=f"flushing at the end of the episode (step {self._steps})")
        added = self.scale * self._collect()
        total = added if self.replace else float(reward) + added
        return obs, total, terminated, truncated, {**info, **self._info(added)}

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until this env's pending frames are scored (the next `step` applies them).

        Returns False when `timeout_s` passed first.
        """
        done, not_done = wait_futures([p.future for p in self._pending], timeout=timeout_s)
        return not not_done

    def close(self) -> None:
        """Stop scoring (a worker made by a wrapper closes with the last env using it), close the env."""
        if not self._closed:
            self._closed = True
            self._clear()
            self.worker.release()
        super().close()

    # -- scoring -------------------------------------------------------------------------------

    def _frame(self) -> np.ndarray:
        frame = self._render(self.env) if self._render is not None else self.env.render()
        where = "render" if self._render is not None else "env.render()"
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] not in (3, 4):
            shape = getattr(frame, "shape", type(frame).__name__)
            raise ProgressRewardError(f"{where} at step {self._steps}: expected an H x W x 3 uint8 array, got {shape}")
        return np.array(frame)  # a copy: renderers may reuse their buffer before the worker reads it

    def _submit(self, step: int) -> None:
        frame = self._frame()
        if not self.asynchronous:
            future: Future = Future()
            try:
                future.set_result(self.worker.score_now([frame])[0])
            except Exception as error:
                future.set_exception(error)
            self._pending.append(_Pending(step, future))
            return
        if len(self._pending) >= self.max_pending:
            self._pending[0].future.exception()  # backpressure: wait for the oldest (raised in _collect)
        self._pending.append(_Pending(step, self.worker.submit(frame)))

    def _wait(self, timeout_s: float | None, where: str) -> None:
        if not self.wait(timeout_s):
            raise ProgressRewardError(
                f"{where}: {len(self._pending)} frame(s) still unscored after {timeout_s} s; "
                "raise flush_timeout_s, or set flush_on_done=False to leave them to the next episode's reset"
            )

    def _collect(self) -> float:
        """Apply every finished estimate, oldest first, up to the first unfinished one."""
        shaping = 0.0
        while self._pending and self._pending[0].future.done():
            pending = self._pending.popleft()
            error = pending.future.exception()
            if error is not None:
                raise ProgressRewardError(
                    f"scoring the frame of step {pending.step} failed: {type(error).__name__}: {error}"
                ) from error
            shaping += self._apply(pending.future.result(), pending.step)
        return shaping

    def _apply(self, estimate: Estimate, step: int) -> float:
        self._scored += 1
        if estimate.progress is None:
            self._na += 1
            return 0.0
        term = 0.0 if step == 0 else shaping_term(self.shaping, self._progress, estimate.progress, self.gamma)
        self._progress, self._progress_step = estimate.progress, step
        return term

    def _info(self, added: float) -> dict[str, Any]:
        return {
            "progress": self._progress,
            "progress_reward": added,
            "progress_pending": len(self._pending),
            "progress_stale_steps": None if self._progress_step is None else self._steps - self._progress_step,
            "progress_scored": self._scored,
            "progress_na": self._na,
        }

    def _check_open(self) -> None:
        if self._closed:
            raise ProgressRewardError("this ProgressReward is closed; wrap the env again to keep scoring")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ProgressRewardError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _make_worker(env, demo, backend, goal, options, max_batch) -> ScoringWorker:
    """The given worker, or a new one that closes with the last env using it."""
    if isinstance(backend, (ScoringWorker, ProgressScorer)):
        if demo is not None or goal is not None or options is not None:
            raise ProgressRewardError(
                "demo/goal/options: the shared scorer already holds its goal, demonstration and backend; pass demo=None"
            )
        if isinstance(backend, ScoringWorker):
            if backend.closed:
                raise ProgressRewardError("backend: the shared ScoringWorker is closed")
            return backend
        return ScoringWorker(backend, max_batch, close_when_unused=True)
    if backend is None:
        backend = DEFAULT_BACKEND
    if not isinstance(backend, (str, Backend)):
        raise ProgressRewardError(
            "backend: expected a backend name, a Backend, a ProgressScorer or a ScoringWorker, "
            f"got {type(backend).__name__}"
        )
    if options is not None and not isinstance(backend, str):
        raise ProgressRewardError("options: only used to build a backend from its name; the given Backend has its own")
    if demo is None:
        raise ProgressRewardError("demo: give keyframe images, step descriptions or demo_from_expert(...)")
    if isinstance(demo, ExpertDemo):
        goal, demo = goal or demo.goal, list(demo.keyframes)
    goal = goal or meta_world_goal(env)
    if goal is None:
        raise ProgressRewardError(
            "goal: give the task goal (e.g. goal='open the drawer'); it could not be found from the env"
        )
    scorer = ProgressScorer(goal, demo, backend, options)
    return ScoringWorker(scorer, max_batch, owns_scorer=True, close_when_unused=True)


__all__ = [
    "SHAPINGS",
    "ExpertDemo",
    "MetaWorldCamera",
    "ProgressReward",
    "ProgressRewardError",
    "ScoringWorker",
    "demo_from_expert",
    "shaping_term",
]
