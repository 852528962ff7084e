"""Done and stall from data (issue 27 item 4): which `done` and `stall` thresholds should `watch` and
`ProgressMonitor` use by default?

Material: a videos folder of simulated episodes whose truth is known (`progresslm sim export-videos --kind
success,failure,stall,random`, docs/own-data.md "Simulated videos"): per task folder the videos and each episode's
sidecar (`kind`, `key_steps`, `stall` {after_step, frame, time}, `fps`).

1. Score (cached, resumable): the default model (matcher) answers every frame of every episode, at the video's own
   rate, on the task's first camera, against one success of the task as the demonstration (the last success; that
   success itself against the one before it, so no episode is its own demonstration). The raw answers go to
   CACHE/<task>/<episode>.json; an episode whose file is complete is not scored again.
2. Replay (offline): the cached answers go through `ProgressMonitor` (the real class, fed by a scorer that hands
   back the cached answers) under every setting of a grid of done_threshold x done_frames x stall rule
   (stall_seconds or stall_frames) x min_gain; every other monitor parameter at its default. Each episode is
   followed by TAIL seconds of its last frame (the camera running on after the episode; the matcher answers an
   identical frame identically, so the cached last answer is repeated at the episode's rate), so a done can be
   seen after a success's true end and a stall can run on past a short hold.
3. Scores per setting, per family and pooled:
   - done rate on successes (a done event), done delay = done time - the true end (the last key step's end;
     negative: before it);
   - false-done rate on failures, random episodes and stalls (any done event);
   - stall rate on stalls (a stall event at or after the hold begins, the sidecar's `stall.time`), stall delay
     from that time;
   - false-stall rate on successes (a stall event before the true end);
   - score = (done rate - false-done rate) + (stall rate - false-stall rate), in [-2, 2].
   The proposed setting maximises the pooled score, ties broken by the smaller |median done delay| + median stall
   delay, then by fewer changes from today's defaults. Held-out family: the setting chosen on the other two
   families, scored on the held-out one (beside that family's own best). Meta-World is the matcher's training
   world (in domain); Fetch and panda are worlds it never saw.

    python experiments/done_stall_study.py                                # runs/sim-kinds, cache runs/done-stall
    python experiments/done_stall_study.py --videos runs/sim-kinds --cache runs/done-stall --tail 2

Writes experiments/results/done_stall.md and .json (the whole grid in the JSON) and prints the tables. Scoring
takes /tmp/progresslm-heavy.lock (shared with other jobs on the machine) once, when the first
episode must be scored, or goes on without it after --lock-wait seconds (it is light: tens of ms per frame).
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")  # the sim registry is read for families; no simulator is imported

from PIL import Image

from progresslm.backends.base import BackendOptions
from progresslm.backends.registry import DEFAULT_BACKEND
from progresslm.data.episode_sources import open_episodes
from progresslm.online.frame_sources import episode_source, sample_indices
from progresslm.online.monitor import ProgressMonitor, value_order_correlation
from progresslm.online.scorer import Estimate, ProgressScorer
from progresslm.online.watching import demo_from_episode
from progresslm.sim.family import family_of
from progresslm.types import Status

LOCK = Path("/tmp/progresslm-heavy.lock")
RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("success", "failure", "random", "stall")
BATCH = 16  # frames per scorer call while caching

# Today's defaults (ProgressMonitor's keyword defaults, also `watch`'s and `serve`'s).
DEFAULTS = {"done_threshold": 0.95, "done_frames": 2, "stall_seconds": 10.0, "stall_frames": None, "min_gain": 0.02}
# The grid. Stall rules: time-based (stall_frames off) or frame-based (stall_seconds off). Holds in the material
# are 1 to 4 s (Fetch and panda run at 25 frames/s, Meta-World at 10), hence the short times.
DONE_THRESHOLDS = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
DONE_FRAMES = (1, 2, 3, 5)
STALL_RULES = tuple((s, None) for s in (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)) + tuple((None, f) for f in (5, 10, 20))
MIN_GAINS = (0.01, 0.02, 0.05, 0.1)


class StudyError(ValueError):
    """A bad input to the study: says what and where."""


# ---- the material -------------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """What the sidecar says of one episode: its kind, the true end of a success and the start of a stall's hold."""

    source: str  # the videos folder's name
    task: str
    family: str
    episode: str
    kind: str
    fps: float
    end_t: float | None  # a success: the last key step's end (s)
    stall_t: float | None  # a stall: when the hold begins (s)


