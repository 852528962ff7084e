"""LeRobot datasets (v3.0 and v2.1, H.264 and AV1 videos or PNG image features) read into Episodes: metadata,
per-frame columns, the right frames out of files that pack many episodes, Hub downloads and clear errors."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("av")
pytest.importorskip("pyarrow")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from progresslm.data import lerobot, video  # noqa: E402
from progresslm.data.episode_sources import open_episodes  # noqa: E402
from progresslm.data.episodes import EpisodeSourceError  # noqa: E402
from progresslm.data.lerobot import fetch_lerobot, open_lerobot  # noqa: E402
from tests.data.lerobot_fixture import (  # noqa: E402
    CAMERAS,
    EPISODE_TASKS,
    FPS,
    LENGTHS,
    TASKS,
    frame_code,
    subtask,
    write_lerobot,
)

VERSIONS = ["v3.0", "v2.1"]
CODECS = ["libx264", "libsvtav1", "png"]  # png: cameras stored as image features in the frame Parquet


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Every version x codec written once for the module (about a second in all)."""
    base = tmp_path_factory.mktemp("lerobot")
    return {(v, c): write_lerobot(base / f"{v}-{c}", v, c) for v in VERSIONS for c in CODECS}


@pytest.fixture
def copy(datasets, tmp_path):
    """A private copy of one dataset, for tests that break it."""
    def make(version: str = "v3.0", codec: str = "libx264") -> Path:
        return Path(shutil.copytree(datasets[version, codec], tmp_path / "ds"))
    return make


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("version", VERSIONS)
def test_metadata_and_columns(datasets, version, codec):
    episodes = open_lerobot(str(datasets[version, codec]))
    assert [e.index for e in episodes] == list(range(5))
    assert [e.id for e in episodes] == [f"episode_{i:06d}" for i in range(5)]
    assert [e.task for e in episodes] == [TASKS[t] for t in EPISODE_TASKS]
    assert [e.length for e in episodes] == LENGTHS
    for e in episodes:
        assert (e.source, e.cameras, e.fps, e.keysteps) == ("lerobot", tuple(CAMERAS), float(FPS), None)
        assert set(e.columns) == {"timestamp", "subtask_index"}  # no state/action vectors, no standard columns
        assert e.columns["subtask_index"] == [subtask(f, e.length) for f in range(e.length)]
        assert e.columns["timestamp"] == pytest.approx([f / FPS for f in range(e.length)])


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("version", VERSIONS)
def test_frames_of_an_episode_in_the_second_file(datasets, version, codec):
    """Episode 4 starts 1.4 s into v3.0's file-001: every frame must be its own, in the order asked."""
    episode = open_lerobot(str(datasets[version, codec]))[4]
    top = episode.read(CAMERAS[0], range(episode.length))
    assert [frame_code(p, CAMERAS[0]) for p in top] == [(4, f) for f in range(episode.length)]
    assert top[0].shape == (48, 64, 3) and top[0].dtype.name == "uint8"
    wrist = episode.read(CAMERAS[1], [19, 0, 7, 7])
    assert [frame_code(p, CAMERAS[1]) for p in wrist] == [(4, 19), (4, 0), (4, 7), (4, 7)]


@pytest.mark.parametrize("codec", ["libx264", "libsvtav1"])
def test_first_and_last_frames_of_packed_episodes(datasets, codec):
    """At each boundary between episodes packed back to back, no frame comes from the neighbour."""
    for episode in open_lerobot(str(datasets["v3.0", codec])):
        last = episode.length - 1
        for camera in CAMERAS:
            codes = [frame_code(p, camera) for p in episode.read(camera, [0, last])]
            assert codes == [(episode.index, 0), (episode.index, last)]


def test_decoding_is_lazy_and_one_pass_per_read(datasets, monkeypatch):
    calls = []
    real = video.decode

    def counting(path, **kwargs):
        calls.append((Path(path).name, list(kwargs["times"])))
        return real(path, **kwargs)

    monkeypatch.setattr(lerobot, "decode", counting)  # the reader's own name for it
    episodes = open_lerobot(str(datasets["v3.0", "libx264"]))
    assert calls == []
    frames = episodes[4].read(CAMERAS[0], [3, 1, 2])
    assert calls == [("file-001.mp4", pytest.approx([1.4 + 0.1, 1.4 + 0.2, 1.4 + 0.3]))]
    assert [frame_code(p, CAMERAS[0]) for p in frames] == [(4, 3), (4, 1), (4, 2)]


