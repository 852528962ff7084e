"""Issue 25, the three checks left: a build resumed over a manifest, split file or card a kill or a disk left broken
(refused in one line, or written again; never trusted); every JSON that `data build` and `watch` write is strict JSON
under hostile numbers; and a LeRobot dataset read from the Hugging Face cache never follows a link out of its cache
folder."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from data.own_data import write_videos
from helpers import tiny_sim_config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from progresslm.builder import core
from progresslm.cli.main import main

# --- 1. a resumed build trusts no broken build-level file ----------------------------------------------------------

BROKEN_MANIFESTS = {
    "truncated": lambda text: text[: len(text) // 2],
    "not JSON": lambda text: "\x00\x17garbage",
    "not UTF-8": lambda text: "\udcff",
    "a list": lambda text: "[]",
    "identity not an object": lambda text: json.dumps({"identity": 5}),
}


def _break(path: Path, how: str) -> None:
    text = BROKEN_MANIFESTS[how](path.read_text())
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return write_videos(tmp_path_factory.mktemp("leftovers") / "videos", cameras=("top",))


def data_build(source: Path, out: Path, *extra: str) -> list[str]:
    return ["data", "build", f"videos:{source}", "--out", str(out), "--size", "32", "--quiet", *extra]


def split_lines(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.glob("*/*.jsonl"))}


@pytest.mark.parametrize("how", sorted(BROKEN_MANIFESTS))
def test_data_build_refuses_a_manifest_it_cannot_read_in_one_line(videos, tmp_path, capsys, how):
    """Before: an unreadable build.json counted as no previous build, so the units of a build made with other
    settings (here 32 px, asked 48 px) were reused as they were; an `identity` that is not an object was a
    traceback."""
    out = tmp_path / "out"
    assert main(data_build(videos, out)) == 0
    _break(out / core.MANIFEST, how)
    capsys.readouterr()
    assert main(data_build(videos, out, "--size", "48")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert f"{out / core.MANIFEST} is not a readable build manifest" in err and "delete the folder" in err, err


def test_data_build_after_done_writes_a_split_file_cut_short_again(videos, tmp_path):
    out = tmp_path / "out"
    assert main(data_build(videos, out)) == 0
    before = split_lines(out)
    bench = out / "bench" / "visual_same_view.jsonl"
    bench.write_text(bench.read_text()[:300])  # cut inside a row, DONE still there
    assert main(data_build(videos, out)) == 0
    assert split_lines(out) == before and (out / core.DONE).exists()


@pytest.fixture
def sim_copy(tiny_sim_build, tmp_path) -> Path:
    """The session's tiny simulator build, copied so that a test may break it."""
    out = tmp_path / "sim"
    shutil.copytree(tiny_sim_build.out, out)
    return out


@pytest.mark.parametrize("how", ["truncated", "not JSON"])
def test_sim_build_refuses_a_manifest_it_cannot_read(sim_copy, how):
    """Before: a finished folder was reused whatever its build.json held."""
    from progresslm.sim.sim_build import SimBuildError, build

    _break(sim_copy / core.MANIFEST, how)
    with pytest.raises(SimBuildError) as caught:
        build(tiny_sim_config(sim_copy), progress=False)
    message = str(caught.value)
    assert "\n" not in message and f"{sim_copy / core.MANIFEST} is not a readable build manifest" in message


@pytest.mark.parametrize("name", ["bench/visual_same_view.jsonl", "sft/text-normal.jsonl", "card.json"])
def test_sim_build_after_done_writes_a_file_cut_short_again(sim_copy, caplog, name):
    """Before: DONE was trusted, so a split file cut short (here at a line's end, so every line still parses) was
    read back as a smaller benchmark, and a card.json cut short was a JSONDecodeError traceback."""
    from progresslm.sim.sim_build import build

    before = {**split_lines(sim_copy), "card": json.loads((sim_copy / "card.json").read_text())["samples"]}
    path = sim_copy / name
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1] if name.endswith(".jsonl") else text[:50])
    outcome = build(tiny_sim_config(sim_copy), progress=False)
    assert outcome.built == 0  # nothing simulated again: the units were whole
    assert {**split_lines(sim_copy), "card": json.loads((sim_copy / "card.json").read_text())["samples"]} == before
    assert f"{name} is missing or not as the build wrote it" in caplog.text
    assert core.open_build(sim_copy, tiny_sim_config(sim_copy).identity())  # done again, and whole


# --- 2. every JSON that data build and watch write is strict JSON ---------------------------------------------------