def read_truth(folder: Path, episode_id: str, family: str) -> Truth:
    """The sidecar FOLDER/EPISODE.json of one episode."""
    path = folder / f"{episode_id}.json"
    try:
        side = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise StudyError(f"{path}: cannot read the sidecar ({err})") from None
    kind = side.get("kind")
    if kind not in KINDS:
        raise StudyError(f"{path}: kind {kind!r} is not one of {', '.join(KINDS)}")
    ends = [step["end"] for step in side.get("key_steps", []) if step.get("reached")]
    end_t = max(ends) if kind == "success" and ends else None
    stall = side.get("stall") or {}
    if kind == "stall" and stall.get("time") is None:
        raise StudyError(f"{path}: a stall without stall.time")
    return Truth(folder.parent.name, folder.name, family, episode_id, kind, float(side["fps"]), end_t, stall.get("time"))


@dataclass
class Answers:
    """The cached raw answers of one episode (progress in [0, 1] or None), with what produced them."""

    truth: Truth
    demo: str
    camera: str
    backend: str
    model: str
    t: list[float] = field(default_factory=list)
    raw: list[float | None] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    complete: bool = False
    seconds: float = 0.0  # scoring time


def cache_path(cache: Path, truth: Truth) -> Path:
    return cache / truth.source / truth.task / f"{truth.episode}.json"


def load_answers(path: Path) -> Answers | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data["truth"] = Truth(**data["truth"])
    return Answers(**data)


def save_answers(path: Path, answers: Answers) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(answers), indent=1) + "\n")
    tmp.replace(path)


class HeavyLock:
    """The machine's heavy-job lock (flock(1) on the same file), taken the first time the model must score (a
    rerun over a full cache never waits), waiting at most `wait_s` seconds: the matcher's scoring is light (tens
    of ms per frame on a quiet core), so a long job holding the lock for hours does not stop the study; it goes on
    without the lock and says so."""

    def __init__(self, wait_s: float):
        self.wait_s = wait_s
        self._handle = None
        self._tried = False

    def take(self) -> None:
        if self._tried:
            return
        self._tried = True
        handle = open(LOCK, "a")  # noqa: SIM115 (held until release())
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._handle = handle
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    print(f"  note: {LOCK} is held by another job after {self.wait_s:g} s; scoring without it",
                          flush=True)  # fmt: skip
                    return
                time.sleep(2.0)

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def score_task(folder: Path, cache: Path, backend: str, lock: HeavyLock) -> list[Answers]:
    """Every episode of one task folder, scored (or read from the cache); `lock` is taken before the model runs."""
    episodes = open_episodes(f"videos:{folder}")
    family = family_of(folder.name)
    truths = [read_truth(folder, e.id, family) for e in episodes]
    successes = [e for e, t in zip(episodes, truths) if t.kind == "success"]
    if len(successes) < 2:
        raise StudyError(f"{folder}: needs two successes (one is the other's demonstration), has {len(successes)}")
    out: list[Answers] = []
    todo: dict[str, list] = {}  # demonstration id -> (episode, truth) to score against it
    for episode, truth in zip(episodes, truths):
        demo = successes[-2] if episode.id == successes[-1].id else successes[-1]
        cached = load_answers(cache_path(cache, truth))
        if cached is not None and cached.complete and cached.demo == demo.id and cached.backend == backend:
            out.append(cached)
        else:
            todo.setdefault(demo.id, []).append((episode, truth))
    by_id = {e.id: e for e in episodes}
    for demo_id, items in todo.items():
        lock.take()
        images, _, camera = demo_from_episode(by_id[demo_id], None, "auto")
        with ProgressScorer(by_id[demo_id].task, images, backend=backend, options=BackendOptions(),
                                          mode="two-stage", demo_kind="visual") as scorer:  # fmt: skip
            for episode, truth in items:
                start = time.perf_counter()
                source = episode_source(episode, camera, episode.fps, 1)
                answers = Answers(truth, demo_id, source.camera, backend, scorer.backend.model_name)
                batch: list = []
                frames = list(source.frames)
                for i in range(0, len(frames), BATCH):
                    batch = frames[i:i + BATCH]
                    for frame, estimate in zip(batch, scorer.score([f.image for f in batch])):
                        answers.t.append(frame.t)
                        answers.raw.append(estimate.progress)
                        answers.status.append(estimate.status.value)
                answers.complete = True
                answers.seconds = round(time.perf_counter() - start, 2)
                save_answers(cache_path(cache, truth), answers)
                print(f"  scored {truth.task}/{truth.episode} ({truth.kind}): {len(frames)} frames in "
                      f"{answers.seconds:.1f} s against {demo_id}", flush=True)
                out.append(answers)
    order = {e.id: i for i, e in enumerate(episodes)}
    return sorted(out, key=lambda a: order[a.truth.episode])