def test_open_episodes_recognises_lerobot(datasets):
    root = datasets["v2.1", "libx264"]
    for spec in (str(root), f"lerobot:{root}"):
        assert [e.task for e in open_episodes(spec)] == [TASKS[t] for t in EPISODE_TASKS]


# --- errors -------------------------------------------------------------------------------------------------------


def test_missing_info_json(copy):
    root = copy()
    (root / "meta" / "info.json").unlink()
    with pytest.raises(EpisodeSourceError, match=r"not a LeRobot dataset .*meta/info\.json is missing"):
        open_lerobot(str(root))


def test_unsupported_version_names_the_supported_ones(copy):
    root = copy()
    info = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(EpisodeSourceError,
                       match=r"info\.json: codebase_version 'v1\.6' is not supported .*v2\.1.*v3\.0"):
        open_lerobot(str(root))


@pytest.mark.parametrize(("version", "gone"), [
    ("v3.0", "videos/observation.images.wrist/chunk-000/file-001.mp4"),
    ("v2.1", "videos/chunk-000/observation.images.top/episode_000002.mp4"),
    ("v3.0", "data/chunk-000/file-000.parquet"),
])
def test_missing_file_is_named(copy, version, gone):
    root = copy(version)
    (root / gone).unlink()
    with pytest.raises(EpisodeSourceError, match=f"{root}: {gone} is missing"):
        open_lerobot(str(root))


def test_camera_missing_from_episode_metadata(copy):
    root = copy("v3.0")
    path = root / "meta/episodes/chunk-000/file-001.parquet"
    table = pq.read_table(path)
    pq.write_table(table.select([n for n in table.column_names if "images.wrist" not in n]), path)
    with pytest.raises(EpisodeSourceError, match=r"file-001\.parquet: camera observation\.images\.wrist .*no "
                                                 r"videos/observation\.images\.wrist/\* columns"):
        open_lerobot(str(root))


def test_length_disagreeing_with_frame_rows(copy):
    root = copy("v2.1")
    path = root / "meta" / "episodes.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[1]["length"] += 3
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(EpisodeSourceError, match=r"episode_000001\.parquet: episode 1 has 15 frame rows, its "
                                                 r"metadata says length 18"):
        open_lerobot(str(root))


def test_neither_a_folder_nor_a_hub_id():
    with pytest.raises(EpisodeSourceError, match=r"no/such/folder does not exist \(and is not a Hub dataset id"):
        open_lerobot("./no/such/folder")


# --- tasks from the task tables when episode metadata lacks them -----------------------------------------------------


def test_tasks_from_tasks_jsonl(copy):
    root = copy("v2.1")
    path = root / "meta" / "episodes.jsonl"
    lines = [{k: v for k, v in json.loads(line).items() if k != "tasks"} for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [e.task for e in open_lerobot(str(root))] == [TASKS[t] for t in EPISODE_TASKS]


@pytest.mark.parametrize("index_name", [None, "task"])
def test_tasks_from_a_pandas_tasks_parquet(copy, index_name):
    """meta/tasks.parquet exactly as LeRobot's write_tasks leaves it (a pandas frame indexed by task text)."""
    pd = pytest.importorskip("pandas")
    root = copy("v3.0")
    pd.DataFrame({"task_index": range(len(TASKS))}, index=pd.Index(TASKS, name=index_name)).to_parquet(
        root / "meta" / "tasks.parquet")
    for path in sorted((root / "meta" / "episodes").glob("*/*.parquet")):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["tasks"]), path)
    assert [e.task for e in open_lerobot(str(root))] == [TASKS[t] for t in EPISODE_TASKS]


