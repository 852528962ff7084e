"""Issue 25: a LeRobot dataset built to mislead the reader. Paths from info.json templates and parquet image cells stay
in the dataset root; fps must be a frame rate; malformed metadata, files that are not UTF-8 and corrupt parquet are
one-line errors naming the file and key (exit 2 from the command line, never a traceback); v3 `tasks` given as one
string is one task. Real datasets written file by file (tests/data/lerobot_fixture.py), edited per case."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progresslm.cli.main import main
from progresslm.data.episodes import EpisodeSourceError
from progresslm.data.lerobot import open_lerobot
from tests.data.lerobot_fixture import CAMERAS, TASKS, write_lerobot


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("lerobot")
    return {"v3.0": write_lerobot(base / "v3", "v3.0"), "v2.1": write_lerobot(base / "v21", "v2.1"),
            "png": write_lerobot(base / "png", "v3.0", codec="png")}  # fmt: skip


@pytest.fixture
def copy(originals, tmp_path):
    def make(kind: str = "v3.0") -> Path:
        return Path(shutil.copytree(originals[kind], tmp_path / kind / "dataset"))

    return make


def edit_info(root: Path, **changes) -> None:
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    info.update(changes)
    path.write_text(json.dumps(info))  # NaN and Infinity as Python's json writes (and reads) them


def cli_error(capsys, root: Path) -> str:
    """The command line's answer to a bad dataset: exit 2 and one line on stderr."""
    capsys.readouterr()
    assert main(["data", "episodes", f"lerobot:{root}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("fps", [float("nan"), float("inf"), -float("inf"), 0, -10, True, "30", None, 1e9])
def test_fps_that_is_not_a_frame_rate_is_refused_naming_info_json(copy, capsys, fps):
    root = copy()
    edit_info(root, fps=fps)
    err = cli_error(capsys, root)
    assert f"{root / 'meta' / 'info.json'}: fps" in err


@pytest.mark.parametrize("template", ["/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
                                      "../outside/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
                                      "videos/../../outside/{video_key}/chunk-{chunk_index:03d}/"
                                      "file-{file_index:03d}.mp4"])  # fmt: skip
def test_a_video_path_leading_out_of_the_dataset_is_refused(copy, capsys, template):
    root = copy()
    # a real video where the template leads, so that following the template would read it
    outside = root.parent / "outside"
    shutil.copytree(root / "videos", outside)
    if template.startswith("/"):
        template = str(outside) + template
    edit_info(root, video_path=template)
    err = cli_error(capsys, root)
    assert "info.json: video_path" in err and "leads outside" in err


def test_a_data_path_leading_out_of_the_dataset_is_refused(copy, capsys):
    root = copy()
    shutil.copytree(root / "data", root.parent / "elsewhere")
    edit_info(root, data_path="../elsewhere/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet")
    assert "info.json: data_path '../elsewhere/chunk-000/file-000.parquet' leads outside" in cli_error(capsys, root)


@pytest.mark.parametrize("name", ["../secret.png", "/tmp/../etc/hostname", "a/../../secret.png"])
def test_an_image_cell_path_leading_out_of_the_dataset_is_refused(copy, name):
    from PIL import Image

    root = copy("png")
    Image.new("RGB", (48, 64), "red").save(root.parent / "secret.png")  # a real image there: it must not be read
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    column = table.column_names.index(CAMERAS[0])
    cells = pa.array([{"bytes": None, "path": name}] * len(table), table.schema.field(CAMERAS[0]).type)
    pq.write_table(table.set_column(column, CAMERAS[0], cells), path)
    episode = open_lerobot(str(root))[0]
    with pytest.raises(EpisodeSourceError, match=r"file-000.parquet: observation.images.top of episode 0 frame 0: "
                                                 r"path .* leads outside"):
        episode.read(CAMERAS[0], [0])


def test_v3_tasks_given_as_one_string_is_one_task_not_its_first_letter(copy):
    root = copy()
    for path in sorted((root / "meta/episodes").glob("*/*.parquet")):
        table = pq.read_table(path)
        texts = [tasks[0] for tasks in table["tasks"].to_pylist()]
        pq.write_table(table.set_column(table.column_names.index("tasks"), "tasks", pa.array(texts)), path)
    assert {e.task for e in open_lerobot(str(root))} == set(TASKS)


def corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes({"garbage": b"not parquet at all" * 10, "truncated": data[: len(data) // 2],
                      "empty": b"", "header only": data[:4] + b"\0" * 64 + data[-8:]}[how])  # fmt: skip


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty", "header only"])
@pytest.mark.parametrize("which", ["data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet",
                                   "meta/tasks.parquet"])  # fmt: skip
def test_a_corrupt_parquet_file_is_one_line_naming_it(copy, capsys, how, which):
    root = copy()
    if which == "meta/tasks.parquet":  # read only when episodes name no tasks
        for path in sorted((root / "meta/episodes").glob("*/*.parquet")):
            table = pq.read_table(path)
            pq.write_table(table.drop_columns(["tasks"]), path)
    corrupt(root / which, how)
    assert f"{root / which}: not a readable Parquet file" in cli_error(capsys, root)


@pytest.mark.parametrize("which", ["meta/info.json", "meta/episodes.jsonl"])
def test_metadata_that_is_not_utf8_is_one_line_naming_the_file(copy, capsys, which):
    root = copy("v2.1")
    path = root / which
    path.write_bytes(path.read_bytes().replace(b'"', b'\xff"', 1))
    assert f"{path}: not UTF-8" in cli_error(capsys, root)


@pytest.mark.parametrize("row", [{"tasks": 5}, {"tasks": [1, 2]}, {"length": "12"}, {"length": float("nan")},
                                 {"length": -3}, {"episode_index": float("inf")}, {"episode_index": 1.5}])
def test_v2_episode_rows_of_the_wrong_types_are_one_line_naming_the_file(copy, capsys, row):
    root = copy("v2.1")
    path = root / "meta" / "episodes.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[0].update(row)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert str(path) in cli_error(capsys, root)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
INFO_KEYS = ["codebase_version", "fps", "features", "data_path", "video_path", "chunks_size"]


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
@given(key=st.sampled_from(INFO_KEYS), value=json_values)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_value_in_an_info_json_key_reads_or_is_a_one_line_error(originals, tmp_path, version, key, value):
    root = tmp_path / version
    if not root.exists():
        shutil.copytree(originals[version], root)
    info_path = root / "meta" / "info.json"
    original = (originals[version] / "meta" / "info.json").read_text()
    info = json.loads(original)
    info[key] = value
    info_path.write_text(json.dumps(info))
    try:
        episodes = open_lerobot(str(root))
        for episode in episodes[:1]:
            assert math.isfinite(episode.fps) and episode.fps > 0
            for camera in episode.cameras:
                episode.read(camera, [0])
    except EpisodeSourceError as err:
        assert "\n" not in str(err)
    finally:
        info_path.write_text(original)