# ---- replay -------------------------------------------------------------------------------


class ReplayScorer:
    """Hands back cached answers in order, as a `ProgressScorer` would have answered the frames."""

    def __init__(self, raw: Sequence[float | None], status: Sequence[str]):
        self._estimates = [Estimate(r, Status(s), None, "", 0.0) for r, s in zip(raw, status)]
        self._next = 0

    def score(self, observations, draws=None) -> list[Estimate]:
        n = len(observations)
        if self._next + n > len(self._estimates):
            raise StudyError("replay: more frames asked than cached")
        out = self._estimates[self._next:self._next + n]
        self._next += n
        return out


_FRAME = Image.new("RGB", (8, 8))  # what the monitor is handed; the replay scorer ignores it


def replay_track(answers: Answers, tail_s: float, rate: float | None) -> tuple[list[float], list, list[str]]:
    """(times, raw, status) to replay: the cached frames sampled at `rate` (None: every frame, as cached) as
    `watch --fps` samples them, then the last answer repeated at that rate for `tail_s` seconds."""
    n = len(answers.t)
    if n == 0:
        raise StudyError(f"{answers.truth.task}/{answers.truth.episode}: no cached frames")
    fps = answers.truth.fps
    step_rate = fps if rate is None else min(rate, fps)
    chosen = list(range(n)) if rate is None else sample_indices(range(n), fps, step_rate, 1)
    t = [answers.t[i] for i in chosen]
    raw = [answers.raw[i] for i in chosen]
    status = [answers.status[i] for i in chosen]
    for k in range(1, int(round(tail_s * step_rate)) + 1):
        t.append(answers.t[-1] + k / step_rate)
        raw.append(answers.raw[-1])
        status.append(answers.status[-1])
    return t, raw, status


@dataclass(frozen=True)
class Outcome:
    """What the monitor said of one episode under one setting."""

    done_t: float | None
    stall_ts: tuple[float, ...]
    final: float | None  # smoothed progress on the last frame of the episode itself (before the tail)


def replay(track: tuple[list[float], list, list[str]], n_video: int, setting: dict) -> Outcome:
    times, raw, status = track
    monitor = ProgressMonitor(ReplayScorer(raw, status), **setting)
    monitor.update_many([_FRAME] * len(times), times)
    done = [e.t for e in monitor.events if e.kind == "done"]
    final = monitor.history[n_video - 1].smoothed
    return Outcome(done[0] if done else None, tuple(e.t for e in monitor.events if e.kind == "stall"), final)


# ---- scores -------------------------------------------------------------------------------


def _rate(hits: int, n: int) -> float | None:
    return None if n == 0 else round(hits / n, 4)


def _median(values: list[float]) -> float | None:
    return None if not values else round(statistics.median(values), 3)


