"""`progresslm sim build`: a Progress-Bench-style benchmark and training pools from the simulator families
(`sim.family`: Meta-World by default, `--family panda`, or tasks of several families in one build).

Tasks of each family are split into `bench`, `sft` and `rl` with disjoint task sets (deterministic from the seed),
each task contributes episodes ("units"), and units are built in parallel over a process pool
or a Ray cluster (progresslm.builder.engines). Every finished unit is saved at once under `OUT/units/`,
so a killed build resumes where it stopped, with either engine; the split files, the dataset
card and the contact sheet are assembled at the end.
"""

from __future__ import annotations

import atexit
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from progresslm.bench.format import FILE_STEMS
from progresslm.bench.sampling import derive_seed
from progresslm.builder import core
from progresslm.builder.card import SPLITS
from progresslm.builder.engines import engine_problem
from progresslm.io import data_home
from progresslm.sim.family import (
    DEFAULT_FAMILY,
    FAMILIES,
    LEVELS,
    UnknownFamilyError,
    all_tasks,
    family_names,
    get_family,
)
from progresslm.sim.samples import Unit, build_unit, unit_to_json

log = logging.getLogger(__name__)

FORMAT_VERSION = "4"  # bump when a build would write different data: default folders carry it
# v4: cameras framed on each unit's task region; edited observations must show their edit (samples.py)


