"""progresslm.builder.engines: the local pool and Ray return the same results and name a failing job; `sim build` and
`data build` write the same files with either engine, and resume with Ray. Tests marked `ray` skip where ray is not
installed (`pip install -e '.[ray]'`)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import shutil
import sys
from contextlib import closing
from pathlib import Path

import pytest

from progresslm.builder.engines import RAY_HINT, EngineError, JobError, engine_problem, run_jobs
from progresslm.cli.main import main
from progresslm.data.data_build import DataBuildConfig, DataBuildError
from progresslm.data.data_build import build as data_build
from tests.data.own_data import write_videos

HAS_RAY = importlib.util.find_spec("ray") is not None


def results(finished) -> dict[int, object]:
    with closing(finished) as done:
        return dict(done)


def same_files(a: Path, b: Path, pattern: str) -> list[str]:
    """The files under `a` matching `pattern` (relative paths), after checking that `b` holds the same bytes."""
    names = sorted(str(p.relative_to(a)) for p in a.glob(pattern) if p.is_file())
    assert names == sorted(str(p.relative_to(b)) for p in b.glob(pattern) if p.is_file())
    assert [n for n in names if (a / n).read_bytes() != (b / n).read_bytes()] == []
    return names


def same_build(a: Path, b: Path) -> None:
    """Unit files, split files and images byte for byte (the card holds timings, so it is left out)."""
    assert len(same_files(a, b, "units/*/*.json")) >= 2
    assert len(same_files(a, b, "*/*.jsonl")) >= 5
    assert len(same_files(a, b, "images/**/*.jpg")) > 10


@pytest.fixture(scope="module", autouse=True)
def _process_as_found():
    """`ray.init` leaves marks on the process after `ray.shutdown` (environment variables such as PYTHONBREAKPOINT
    and RAY_AUTH_MODE, sys.excepthook, a SIGTERM handler): undone for the tests that come after, and a $RAY_ADDRESS
    of the machine kept out of these."""
    import os
    import signal

    environ, excepthook, sigterm = dict(os.environ), sys.excepthook, signal.getsignal(signal.SIGTERM)
    os.environ.pop("RAY_ADDRESS", None)
    yield
    os.environ.clear()
    os.environ.update(environ)
    sys.excepthook = excepthook
    signal.signal(signal.SIGTERM, sigterm)


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module: the engine reuses a connection this process has (it takes ~5 s to
    start one)."""
    if not HAS_RAY:
        pytest.skip(f"ray is not installed: {RAY_HINT}")
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_videos(tmp_path_factory.mktemp("videos"))


def data_config(videos: Path, out: Path, **engine) -> DataBuildConfig:
    return DataBuildConfig(source=f"videos:{videos}", out=str(out), per_interval=2, size=48, **engine)