def strict_json(text: str):
    """`json.loads` that refuses NaN, Infinity and -Infinity, as strict readers (browsers, jq, Go, Rust) do."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def assert_strict_json(out: Path) -> int:
    """Every .json and .jsonl file under `out` parses strictly; returns how many rows name an obs_time."""
    times = 0
    for path in sorted(out.rglob("*.json*")):
        texts = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
        for number, text in enumerate(texts, 1):
            try:
                data = strict_json(text)
            except ValueError as err:
                raise AssertionError(f"{path.relative_to(out)}:{number}: {err}") from None
            times += isinstance(data, dict) and isinstance(data.get("episode"), dict) and "obs_time" in data["episode"]
    return times


def small_source(root: Path, kind: str, sidecar: dict | None = None) -> Path:
    """Two tasks of two 10-frame episodes (32 px): `videos` or `frames`, each with `sidecar` as its JSON sidecar."""
    from PIL import Image

    from progresslm.data.video import write_video

    for t, task in enumerate(("pick_cup", "open_drawer")):
        for e in range(2):
            frames = []
            for i in range(10):
                pixels = np.full((32, 32, 3), 20 + 100 * e, np.uint8)
                pixels[4:28, 2 + i : 6 + i, t] = 250
                frames.append(pixels)
            if kind == "videos":
                write_video(root / task / f"ep{e}.mp4", frames, 10.0)
            else:
                (root / task / f"ep{e}").mkdir(parents=True)
                for i, pixels in enumerate(frames):
                    Image.fromarray(pixels).save(root / task / f"ep{e}" / f"f{i:02d}.png")
            if sidecar is not None:
                (root / task / f"ep{e}.json").write_text(json.dumps(sidecar))  # NaN / Infinity as Python writes them
    return root


def build_or_refuse(source: str, out: Path, **options) -> None:
    """A data build that must either stop with a one-line error or write only strict JSON, obs_time included."""
    from progresslm.data.data_build import DataBuildConfig, DataBuildError, build
    from progresslm.data.episodes import EpisodeSourceError

    try:
        config = DataBuildConfig(source=source, out=str(out), keyframes=options.pop("keyframes", "uniform:2"),
                                 per_interval=1, size=32, **options)  # fmt: skip
        build(config, progress=False)
    except (DataBuildError, EpisodeSourceError) as err:
        assert "\n" not in str(err), err
        return
    assert assert_strict_json(out) > 0


HOSTILE_RATES = st.floats() | st.floats(min_value=0, max_value=1e4, exclude_min=True)


@given(fps=HOSTILE_RATES, kind=st.sampled_from(["videos sidecar", "frames --fps"]))
@example(fps=5e-324, kind="videos sidecar")
@example(fps=1e-310, kind="frames --fps")
@example(fps=math.nan, kind="videos sidecar")
@example(fps=math.inf, kind="frames --fps")
@example(fps=25.0, kind="videos sidecar")
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_data_build_writes_strict_json_whatever_the_frame_rate(tmp_path_factory, fps, kind):
    """Before: a rate that passed as above 0 but vanishing (5e-324, 1e-310 fps) put frame 1 at an infinite time:
    `"obs_time": Infinity` in the unit files and bench rows."""
    root = tmp_path_factory.mktemp("rate")
    if kind == "videos sidecar":
        build_or_refuse(f"videos:{small_source(root / 'src', 'videos', {'fps': fps})}", root / "out")
    else:
        build_or_refuse(f"frames:{small_source(root / 'src', 'frames')}", root / "out", fps=fps)


@given(end=st.floats(min_value=0.5))
@example(end=1e308)
@example(end=math.inf)
@settings(max_examples=8, deadline=None)
def test_data_build_writes_strict_json_whatever_the_key_step_times(tmp_path_factory, end):
    """Before: a key step ending at 1e308 s (finite, so accepted) made `end * fps` infinite: an OverflowError
    traceback instead of the last frame."""
    root = tmp_path_factory.mktemp("steps")
    sidecar = {"steps": [{"end": 0.3, "text": "reach"}, {"end": end, "text": "lift"}]}
    build_or_refuse(f"frames:{small_source(root / 'src', 'frames', sidecar)}", root / "out", keyframes="auto")


@pytest.mark.parametrize("fps", ["nan", "inf", "-inf", "5e-324"])
def test_data_build_refuses_an_fps_option_that_is_not_a_rate_for_every_source(tmp_path, capsys, fps):
    """Before: videos ignore --fps, so `--fps nan` passed unchecked into build.json as `"fps": NaN` (and the next
    run's NaN != NaN then refused the folder as built "with other settings (fps)")."""
    source = small_source(tmp_path / "src", "videos")
    capsys.readouterr()
    assert main(data_build(source, tmp_path / "out", f"--fps={fps}")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --fps is ") and "not a frame rate" in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fps", ["5e-324", "1e-300", "0.5", "1e300"])
def test_watch_writes_strict_json_or_refuses_whatever_the_frame_rate(tmp_path, capsys, fps):
    """Held already: a folder's frames at a vanishing rate are refused ("timestamps[1] ... got inf")."""
    from PIL import Image

    demo, frames = tmp_path / "demo", tmp_path / "frames"
    for folder, count in ((demo, 3), (frames, 5)):
        folder.mkdir()
        for i in range(count):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"f{i}.png")
    out = tmp_path / "run"
    capsys.readouterr()
    code = main(["watch", str(frames), "--demo-dir", str(demo), "--goal", "open the drawer", "--backend", "pixel-nn",
                 "--out", str(out), "--quiet", "--fps", fps])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert err.startswith("error: ") and "\n" not in err, err
    else:
        assert (out / "events.json").is_file()
    if out.exists():
        assert_strict_json(out)