@dataclass(frozen=True)
class Preset:
    """How many tasks go to each split and how many episodes each task gives, for each family of the build."""

    bench_tasks: int
    rl_tasks: int
    episodes: dict[str, int]  # split -> episodes per task (per family and split with `episodes_per_family`)
    per_interval: int
    families: tuple[str, ...] = (DEFAULT_FAMILY,)  # the families whose tasks the build draws from
    # (bench, rl) shares of each family's tasks, rounded, at least 2 bench tasks and 1 rl task and at most
    # `bench_tasks` / `rl_tasks`; None: the counts themselves (clamped so that every split keeps a task).
    task_shares: tuple[float, float] | None = None
    # True: `episodes` are a family's episodes per split, shared among the split's tasks (rounded up), so a family of
    # 8 tasks gives a split as many episodes as Meta-World's 42 do.
    episodes_per_family: bool = False

    def task_counts(self, n_tasks: int) -> tuple[int, int]:
        """(bench, rl) tasks for a family of `n_tasks` tasks, before `assign_splits` keeps a task for sft.

        >>> PRESETS["worlds"].task_counts(42), PRESETS["worlds"].task_counts(8), PRESETS["worlds"].task_counts(6)
        ((8, 6), (2, 1), (2, 1))
        """
        if self.task_shares is None:
            return self.bench_tasks, self.rl_tasks
        bench, rl = (round(share * n_tasks) for share in self.task_shares)
        return min(max(bench, 2), self.bench_tasks), min(max(rl, 1), self.rl_tasks)

    def episodes_per_task(self, split: str, n_tasks: int) -> int:
        """Episodes each of a family's `n_tasks` tasks of `split` gives.

        >>> PRESETS["worlds"].episodes_per_task("rl", 6), PRESETS["worlds"].episodes_per_task("sft", 5)
        (34, 40)
        """
        episodes = self.episodes.get(split, 0)
        return -(-episodes // max(n_tasks, 1)) if self.episodes_per_family else episodes


# Every registered family, in registry order: the mixed presets are the same for the same code on every machine
# (a family that cannot run here fails the build with the extra to install; a new family changes the preset).
WORLDS = tuple(FAMILIES)

PRESETS = {
    # The demo default: every axis, ~550 benchmark samples, about a minute on 2 cores.
    "small": Preset(bench_tasks=5, rl_tasks=4, episodes={"bench": 2, "sft": 0, "rl": 0}, per_interval=3),
    # Progress-Bench-sized: >= 3,000 benchmark samples; training pools of >= 10,000 samples each.
    "full": Preset(bench_tasks=8, rl_tasks=6, episodes={"bench": 8, "sft": 7, "rl": 34}, per_interval=3),
    # For tests: seconds, not minutes.
    "tiny": Preset(bench_tasks=1, rl_tasks=1, episodes={"bench": 1, "sft": 1, "rl": 0}, per_interval=1),
    # `small` for every family, each family's tasks split on their own: Meta-World's 5 bench tasks as in `small`,
    # 5 of Fetch's 8 (a bench split only: no training episodes).
    "worlds-small": Preset(bench_tasks=5, rl_tasks=4, episodes={"bench": 2, "sft": 0, "rl": 0}, per_interval=3,
                           families=WORLDS),
    # Training-sized, for every family: 19 % of a family's tasks for bench (2 to 8), 14 % for rl (1 to 6), the rest
    # for sft; per family and split the episodes of `full` on Meta-World (8 x 8 bench, 28 x 7 sft, 6 x 34 rl),
    # shared among the split's tasks: Meta-World's 42 tasks give exactly `full`'s plan, a family of 8 tasks
    # 2 x 32 bench, 5 x 40 sft and 1 x 204 rl episodes, one of 6 tasks 2 x 32, 3 x 66 and 1 x 204.
    "worlds": Preset(bench_tasks=8, rl_tasks=6, episodes={"bench": 64, "sft": 196, "rl": 204}, per_interval=3,
                     families=WORLDS, task_shares=(0.19, 0.14), episodes_per_family=True),
}


class SimBuildError(ValueError):
    pass


@dataclass
class SimBuildConfig:
    preset: str = "small"
    out: str | None = None
    tasks: list[str] | None = None  # default: every task of the families
    family: str | None = None  # build one family's tasks (default: the tasks' families, else the preset's)
    cameras: list[str] | None = None  # default: each family's cameras (one family only)
    size: int = 224
    seed: int = 0
    level: str = "default"  # scene randomisation between demo and observation episodes
    same_episode: bool = False  # demo and observation from one episode (as the authors' same-view samples)
    workers: int = 2  # local processes, or the CPUs of a local Ray instance
    engine: str = "local"  # local | ray (progresslm.builder.engines)
    ray_address: str | None = None  # a Ray cluster's head (HOST:6379); None: $RAY_ADDRESS, else a local instance
    episodes: dict[str, int] | None = None  # override the preset's episodes per task per split
    per_interval: int | None = None  # observations inside each key-step interval (default: the preset's)
    command: str = ""

    def __post_init__(self) -> None:

        if self.preset not in PRESETS:
            raise SimBuildError(f"unknown preset {self.preset!r}; valid presets: {', '.join(PRESETS)}")
        if self.family is not None and self.family not in family_names():
            raise SimBuildError(f"unknown simulator family {self.family!r}; valid families: {', '.join(family_names())}")
        try:
            valid = all_tasks(self.families)
        except UnknownFamilyError as error:
            raise SimBuildError(str(error)) from None
        unknown = [t for t in self.tasks or () if t not in valid]
        if unknown:
            raise SimBuildError(f"unknown task(s) {', '.join(unknown)}; valid tasks: {', '.join(valid)}")
        if self.cameras is not None:
            if len(self.families) > 1:
                raise SimBuildError("--cameras needs a build of one family; this one has "
                                    f"{', '.join(self.families)} (use --family or --tasks of one family)")
            own = get_family(self.families[0]).cameras.all
            bad = [c for c in self.cameras if c not in own]
            if bad:
                raise SimBuildError(f"unknown camera(s) {', '.join(bad)}; valid cameras: {', '.join(own)} "
                                    f"({self.families[0]})")
        if self.cameras is not None and len(self.cameras) < 2:
            raise SimBuildError("give at least 2 cameras: cross-view samples need a second one")
        if self.level not in LEVELS:
            raise SimBuildError(f"unknown randomisation level {self.level!r}; valid levels: {', '.join(LEVELS)}")
        if self.size < 28:
            raise SimBuildError(f"--size must be at least 28 px, got {self.size}")
        if self.workers < 1:
            raise SimBuildError(f"--workers must be at least 1, got {self.workers}")
        problem = engine_problem(self.engine, self.ray_address)
        if problem:
            raise SimBuildError(problem)

    @property
    def resolved_preset(self) -> Preset:
        return PRESETS[self.preset]

    @property
    def families(self) -> tuple[str, ...]:
        """The build's families: --family, else those of --tasks, else the preset's."""
        if self.family is not None:
            return (self.family,)
        if self.tasks:
            tasks = all_tasks()
            return tuple(dict.fromkeys(tasks[t].family for t in self.tasks if t in tasks)) or (DEFAULT_FAMILY,)
        return self.resolved_preset.families

    def task_names(self) -> list[str]:
        return list(self.tasks or all_tasks(self.families))

    def default_out(self) -> Path:
        """DATA_HOME/sim-[FAMILIES-]PRESET-sSEED-vVERSION: the families are named when they are not the preset's own
        (`sim-small-...` is Meta-World's small preset, `sim-fetch-small-...` Fetch's, `sim-worlds-small-...` every
        family's, `sim-metaworld+fetch-tiny-...` the tiny preset on tasks of two families)."""
        own = self.families == self.resolved_preset.families
        prefix = "" if own else "+".join(self.families) + "-"
        return data_home() / f"sim-{prefix}{self.preset}-s{self.seed}-v{FORMAT_VERSION}"

    def card_settings(self) -> dict:
        """What the dataset card records of these settings."""
        settings = {"preset": self.preset, "seed": self.seed, "size": self.size, "level": self.level,
                    "same_episode": self.same_episode, "cameras": list(self.cameras or []) or "all scene cameras",
                    "command": self.command, "settings_shown": ["seed", "size", "level", "same_episode", "cameras"]}
        if self.families != (DEFAULT_FAMILY,):
            settings["families"] = list(self.families)
            settings["settings_shown"].insert(0, "families")
        return settings

    def identity(self) -> dict:
        """What must match for an existing folder to be resumed."""
        data = asdict(self)
        for key in ("out", "workers", "engine", "ray_address", "command"):
            data.pop(key)
        data["version"] = FORMAT_VERSION
        data["preset_values"] = asdict(self.resolved_preset)
        # Meta-World-only builds keep the identity they had before families, so their folders still resume; so do
        # the presets older than the fields that mixed presets added.
        values = data["preset_values"]
        if list(values["families"]) == [DEFAULT_FAMILY]:
            del values["families"]
        for name in ("task_shares", "episodes_per_family"):
            if values[name] == Preset.__dataclass_fields__[name].default:
                del values[name]
        if data["family"] in (None, DEFAULT_FAMILY):  # --family metaworld is the default's build: the same folder
            del data["family"]
        return json.loads(json.dumps(data))  # as build.json holds it (tuples as lists), so a resume compares equal


def assign_splits(tasks: list[str], seed: int, bench_tasks: int, rl_tasks: int) -> dict[str, list[str]]:
    """Disjoint task sets for bench, rl and sft (the rest), the same for the same seed.

    >>> s = assign_splits([f"t{i}" for i in range(10)], 0, 3, 2)
    >>> [len(s[k]) for k in ("bench", "sft", "rl")], set(s["bench"]) & set(s["sft"])
    ([3, 5, 2], set())
    """
    if len(tasks) < 2:
        raise SimBuildError(f"need at least 2 tasks (one for bench, one for training), got {len(tasks)}")
    order = sorted(tasks)
    np.random.default_rng(derive_seed("splits", seed)).shuffle(order)
    bench_tasks = max(min(bench_tasks, len(order) - 1), 1)
    rl_tasks = max(min(rl_tasks, len(order) - bench_tasks - 1), 0)
    return {
        "bench": sorted(order[:bench_tasks]),
        "rl": sorted(order[bench_tasks : bench_tasks + rl_tasks]),
        "sft": sorted(order[bench_tasks + rl_tasks :]),
    }


def split_tasks(config: SimBuildConfig) -> dict[str, list[str]]:
    """The build's task splits: each family's tasks split on their own (so every family has bench tasks), merged."""
    preset = config.resolved_preset
    known = all_tasks(config.families)
    by_family: dict[str, list[str]] = {}
    for task in config.task_names():
        by_family.setdefault(known[task].family, []).append(task)
    if len(by_family) == 1:
        tasks = next(iter(by_family.values()))
        return assign_splits(tasks, config.seed, *preset.task_counts(len(tasks)))
    merged: dict[str, list[str]] = {split: [] for split in SPLITS}
    for family, tasks in by_family.items():
        if len(tasks) < 2:
            raise SimBuildError(f"family {family} has {len(tasks)} task in this build ({', '.join(tasks)}); each "
                                "family needs at least 2 (one for bench, another for the wrong-task demonstrations)")
        for split, names in assign_splits(tasks, config.seed, *preset.task_counts(len(tasks))).items():
            merged[split] += names
    return merged


def plan_units(config: SimBuildConfig, splits: dict[str, list[str]]) -> list[Unit]:

    preset = config.resolved_preset
    episodes = {**preset.episodes, **(config.episodes or {})}
    known = all_tasks(config.families)
    units = []
    for split in SPLITS:
        tasks = splits[split]
        for task in tasks:
            family = known[task].family
            cameras = tuple(config.cameras or get_family(family).cameras.all)
            kin = [t for t in tasks if known[t].family == family]
            count = episodes[split] if split in (config.episodes or {}) else preset.episodes_per_task(split, len(kin))
            for index in range(count):
                # The wrong-task demonstration comes from the same split and family, so bench never shows training
                # tasks and another world's scene never stands for a wrong task.
                others = [t for t in kin if t != task] or [
                    t for s in SPLITS for t in splits[s] if t != task and known[t].family == family]
                other = others[(kin.index(task) + index) % len(others)]
                units.append(Unit(
                    split=split, task=task, index=index, other_task=other, seed=config.seed, size=config.size,
                    cameras=cameras, level=config.level,
                    per_interval=config.per_interval if config.per_interval is not None else preset.per_interval,
                    same_episode=config.same_episode, family=family,
                ))  # fmt: skip
    return units


@dataclass
class BuildOutcome:
    out: Path
    files: dict[str, list[Path]]  # split -> JSONL files
    samples: dict[str, dict[str, int]]  # split -> file stem -> rows
    success: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> attempts, successes
    invisible_edits: dict[str, int] = field(default_factory=dict)  # edit kind -> edits not made (no frame showed them)
    seconds: float = 0.0
    frames: int = 0
    built: int = 0  # units built in this call (the rest were resumed)

    def bench_files(self) -> list[Path]:
        return self.files["bench"]

    @property
    def image_root(self) -> Path:
        return self.out / "images"


_WORKERS: dict = {}  # the process's family workers: envs and renderers live across units and tasks


def _worker(args: tuple[Unit, str]) -> dict:
    unit, images = args
    if unit.family not in _WORKERS:
        _WORKERS[unit.family] = get_family(unit.family).worker()
        # Closed before the interpreter tears down: a GL context left to the garbage collector at exit prints an
        # EGLError traceback per context. Registered here, after MuJoCo's EGL set-up registered its own exit
        # handlers, because atexit runs the last registered first (registered at import, it runs too late).
        atexit.unregister(_close_pool)  # once per process, however many builds it runs
        atexit.register(_close_pool)
    result = build_unit(unit, Path(images), _WORKERS[unit.family])
    return unit_to_json(result)


def build(config: SimBuildConfig, progress: bool = True) -> BuildOutcome:
    """Build (or resume, or reuse) the dataset described by `config`."""
    out = Path(config.out) if config.out else config.default_out()
    identity = config.identity()
    if not (out / core.DONE).exists():
        check_families(config)
    if core.open_build(out, identity, SimBuildError):
        return _outcome_from_disk(out)

    splits = split_tasks(config)
    units = plan_units(config, splits)
    core.write_manifest(out, {"identity": identity, "splits": splits, "units": len(units), "command": config.command})
    paths = [out / "units" / f"{u.key}.json" for u in units]
    todo = core.pending(paths, out / "images")

    start = time.perf_counter()
    core.run_units(_worker, [(units[i], str(out / "images")) for i in todo],
                   [f"unit {units[i].key} (seed {units[i].seed})" for i in todo], [paths[i] for i in todo],
                   out / "images", engine=config.engine, workers=config.workers, address=config.ray_address,
                   desc="sim build", total=len(units), progress=progress, cleanup=_close_pool)  # the in-process pool
    outcome = assemble(out, units, splits, config)
    outcome.seconds, outcome.built = time.perf_counter() - start, len(todo)
    return outcome


def _close_pool() -> None:
    while _WORKERS:
        _WORKERS.popitem()[1].close()


def assemble(out: Path, units: list[Unit], splits: dict[str, list[str]], config: SimBuildConfig) -> BuildOutcome:
    """Split files from the unit files, then the dataset card and contact sheet."""
    rows, saved = core.rows_by_split([out / "units" / f"{u.key}.json" for u in units], [u.split for u in units])
    success: dict[str, dict[str, int]] = {}
    invisible: dict[str, int] = {}
    frames = 0
    for data in saved:
        for task, n in data["attempts"].items():
            entry = success.setdefault(task, {"attempts": 0, "successes": 0})
            entry["attempts"] += n
            entry["successes"] += data["successes"].get(task, 0)
        frames += data["frames_rendered"]
        for kind, n in data.get("invisible_edits", {}).items():
            invisible[kind] = invisible.get(kind, 0) + n
    outcome = BuildOutcome(out=out, files={}, samples={}, success=success, invisible_edits=invisible, frames=frames)
    return core.finish(outcome, rows, splits, config.card_settings(),
                       f"Simulated progress benchmark ({config.preset} preset)", FORMAT_VERSION)


def _outcome_from_disk(out: Path) -> BuildOutcome:
    files = {s: [out / s / f"{stem}.jsonl" for stem in FILE_STEMS] if (out / s).is_dir() else [] for s in SPLITS}
    card = json.loads((out / "card.json").read_text()) if (out / "card.json").exists() else {}
    counts = {
        s: {p.stem: sum(1 for line in p.read_text().splitlines() if line.strip()) for p in paths}
        for s, paths in files.items()
    }
    return BuildOutcome(out=out, files=files, samples=counts, success=card.get("success", {}))


def check_families(config: SimBuildConfig) -> None:
    """Refuse, before anything is written, a build with a family that cannot run here (naming the extra to install).
    A folder built with other families (a mixed preset when the registry grew) is refused by `core.open_build`."""
    problems = family_problems(config.families)
    if problems:
        runnable = [name for name in config.families if name not in problems]
        hint = f"; or build the families that can: --family {' / '.join(runnable)}" if runnable and len(
            config.families) > 1 else ""
        raise SimBuildError(f"{config.preset} build of {', '.join(config.families)}: "
                            + "; ".join(f"{name} cannot run here: {p}" for name, p in problems.items()) + hint)


def family_problems(families: Sequence[str]) -> dict[str, str]:
    """Each of `families` that cannot run on this machine, with why (a package missing: its extra; no working
    offscreen GL). Creates nothing."""
    return {name: problem for name in families if (problem := get_family(name).problem())}


def simulator_problem(families: tuple[str, ...] = (DEFAULT_FAMILY,)) -> str | None:
    """Why the simulator families cannot run on this machine (a package missing, no working offscreen GL), or None.
    Creates nothing: callers ask before a build, so that a machine without the simulator is left no partial build."""
    problems = family_problems(families)
    if not problems:
        return None
    name, problem = next(iter(problems.items()))
    return problem if len(families) == 1 else f"{name}: {problem}"


def small_bench_ready() -> bool:
    """Whether the small preset is built already (then no simulator is needed to use it)."""
    config = SimBuildConfig(preset="small")
    return (data_home() / f"sim-{config.preset}-s{config.seed}-v{FORMAT_VERSION}" / "DONE").exists()


def build_small_bench(progress: bool = True) -> BuildOutcome:
    """The default benchmark of `progresslm eval`: the small preset, built on first use."""
    return build(SimBuildConfig(preset="small", command="progresslm sim build --preset small"), progress=progress)