def scores(pairs: list[tuple[Truth, Outcome]]) -> dict:
    """The detection figures of one setting over some episodes (see the module docstring)."""
    success = [(t, o) for t, o in pairs if t.kind == "success"]
    negative = [(t, o) for t, o in pairs if t.kind != "success"]
    stalls = [(t, o) for t, o in pairs if t.kind == "stall"]
    done_delays = [o.done_t - t.end_t for t, o in success if o.done_t is not None]
    stall_delays = []
    for t, o in stalls:
        after = [s for s in o.stall_ts if s >= t.stall_t - 1e-9]
        if after:
            stall_delays.append(after[0] - t.stall_t)
    false_stall = sum(any(s < t.end_t - 1e-9 for s in o.stall_ts) for t, o in success)
    row = {
        "successes": len(success), "negatives": len(negative), "stalls": len(stalls),
        "done_rate": _rate(len(done_delays), len(success)),
        "done_delay_median_s": _median(done_delays),
        "false_done_rate": _rate(sum(o.done_t is not None for _, o in negative), len(negative)),
        "false_done_by_kind": {k: _rate(sum(o.done_t is not None for t, o in negative if t.kind == k),
                                        sum(t.kind == k for t, _ in negative))
                               for k in ("failure", "random", "stall")},
        "stall_rate": _rate(len(stall_delays), len(stalls)),
        "stall_delay_median_s": _median(stall_delays),
        "false_stall_rate": _rate(false_stall, len(success)),
    }  # fmt: skip
    parts = [row["done_rate"], row["false_done_rate"], row["stall_rate"], row["false_stall_rate"]]
    row["score"] = None if None in parts else round(parts[0] - parts[1] + parts[2] - parts[3], 4)
    return row


def grid() -> list[dict]:
    return [{"done_threshold": d, "done_frames": f, "stall_seconds": s, "stall_frames": sf, "min_gain": g}
            for d, f, (s, sf), g in itertools.product(DONE_THRESHOLDS, DONE_FRAMES, STALL_RULES, MIN_GAINS)]


def changes(setting: dict) -> int:
    return sum(setting[k] != DEFAULTS[k] for k in DEFAULTS)


def rank_key(row: dict) -> tuple:
    """Best first: the higher score, then the smaller |median done delay| + median stall delay (a missing delay
    counts as 10 s), then fewer changes from today's defaults."""
    s = row["scores"]
    done = abs(s["done_delay_median_s"]) if s["done_delay_median_s"] is not None else 10.0
    stall = s["stall_delay_median_s"] if s["stall_delay_median_s"] is not None else 10.0
    return (-(s["score"] if s["score"] is not None else -9), round(done + stall, 3), changes(row["setting"]))


def evaluate_grid(all_answers: list[Answers], settings: list[dict], tail_s: float, rate: float | None,
                  groups: dict[str, set[str]]) -> list[dict]:
    """Every setting's scores in every group of families (name -> families)."""
    tracks = [(a.truth, replay_track(a, tail_s, rate), _n_video(a, rate)) for a in all_answers]
    rows = []
    for setting in settings:
        outcomes = [(truth, replay(track, n, setting)) for truth, track, n in tracks]
        rows.append({"setting": setting,
                     "by_group": {name: scores([p for p in outcomes if p[0].family in fams])
                                  for name, fams in groups.items()},
                     "finals": [(t.family, t.kind, o.final) for t, o in outcomes]})  # fmt: skip
    return rows


def _n_video(answers: Answers, rate: float | None) -> int:
    n = len(answers.t)
    return n if rate is None else len(sample_indices(range(n), answers.truth.fps, min(rate, answers.truth.fps), 1))


def pick(rows: list[dict], group: str) -> dict:
    return min(rows, key=lambda r: rank_key({"scores": r["by_group"][group], "setting": r["setting"]}))


# ---- tables -------------------------------------------------------------------------------


def describe_setting(s: dict) -> str:
    stall = f"{s['stall_seconds']:g} s" if s["stall_seconds"] is not None else f"{s['stall_frames']} frames"
    return f"done >= {s['done_threshold']:.0%} x {s['done_frames']}, stall {stall}, min_gain {s['min_gain']:.0%}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _sec(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


