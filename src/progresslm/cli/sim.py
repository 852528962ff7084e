"""`progresslm sim build|tasks`: benchmarks and training pools generated in MuJoCo / Meta-World."""

from __future__ import annotations

import argparse
import sys

from progresslm.builder.engines import ENGINES


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("sim", help="build benchmarks in the MuJoCo / Meta-World simulator")
    commands = parser.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")

    build = commands.add_parser(
        "build",
        help="build bench / sft / rl splits (resumable, cached)",
        description="Build Progress-Bench-style data in the simulator: bench, sft and rl splits with disjoint "
        "tasks, every axis, a dataset card and a contact sheet. A killed build resumes where it stopped.",
    )
    build.add_argument("--preset", default="small", help="small (demo, ~500 samples) | full (>= 3,000 bench samples, "
                       ">= 10,000 per training pool) | tiny (tests), of one family (default Meta-World; --family); "
                       "worlds-small | worlds: small / training-sized for every registered family (docs/sim_families.md)")
    build.add_argument("--tasks", nargs="+", metavar="TASK", help="restrict to these tasks (`progresslm sim tasks`)")
    build.add_argument("--family", help="build one simulator family's tasks (default: metaworld; docs/sim_families.md)")
    build.add_argument("--cameras", nargs="+", metavar="CAMERA", help="cameras to draw from (at least 2)")
    build.add_argument("--out", help="output folder (default: $PROGRESSLM_HOME or ~/.cache/progresslm, sim-PRESET-sSEED)")
    build.add_argument("--size", type=int, default=224, help="image side in pixels")
    build.add_argument("--seed", type=int, default=0, help="seed of the task split, episodes and randomisation")
    build.add_argument("--level", default="default", help="scene randomisation: none | default | strong")
    build.add_argument("--same-episode", action="store_true", help="demo and observation from one episode")
    build.add_argument("--per-interval", type=int, help="observations inside each key-step interval")
    build.add_argument("--workers", type=int, default=2, help="processes (each renders on its own); with --engine "
                       "ray and no cluster address, the CPUs of a local Ray instance")
    build.add_argument("--engine", default="local", choices=ENGINES, help="where episodes are built: local "
                       "processes, or Ray tasks (pip install -e '.[ray]'); on a Ray cluster --out must be on storage "
                       "every node sees, since the workers write the images (docs/scale.md)")
    build.add_argument("--ray-address", metavar="HOST:PORT", help="the Ray cluster's head, e.g. HEAD:6379 (default: "
                       "$RAY_ADDRESS, else a local Ray instance)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(handler=run_build)

    export = commands.add_parser(
        "export-videos", help="expert successes, failures and stalls as a videos folder (for data build and watch "
        "--source)",
        description="Roll out episodes of each task and write them as a users'-data videos folder: TASK/EPISODE."
        "CAMERA.mp4 with a sidecar EPISODE.json holding the goal, the key steps reached (end times and descriptions), "
        "the task's number of key steps, the kind and, for a stall, where it begins (docs/own-data.md, \"Simulated "
        "videos\"). Episodes are named epN (successes) and KIND-epN (failure, random, stall).")
    export.add_argument("--tasks", nargs="+", required=True, metavar="TASK", help="tasks (`progresslm sim tasks`)")
    export.add_argument("--episodes", type=int, default=3, help="episodes per task and kind")
    export.add_argument("--kind", default="success", help="comma list of: success (the expert, every key step), "
                        "failure (the expert's motions, the object never grasped or moved), random (a random "
                        "policy), stall (the expert stopping after key step k and holding still); default success")
    export.add_argument("--stall-step", type=int, metavar="K", help="with --kind stall: stall after key step K "
                        "(1..T-1 for a task of T steps; default: drawn per episode from --seed)")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--cameras", nargs="+", metavar="CAMERA", help="cameras to render (two or more give "
                        "cross-view samples; default: each family's export cameras, e.g. corner3 topview for "
                        "Meta-World)")
    export.add_argument("--size", type=int, default=128, help="frame side in pixels (even)")
    export.add_argument("--stride", type=int, default=1, help="keep every Nth simulator step (Meta-World: 10 steps "
                        "= 1 s; Fetch and panda: 25)")
    export.add_argument("--seed", type=int, default=0, help="seed of the rollouts, stall steps and scene looks")
    export.add_argument("--codec", default="libx264", choices=["libx264", "libsvtav1"], help="H.264 or AV1")
    export.set_defaults(handler=run_export)

    tasks = commands.add_parser("tasks", help="list each simulator family's tasks with their key steps",
                                description="List the tasks of every registered simulator family (or of --family "
                                "NAME) with their key steps, and say per family the pip extra that installs it and "
                                "whether it can run on this machine.")
    tasks.add_argument("--family", help="one family (`progresslm sim tasks` lists them all)")
    tasks.add_argument("--brief", action="store_true", help="task names and goals only, without the key steps")
    tasks.set_defaults(handler=run_tasks)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run_build(args: argparse.Namespace) -> int:
    from progresslm.builder.engines import EngineError, JobError
    from progresslm.sim.mujoco_scene.render import RenderError
    from progresslm.sim.sim_build import SimBuildConfig, SimBuildError, build

    command = getattr(args, "command_line", None) or "progresslm sim build"
    try:
        config = SimBuildConfig(
            preset=args.preset, out=args.out, tasks=args.tasks, family=args.family, cameras=args.cameras, size=args.size,
            seed=args.seed, level=args.level, same_episode=args.same_episode, workers=args.workers,
            engine=args.engine, ray_address=args.ray_address, per_interval=args.per_interval, command=command,
        )
        outcome = build(config, progress=not args.quiet)
    except (SimBuildError, RenderError, EngineError, JobError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((outcome.out / "card.md").read_text())
    print(f"built {outcome.built} episodes in {outcome.seconds:.0f} s; data in {outcome.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from progresslm.sim.export_videos import parse_kinds
    from progresslm.sim.family import UnknownFamilyError, family_of
    from progresslm.sim.mujoco_scene.render import RenderError
    from progresslm.sim.sim_build import simulator_problem

    try:
        kinds = parse_kinds(args.kind)
        families = tuple(dict.fromkeys(family_of(task) for task in args.tasks))
    except (UnknownFamilyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    problem = simulator_problem(families)
    if problem:
        print(f"error: the simulator cannot run here: {problem}", file=sys.stderr)
        return 2
    from progresslm.sim.export_videos import export_videos

    try:
        written = export_videos(args.tasks, args.episodes, Path(args.out), tuple(args.cameras or ()) or None,
                                args.size, args.stride, args.seed, codec=args.codec, kinds=kinds,
                                stall_step=args.stall_step)
    except (RenderError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(written)} episodes ({', '.join(kinds)}) in {args.out}; next: progresslm data build "
          f"videos:{args.out} --out BENCH_DIR")
    return 0


def run_tasks(args: argparse.Namespace) -> int:
    from progresslm.sim.family import UnknownFamilyError, family_names, get_family

    names = [args.family] if args.family else family_names()
    for number, name in enumerate(names):
        try:
            family = get_family(name)
        except UnknownFamilyError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        problem = family.problem()
        state = "runs here" if problem is None else f"cannot run here: {problem}"
        tasks = family.tasks()
        print(("\n" if number else "") + f"# {name}: {len(tasks)} tasks; extra [{family.extra}] "
              f"(pip install -e '.[{family.extra}]'); {state}")
        for task in tasks.values():
            print(f"{task.name}: {task.goal}")
            if not args.brief:
                for step, description in enumerate(task.step_descriptions, start=1):
                    print(f"  {step}. {description}")
    return 0