def test_watch_over_episodes_refuses_a_vanishing_sidecar_rate(tmp_path, capsys):
    source = small_source(tmp_path / "src", "videos", {"fps": 1e-310})
    capsys.readouterr()
    code = main(["watch", "--source", f"videos:{source}", "--demo-episode", "0", "--goal", "open the drawer",
                 "--backend", "pixel-nn", "--out", str(tmp_path / "run"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert "ep0.json: fps is 1e-310, not a frame rate" in err, err


# --- 3. a LeRobot dataset read from the Hugging Face cache stays in its cache folder --------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "someone/tiny-robot"


@pytest.fixture(scope="module")
def lerobot_v3(tmp_path_factory) -> Path:
    from data.lerobot_fixture import write_lerobot

    return write_lerobot(tmp_path_factory.mktemp("lerobot") / "v3", "v3.0")


def hub_cache(cache: Path, source: Path, repo: str = REPO) -> Path:
    """`source` laid out as huggingface_hub caches a dataset: each file a blob named by its hash in
    `datasets--<owner>--<name>/blobs/`, linked from `snapshots/<commit>/<path>` by a relative link (`../../blobs/..`
    and deeper), and `refs/main` naming the commit. Returns the snapshot folder."""
    import hashlib
    import os

    folder = cache / f"datasets--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / COMMIT
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        blob = folder / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture
def offline_hub(monkeypatch):
    """The real huggingface_hub, offline: snapshot_download answers from the cache alone."""
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_a_hub_cache_snapshot_made_of_links_to_its_blobs_is_read(lerobot_v3, tmp_path, offline_hub):
    from data.lerobot_fixture import CAMERAS, frame_code

    from progresslm.data.episode_sources import open_episodes

    snapshot = hub_cache(tmp_path / "hub", lerobot_v3)
    assert (snapshot / "meta" / "info.json").is_symlink()
    for location in (REPO, str(snapshot)):  # by Hub id, and the snapshot folder given as a path
        episodes = open_episodes(location, cache_dir=str(tmp_path / "hub"))
        assert len(episodes) == 5
        frames = episodes[4].read(CAMERAS[0], [0, 19])
        assert [frame_code(p, CAMERAS[0]) for p in frames] == [(4, 0), (4, 19)]


@pytest.mark.parametrize("target", ["meta/info.json", "data/chunk-000/file-000.parquet",
                                    "videos/observation.images.top/chunk-000/file-001.mp4", "videos (a folder)",
                                    "another dataset's blob"])  # fmt: skip
@pytest.mark.parametrize("by", ["hub id", "snapshot path"])
def test_a_link_in_the_hub_cache_that_leads_out_of_the_dataset_is_refused_naming_it(
        lerobot_v3, tmp_path, offline_hub, target, by):  # fmt: skip
    """Before: the snapshot's paths were checked by name only, so a link in it was followed anywhere on disk (here
    to a copy of the file outside the cache, which was then read as the dataset's own; or to /etc/passwd)."""
    from data.lerobot_fixture import CAMERAS

    from progresslm.data.episode_sources import open_episodes
    from progresslm.data.episodes import EpisodeSourceError

    cache = tmp_path / "hub"
    snapshot = hub_cache(cache, lerobot_v3)
    outside = tmp_path / "elsewhere"
    if target == "videos (a folder)":
        link = snapshot / "videos"
        shutil.copytree(lerobot_v3 / "videos", outside / "videos")
        shutil.rmtree(link)
        link.symlink_to(outside / "videos", target_is_directory=True)
    else:
        link = snapshot / (target if target != "another dataset's blob" else "meta/info.json")
        if target == "another dataset's blob":  # inside the cache, but another dataset's folder
            other = hub_cache(cache, lerobot_v3, "someone/other-robot")
            real = (other / "meta" / "info.json").resolve()
        else:
            real = outside / target
            real.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(lerobot_v3 / target, real)
        link.unlink()
        link.symlink_to(real)
    with pytest.raises(EpisodeSourceError) as caught:
        episodes = open_episodes(REPO if by == "hub id" else str(snapshot), cache_dir=str(cache))
        episodes[4].read(CAMERAS[0], [0])  # the video of episode 4 is read (and linked) only now
    message = str(caught.value)
    assert "\n" not in message and f"{link} leads outside the dataset's Hugging Face cache folder" in message, message


def test_a_snapshot_link_to_etc_passwd_is_refused(lerobot_v3, tmp_path, offline_hub, capsys):
    snapshot = hub_cache(tmp_path / "hub", lerobot_v3)
    link = snapshot / "meta" / "tasks.parquet"
    link.unlink()
    link.symlink_to("/etc/passwd")
    capsys.readouterr()
    assert main(["data", "episodes", f"lerobot:{snapshot}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert f"{link} leads outside" in err and "/etc/passwd" in err, err