@pytest.fixture(scope="module")
def data_one_process(videos, tmp_path_factory):
    return data_build(data_config(videos, tmp_path_factory.mktemp("data") / "w1"), progress=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_local_engine_returns_every_result_and_names_the_failing_job(workers):
    jobs = [5, 0, 3, 7]
    got = results(run_jobs(math.factorial, jobs, [f"job {j}" for j in jobs], engine="local", workers=workers))
    assert got == {0: 120, 1: 1, 2: 6, 3: 5040}
    with pytest.raises(JobError, match=r"job minus one failed: ValueError: factorial\(\) not defined") as caught:
        results(run_jobs(math.factorial, [4, -1], ["job four", "job minus one"], workers=workers))
    assert "factorial" in caught.value.remote_traceback  # where it was raised, in the worker


def test_bad_engine_settings_say_what_to_do(tmp_path, monkeypatch, capsys):
    assert engine_problem("spark") == "unknown engine 'spark'; valid engines: local, ray"
    assert "add --engine ray" in engine_problem("local", "head:6379")
    with pytest.raises(DataBuildError, match="--workers must be at least 1"):
        DataBuildConfig(source="videos:x", out=str(tmp_path), workers=0)
    # ray missing (its import blocked here, as where it is not installed): the install hint, and nothing written
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(EngineError, match=r"ray is not installed; pip install -e '\.\[ray\]' \(in the progresslm"):
        results(run_jobs(math.factorial, [1], ["job one"], engine="ray"))
    out = tmp_path / "bench"
    assert main(["data", "build", f"videos:{tmp_path}", "--out", str(out), "--engine", "ray", "--quiet"]) == 2
    assert RAY_HINT in capsys.readouterr().err and not out.exists()


def test_data_build_over_two_processes_writes_what_one_does(videos, data_one_process, tmp_path):
    two = data_build(data_config(videos, tmp_path / "w2", workers=2), progress=False)
    assert two.built == data_one_process.built == 6
    same_build(data_one_process.out, two.out)


@pytest.mark.ray
def test_data_build_on_a_local_ray_instance_from_the_command_line(videos, data_one_process, tmp_path):
    """The command line's path: the engine starts a Ray instance of --workers CPUs itself, and shuts it down."""
    if not HAS_RAY:
        pytest.skip(f"ray is not installed: {RAY_HINT}")
    import ray

    if ray.is_initialized():  # it would be reused: this test is about the engine starting its own
        pytest.skip("a Ray instance is already running in this process")
    out = tmp_path / "ray"
    assert main(["data", "build", f"videos:{videos}", "--out", str(out), "--per-interval", "2", "--size", "48",
                 "--engine", "ray", "--workers", "2", "--quiet"]) == 0
    same_build(data_one_process.out, out)
    assert not ray.is_initialized()


@pytest.mark.ray
@pytest.mark.skipif(not HAS_RAY, reason=f"ray is not installed: {RAY_HINT}")
def test_an_address_nothing_answers_at_fails_at_once():
    import socket

    import ray

    if ray.is_initialized():  # the connection would be reused, whatever the address
        pytest.skip("a Ray instance is already running in this process")
    with socket.socket() as free:  # a port nothing listens at once it is closed
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(EngineError, match=rf"no Ray cluster answers at 127.0.0.1:{port} .*ray start --head"):
        results(run_jobs(math.factorial, [1], ["job one"], engine="ray", address=f"127.0.0.1:{port}"))


@pytest.mark.ray
def test_ray_engine_returns_every_result_and_names_the_failing_job(ray_instance):
    jobs = list(range(8))
    got = results(run_jobs(math.factorial, jobs, [f"job {j}" for j in jobs], engine="ray"))
    assert got == {j: math.factorial(j) for j in jobs}
    with pytest.raises(JobError, match=r"unit bench/x__001 failed: ValueError: factorial\(\) not defined"):
        results(run_jobs(math.factorial, [2, -3], ["unit bench/x__000", "unit bench/x__001"], engine="ray"))


@pytest.fixture(scope="module")
def sim_local(request):
    from progresslm.sim.sim_build import simulator_problem

    problem = simulator_problem()
    if problem:
        pytest.skip(f"no simulator: {problem}")
    return request.getfixturevalue("tiny_sim_build")  # the tiny build of the sim tests: local, in one process


@pytest.fixture(scope="module")
def sim_ray(sim_local, ray_instance, tmp_path_factory):
    from helpers import tiny_sim_config

    from progresslm.sim.sim_build import build

    config = dataclasses.replace(tiny_sim_config(tmp_path_factory.mktemp("sim") / "ray"), engine="ray", workers=2)
    return build(config, progress=False)


@pytest.mark.ray
def test_sim_build_on_ray_writes_what_the_local_engine_does(sim_local, sim_ray):
    assert sim_ray.built == 2
    same_build(sim_local.out, sim_ray.out)
    assert json.loads((sim_ray.out / "build.json").read_text())["identity"] == \
        json.loads((sim_local.out / "build.json").read_text())["identity"]  # the engine is not part of the data


@pytest.mark.ray
def test_a_killed_ray_build_resumes_with_ray(sim_local, sim_ray, tmp_path):
    from helpers import tiny_sim_config

    from progresslm.sim.sim_build import build

    out = tmp_path / "resumed"
    shutil.copytree(sim_ray.out, out)
    (out / "DONE").unlink()
    victim = sorted((out / "units").glob("*/*.json"))[0]
    victim.unlink()
    for path in out.glob("*/*.jsonl"):
        path.write_text("half written")
    resumed = build(dataclasses.replace(tiny_sim_config(out), engine="ray"), progress=False)
    assert resumed.built == 1 and victim.is_file()
    same_build(sim_local.out, resumed.out)


def _other_families() -> list[str]:
    from progresslm.sim.family import DEFAULT_FAMILY, FAMILIES

    return sorted(name for name in FAMILIES if name != DEFAULT_FAMILY)


@pytest.mark.ray
@pytest.mark.parametrize("family", _other_families())
def test_every_other_family_builds_on_ray_what_it_builds_locally(family, ray_instance, tmp_path):
    """Each family beside Meta-World (from the registry, so a new one is checked the day it lands): a tiny seeded
    build with the local engine in one process and with Ray over two workers gives the same bytes."""
    from progresslm.sim.family import get_family
    from progresslm.sim.sim_build import SimBuildConfig, build

    problem = get_family(family).problem()
    if problem:
        pytest.skip(f"{family} cannot run here: {problem}")
    made = {}
    for engine, workers in (("local", 1), ("ray", 2)):
        config = SimBuildConfig(preset="tiny", family=family, out=str(tmp_path / engine), size=64, engine=engine,
                                workers=workers, seed=5)
        made[engine] = build(config, progress=False)
    assert made["ray"].built == made["local"].built >= 2
    same_build(made["local"].out, made["ray"].out)