# --- the Hub ------------------------------------------------------------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def fake_hub(datasets, tmp_path, monkeypatch):
    """huggingface_hub.snapshot_download replaced by a copy from the v3.0 fixture into a cache-like snapshot folder,
    honouring allow_patterns as the Hub does (fnmatch on repository paths); records each call."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    source = datasets["v3.0", "libx264"]
    snapshot = tmp_path / "hub" / "snapshots" / COMMIT
    calls = []

    def snapshot_download(repo_id, *, repo_type=None, revision=None, allow_patterns=None, cache_dir=None, **kw):
        calls.append({"repo_id": repo_id, "repo_type": repo_type, "revision": revision,
                      "patterns": list(allow_patterns)})
        for file in source.rglob("*"):
            relative = file.relative_to(source).as_posix()
            if file.is_file() and any(fnmatch.fnmatch(relative, p) for p in allow_patterns):
                (snapshot / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(file, snapshot / relative)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls, snapshot


def test_hub_downloads_meta_then_frames_then_videos_when_read(fake_hub):
    calls, snapshot = fake_hub
    episodes = open_episodes("someone/tiny-robot", revision="v3.0")
    assert [c["patterns"] for c in calls] == [["meta/**"], ["data/**"]]
    assert [c["revision"] for c in calls] == ["v3.0", COMMIT]  # later files from the commit meta came from
    assert {c["repo_type"] for c in calls} == {"dataset"}
    assert [e.task for e in episodes] == [TASKS[t] for t in EPISODE_TASKS]
    assert episodes[4].columns["subtask_index"] == [subtask(f, 20) for f in range(20)]
    assert not (snapshot / "videos").exists()  # no video before a frame is read

    frames = episodes[4].read(CAMERAS[0], [0, 19])
    assert calls[-1]["patterns"] == ["videos/observation.images.top/chunk-000/file-001.mp4"]
    assert [frame_code(p, CAMERAS[0]) for p in frames] == [(4, 0), (4, 19)]
    episodes[3].read(CAMERAS[0], [0])  # same file: no second download
    assert len(calls) == 3


def test_fetch_lerobot_asks_for_the_files_of_the_episodes(fake_hub):
    calls, snapshot = fake_hub
    root = fetch_lerobot("someone/tiny-robot", episodes=[4])
    assert root == snapshot
    assert calls[0]["patterns"] == ["meta/**"]
    assert sorted(calls[1]["patterns"]) == ["data/chunk-000/file-001.parquet",
                                            "videos/observation.images.top/chunk-000/file-001.mp4",
                                            "videos/observation.images.wrist/chunk-000/file-001.mp4"]
    with pytest.raises(EpisodeSourceError, match="someone/tiny-robot has no episode 9"):
        fetch_lerobot("someone/tiny-robot", episodes=[9])


def test_hub_unreachable_says_so(tmp_path):
    """A real huggingface_hub with HF_HUB_OFFLINE=1 and an empty cache (in a child process: the flag is read when
    huggingface_hub is imported)."""
    pytest.importorskip("huggingface_hub")
    code = ("from progresslm.data.episodes import EpisodeSourceError\n"
            "from progresslm.data.episode_sources import open_episodes\n"
            "try:\n    open_episodes('someone/tiny-robot')\n"
            "except EpisodeSourceError as err:\n    print('ERROR', err)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    message = out.stdout
    assert message.startswith("ERROR could not reach the Hugging Face Hub to download the dataset someone/tiny-robot")
    assert "hf download someone/tiny-robot --repo-type dataset --local-dir DIR" in message
    assert "lerobot:DIR" in message


def test_image_cells_are_checked(copy):
    """An image feature whose cell is not an image names the file, camera and frame."""
    root = copy("v2.1", "png")
    path = root / "data/chunk-000/episode_000000.parquet"
    table = pq.read_table(path)
    column = table.column_names.index(CAMERAS[0])
    broken = pa.array([{"bytes": b"not a png", "path": None}] * table.num_rows, type=table.schema.field(column).type)
    pq.write_table(table.set_column(column, CAMERAS[0], broken), path)
    episode = open_lerobot(str(root))[0]
    with pytest.raises(EpisodeSourceError, match=r"episode_000000\.parquet: observation\.images\.top of episode 0 "
                                                 r"frame 2 is not a readable image"):
        episode.read(CAMERAS[0], [2])


def test_image_camera_missing_from_frame_table(copy):
    root = copy("v3.0", "png")
    path = root / "data/chunk-000/file-001.parquet"
    pq.write_table(pq.read_table(path).drop_columns([CAMERAS[1]]), path)
    with pytest.raises(EpisodeSourceError, match=r"file-001\.parquet: no column observation\.images\.wrist \(an image "
                                                 r"feature in meta/info\.json\)"):
        open_lerobot(str(root))