def table(rows: list[tuple[str, dict, str]]) -> str:
    """Rows of (label, scores, group)."""
    head = ("| setting | families | done | done delay s | false done (fail/rand/stall) | stall | stall delay s "
            "| false stall | score |\n|---|---|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    lines = [head]
    for label, s, group in rows:
        by = s["false_done_by_kind"]
        lines.append(f"| {label} | {group} | {_pct(s['done_rate'])} ({s['successes']}) | {_sec(s['done_delay_median_s'])} "
                     f"| {_pct(s['false_done_rate'])} ({_pct(by['failure'])}/{_pct(by['random'])}/{_pct(by['stall'])}) "
                     f"| {_pct(s['stall_rate'])} ({s['stalls']}) | {_sec(s['stall_delay_median_s'])} "
                     f"| {_pct(s['false_stall_rate'])} | {s['score']:+.2f} |")  # fmt: skip
    return "\n".join(lines)


def model_table(all_answers: list[Answers], finals: list[tuple[str, str, float | None]], families: list[str]) -> str:
    """What the model gives the monitor, per family and kind: VOC of the raw answers and the final smoothed %
    (today's defaults), against issue 27's targets (success VOC >= 0.9, final >= 85; failure final <= 40)."""
    lines = ["| family | kind | episodes | mean VOC (raw) | final smoothed % (min-max) |", "|---|---|---:|---:|---|"]
    for fam in families:
        for kind in KINDS:
            chosen = [(a, f) for a, (ff, k, f) in zip(all_answers, finals) if ff == fam and k == kind]
            if not chosen:
                continue
            vocs = [v for v in (value_order_correlation(_steps(a)) for a, _ in chosen) if v is not None]
            fin = [100 * f for _, f in chosen if f is not None]
            voc = f"{statistics.mean(vocs):.2f}" if vocs else "n/a"
            lines.append(f"| {fam} | {kind} | {len(chosen)} | {voc} | {statistics.mean(fin):.0f} "
                         f"({min(fin):.0f}-{max(fin):.0f}) |")  # fmt: skip
    return "\n".join(lines)


def material_table(all_answers: list[Answers], families: list[str]) -> str:
    """Per family: frames per second, success length (the true end is its last key step, so a done in the video
    itself can only come at its end) and the stall holds' length (hold start to the video's end), in seconds."""
    lines = ["| family | frames/s | successes: true end s (min-max) | video end - true end s | stall hold s (min-max) |",
             "|---|---:|---|---|---|"]  # fmt: skip
    for fam in families:
        mine = [a for a in all_answers if a.truth.family == fam]
        ends = [a.truth.end_t for a in mine if a.truth.kind == "success"]
        after = [a.t[-1] - a.truth.end_t for a in mine if a.truth.kind == "success"]
        holds = [a.t[-1] - a.truth.stall_t for a in mine if a.truth.kind == "stall"]
        rates = sorted({a.truth.fps for a in mine})
        span = lambda xs: f"{min(xs):.2f}-{max(xs):.2f}" if xs else "n/a"  # noqa: E731
        lines.append(f"| {fam} | {', '.join(f'{r:g}' for r in rates)} | {span(ends)} | {span(after)} | {span(holds)} |")
    return "\n".join(lines)


def _steps(a: Answers) -> list:
    @dataclass
    class _S:
        t: float
        raw: float | None

    return [_S(t, r) for t, r in zip(a.t, a.raw)]


# ---- the study ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, nargs="+", default=[Path("runs/sim-kinds")],
                        help="exported videos folders (TASK/ folders of episodes and sidecars)")
    parser.add_argument("--cache", type=Path, default=Path("runs/done-stall"), help="where raw answers are cached")
    parser.add_argument("--backend", default=DEFAULT_BACKEND)
    parser.add_argument("--tail", type=float, default=2.0, help="seconds of the last frame after each episode")
    parser.add_argument("--rate", type=float, help="replay sampling rate, frames/s (default: every frame)")
    parser.add_argument("--out", type=Path, default=RESULTS / "done_stall", help="OUT.md and OUT.json")
    parser.add_argument("--lock-wait", type=float, default=60.0,
                        help=f"seconds to wait for {LOCK} before scoring without it")
    parser.add_argument("--score-only", action="store_true", help="fill the cache and stop")
    args = parser.parse_args(argv)
    if not math.isfinite(args.tail) or args.tail < 0:
        print(f"error: --tail: expected seconds >= 0, got {args.tail:g}", file=sys.stderr)
        return 2
    if args.rate is not None and not (math.isfinite(args.rate) and args.rate > 0):
        print(f"error: --rate: expected frames/s > 0, got {args.rate:g}", file=sys.stderr)
        return 2
    folders = []
    for videos in args.videos:
        found = sorted(p for p in videos.glob("*") if (p / "task.txt").is_file())
        if not found:
            print(f"error: --videos: {videos} holds no task folder (TASK/task.txt)", file=sys.stderr)
            return 2
        folders.extend(found)
    if len({v.name for v in args.videos}) < len(args.videos):
        print("error: --videos: two folders share a name (the cache keeps them apart by name)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    all_answers: list[Answers] = []
    lock = HeavyLock(args.lock_wait)
    try:
        for folder in folders:
            print(f"{folder.parent.name}/{folder.name}:", flush=True)
            all_answers.extend(score_task(folder, args.cache, args.backend, lock))
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        lock.release()
    scoring_s = sum(a.seconds for a in all_answers)
    print(f"cache: {len(all_answers)} episodes, {sum(len(a.t) for a in all_answers)} frames "
          f"(scoring time recorded: {scoring_s:.0f} s)", flush=True)
    if args.score_only:
        return 0

    families = sorted({a.truth.family for a in all_answers}, key=["metaworld", "fetch", "panda"].index)
    groups = {"pooled": set(families)} | {f: {f} for f in families}
    groups |= {f"without {f}": set(families) - {f} for f in families} if len(families) > 1 else {}
    replay_start = time.perf_counter()
    settings = grid()
    if DEFAULTS not in settings:
        settings.append(dict(DEFAULTS))
    rows = evaluate_grid(all_answers, settings, args.tail, args.rate, groups)
    default_row = next(r for r in rows if r["setting"] == DEFAULTS)
    best = pick(rows, "pooled")
    watch_rate_row, best_watch_rate = evaluate_grid(all_answers, [dict(DEFAULTS), best["setting"]], args.tail, 2.0,
                                                    groups)  # fmt: skip
    replay_s = time.perf_counter() - replay_start

    key_rows: list[tuple[str, dict, str]] = []
    for group in ["pooled", *families]:
        key_rows.append(("today's defaults", default_row["by_group"][group], group))
    for group in ["pooled", *families]:
        key_rows.append(("today's defaults, 2 frames/s (watch's rate)", watch_rate_row["by_group"][group], group))
    for group in ["pooled", *families]:
        key_rows.append((f"proposed: {describe_setting(best['setting'])}", best["by_group"][group], group))
    for group in ["pooled", *families]:
        key_rows.append(("proposed, 2 frames/s (watch's rate)", best_watch_rate["by_group"][group], group))
    heldout_rows: list[tuple[str, dict, str]] = []
    heldout = {}
    for fam in families if len(families) > 1 else []:
        chosen = pick(rows, f"without {fam}")
        own = pick(rows, fam)
        heldout[fam] = {"chosen_on_others": chosen["setting"], "own_best": own["setting"]}
        heldout_rows.append((f"chosen without {fam}: {describe_setting(chosen['setting'])}",
                             chosen["by_group"][fam], fam))  # fmt: skip
        heldout_rows.append((f"{fam}'s own best: {describe_setting(own['setting'])}", own["by_group"][fam], fam))
    top = sorted(rows, key=lambda r: rank_key({"scores": r["by_group"]["pooled"], "setting": r["setting"]}))[:10]
    top_rows = [(describe_setting(r["setting"]), r["by_group"]["pooled"], "pooled") for r in top]
    differs = {k: (DEFAULTS[k], best["setting"][k]) for k in DEFAULTS if DEFAULTS[k] != best["setting"][k]}
    # What the data does not decide: every value a parameter takes among the settings tied at the best score.
    tied = [r["setting"] for r in rows if r["by_group"]["pooled"]["score"] == best["by_group"]["pooled"]["score"]]
    tied_values = {k: sorted({s[k] for s in tied}, key=lambda v: (v is None, v)) for k in DEFAULTS}

    n_kind = {k: sum(a.truth.kind == k for a in all_answers) for k in KINDS}
    text = "\n\n".join([
        "# Done and stall thresholds from data (issue 27 item 4)",
        f"`python experiments/done_stall_study.py --videos {' '.join(map(str, args.videos))} --cache {args.cache} --tail {args.tail:g}"
        + (f" --rate {args.rate:g}`" if args.rate else "`")
        + f" ({time.strftime('%Y-%m-%d')}, 2-core CPU shared with other jobs). Model: {all_answers[0].model} "
        f"({args.backend}). Material: {len(all_answers)} episodes of {len({f.name for f in folders})} tasks "
        f"({', '.join(f'{n_kind[k]} {k}' for k in KINDS)}), families {', '.join(families)}; Meta-World is the "
        "matcher's training world (in domain), Fetch and panda are worlds it never saw. Replay "
        + ("at every frame of the video (10 frames/s Meta-World, 25 Fetch and panda)" if args.rate is None
           else f"at {args.rate:g} frames/s")
        + f", each episode followed by {args.tail:g} s of its last frame. Grid: {len(settings)} settings. "
        "Score = (done - false done) + (stall - false stall); delays are medians over the detected episodes, "
        "done from the last key step's end (negative: before it), stall from the start of the hold.",
        "## Material\n\n" + material_table(all_answers, families),
        "## Key rows\n\n" + table(key_rows),
        "## Held-out family (the setting chosen on the other two families)\n\n" + table(heldout_rows),
        "## Top 10 settings, pooled\n\n" + table(top_rows),
        "## What the model gives the monitor (today's defaults)\n\n"
        + model_table(all_answers, default_row["finals"], families),
        "## Proposed vs today's defaults\n\n"
        + (f"Today's defaults: {describe_setting(DEFAULTS)} (pooled score {default_row['by_group']['pooled']['score']:+.2f}). "
           f"Proposed: {describe_setting(best['setting'])} (pooled score {best['by_group']['pooled']['score']:+.2f}). "
           + ("It differs from today's defaults in " + ", ".join(f"{k} ({a} -> {b})" for k, (a, b) in differs.items())
              + "." if differs else "It is today's defaults.")
           + f" {len(tied)} settings share the best pooled score; the values among them: "
           + "; ".join(f"{k} {', '.join('off' if v is None else f'{v:g}' for v in vals)}"
                       for k, vals in tied_values.items())
           + " (a parameter with several values there is set by the delay tie-break, not by the rates)."
           + " The defaults in src/ are not changed by this study."),
        f"Scoring {scoring_s:.0f} s (cached; recorded per episode), replay of the grid {replay_s:.0f} s, "
        f"this run {time.perf_counter() - start:.0f} s.",
    ])  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text + "\n")
    record = {"command": sys.argv, "model": all_answers[0].model, "backend": args.backend, "tail_s": args.tail,
              "rate": args.rate, "defaults": DEFAULTS, "proposed": best["setting"], "differs": differs,
              "heldout": heldout, "tied_at_best": tied_values, "episodes": n_kind, "scoring_s": scoring_s, "replay_s": round(replay_s, 1),
              "defaults_at_2fps": watch_rate_row["by_group"], "proposed_at_2fps": best_watch_rate["by_group"],
              "grid": [{"setting": r["setting"], "by_group": {g: r["by_group"][g] for g in ["pooled", *families]}}
                       for r in rows]}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(record, separators=(",", ":")) + "\n")  # one line: 1120 rows
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
