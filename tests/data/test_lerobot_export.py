"""`data export-lerobot`: any source written as a LeRobot v3.0 dataset that reads back the same (tasks, lengths,
cameras, frame rate, frames, key steps), builds the same labels, follows LeRobot's metadata conventions, and is
never left half written."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("pyarrow")

import pyarrow.parquet as pq  # noqa: E402

from progresslm.cli.main import main  # noqa: E402
from progresslm.data import lerobot_export  # noqa: E402
from progresslm.data.data_build import DataBuildConfig, build  # noqa: E402
from progresslm.data.episode_sources import open_episodes  # noqa: E402
from progresslm.data.episodes import Episode, KeyStep  # noqa: E402
from progresslm.data.lerobot_export import LeRobotExportError, export_lerobot  # noqa: E402
from tests.data.own_data import TASKS, bar_position, write_videos  # noqa: E402

CAMERAS = ("observation.images.top", "observation.images.wrist")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return write_videos(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="module")
def exported(videos, tmp_path_factory) -> dict[str, Path]:
    """The videos folder exported once per codec."""
    base = tmp_path_factory.mktemp("lerobot")
    source = open_episodes(f"videos:{videos}")
    return {codec: export_lerobot(source, base / codec, codec=codec) for codec in ("libx264", "libsvtav1")}


def synthetic(index: int, length: int = 12, fps: float = 10.0, cameras=("cam",), shape=(24, 32), **fields) -> Episode:
    """An in-memory episode whose frame i is a flat gray of level 10 i + 20 (episode marker: 50 index in the top
    rows), so a decoded frame tells which frame it was."""
    def reader(camera, indices):
        frames = []
        for i in indices:
            pixels = np.full((*shape, 3), 10 * i + 20, np.uint8)
            pixels[:4] = 50 * index
            frames.append(pixels)
        return frames

    fields.setdefault("task", f"task {index % 2}")
    fields.setdefault("reader", reader)
    return Episode("test", f"ep{index}", index, cameras=tuple(cameras), fps=fps, length=length, **fields)


def level(pixels: np.ndarray) -> int:
    """The frame index read back from a `synthetic` frame."""
    return round((float(pixels[8:].mean()) - 20) / 10)


@pytest.mark.parametrize("codec", ["libx264", "libsvtav1"])
def test_the_dataset_reads_back_as_the_source(videos, exported, codec):
    source = open_episodes(f"videos:{videos}")
    back = open_episodes(f"lerobot:{exported[codec]}")
    assert [e.id for e in back] == [f"episode_{i:06d}" for i in range(len(source))]
    for a, b in zip(source, back):
        assert (b.task, b.length, b.fps, b.cameras) == (a.task, a.length, a.fps, CAMERAS)
        assert b.keysteps == a.keysteps
        ends = [round(s.end * 10) for s in a.keysteps]  # frames up to and including a step's end frame are that step
        assert b.columns["subtask_index"] == [next(k for k, end in enumerate(ends) if i <= end)
                                              for i in range(a.length)]
        task = TASKS.index(a.id.split("/")[0])
        episode = int(a.id.split("/ep")[1])
        for c, camera in enumerate(CAMERAS):
            frames = b.read(camera, range(b.length))
            assert all(abs(bar_position(f, task) - i) <= 1 for i, f in enumerate(frames))
            assert all(abs(float(f[42:].mean()) - (20 + 60 * c)) < 8 for f in frames)  # the right camera
            if c == 0:  # the right episode: a band of blue 40 x episode in the top rows (lossy, so to the nearest)
                assert all(round(float(f[:4, :, 2].mean()) / 40) == episode for f in frames)


def test_hand_checked_step_index_of_one_episode(exported):
    episode = open_episodes(f"lerobot:{exported['libx264']}")[0]  # 30 frames, steps end at 1.0, 2.0, 2.9 s
    assert episode.columns["subtask_index"] == [0] * 11 + [1] * 10 + [2] * 9


def test_metadata_follows_lerobot(exported, videos):
    import pandas as pd

    root = exported["libx264"]
    info = json.loads((root / "meta" / "info.json").read_text())
    assert (info["codebase_version"], info["fps"], info["total_episodes"], info["total_frames"],
            info["total_tasks"]) == ("v3.0", 10, 6, 212, 2)
    assert info["features"][CAMERAS[0]]["shape"] == [48, 64, 3]
    assert info["features"][CAMERAS[0]]["info"]["video.codec"] == "h264"
    assert info["features"]["subtask_index"]["dtype"] == "int64"
    assert json.loads((exported["libsvtav1"] / "meta" / "info.json").read_text())["features"][CAMERAS[1]][
        "info"]["video.codec"] == "av1"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.mp4")) == [
        f"videos/{c}/chunk-000/file-000.mp4" for c in CAMERAS]
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    # each episode's window starts where the previous one's frames end in the packed file: 30, 36, 40, 30, 36 frames
    assert [r[f"videos/{CAMERAS[0]}/from_timestamp"] for r in episodes] == pytest.approx([0, 3.0, 6.6, 10.6, 13.6,
                                                                                          17.2])
    assert [r["dataset_from_index"] for r in episodes] == [0, 30, 66, 106, 136, 172]
    assert episodes[0]["subtask_end_frames"] == [10, 20, 29] and episodes[0]["subtask_start_frames"] == [0, 11, 21]
    frames = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pydict()
    assert frames["index"] == list(range(212)) and frames["frame_index"][30:33] == [0, 1, 2]
    assert frames["timestamp"][31] == pytest.approx(0.1)
    # LeRobot names a frame's task and step as rows task_index / subtask_index of these pandas tables
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    subtasks = pd.read_parquet(root / "meta/subtasks.parquet")
    assert [tasks.iloc[i].name for i in (frames["task_index"][0], frames["task_index"][-1])] == ["open drawer",
                                                                                                 "pick cup"]
    assert [subtasks.iloc[frames["subtask_index"][i]].name for i in (0, 11, 29)] == ["reach", "grasp", "lift"]


def test_build_from_the_export_labels_as_from_the_videos(videos, exported, tmp_path):
    settings = dict(per_interval=2, size=32)
    original = build(DataBuildConfig(source=f"videos:{videos}", out=str(tmp_path / "a"), keyframes="auto",
                                     **settings), progress=False)
    column = build(DataBuildConfig(source=f"lerobot:{exported['libx264']}", out=str(tmp_path / "b"),
                                   keyframes="column:subtask_index", **settings), progress=False)
    positions = {e.id: i for i, e in enumerate(open_episodes(f"videos:{videos}"))}

    def labels(outcome, position) -> dict[tuple[int, int], str]:
        rows = [json.loads(line) for line in (outcome.out / "bench" / "visual_same_view.jsonl").open()]
        return {(position(r["episode"]["episode"]), r["episode"]["obs_frame"]): r["progress_score"] for r in rows}

    expected = labels(original, positions.__getitem__)
    assert len(expected) > 50
    assert labels(column, lambda name: int(name.split("_")[1])) == expected
    assert column.samples["bench"]["visual_cross_view"] == original.samples["bench"]["visual_cross_view"]


def test_columns_steps_and_frame_rate(tmp_path, caplog):
    steps = [KeyStep(0.3, "reach"), KeyStep(0.8, "lift")]
    episodes = [
        synthetic(0, 12, keysteps=steps, columns={"force": [0.5] * 12, "phase": list(range(12)),
                                                   "note": ["a"] * 12, "ok": [True] * 12, "vec": [[1, 2]] * 12,
                                                   "only_here": [1] * 12}),
        synthetic(1, 21, fps=20.0, columns={"force": [1] * 21, "phase": list(range(21)), "note": ["b"] * 21,
                                             "ok": [False] * 21, "vec": [[3, 4]] * 21}),
    ]
    with caplog.at_level(logging.WARNING, logger="progresslm.data.lerobot_export"):
        root = export_lerobot(episodes, tmp_path / "ds", fps=10)
    assert "only_here" in caplog.text and "vec" in caplog.text
    back = open_episodes(f"lerobot:{root}")
    assert [e.length for e in back] == [12, 11]  # 21 frames at 20 fps (1 s) are 11 at 10 fps
    assert [level(f) for f in back[1].read("observation.images.cam", range(11))] == [2 * j for j in range(11)]
    table = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert {"force", "phase", "note", "ok"} <= set(table.column_names)
    assert not {"vec", "only_here"} & set(table.column_names)
    assert table["force"].type == "double" and table["phase"].to_pylist()[12:15] == [0, 2, 4]
    # steps end at frames 3 and 8; frames after the last step, and the episode without steps, are -1
    assert back[0].columns["subtask_index"] == [0] * 4 + [1] * 5 + [-1] * 3
    assert back[1].columns["subtask_index"] == [-1] * 11
    assert back[0].keysteps == steps and back[1].keysteps is None
    assert (root / "meta" / "subtasks.parquet").is_file()


def test_subtask_table_only_when_step_numbers_name_one_text(tmp_path):
    episodes = [synthetic(0, keysteps=[KeyStep(0.5, "reach"), KeyStep(1.1, "lift")]),
                synthetic(1, keysteps=[KeyStep(0.5, "push"), KeyStep(1.1, "lift")])]
    (tmp_path / "ds").mkdir()  # an empty folder is fine
    root = export_lerobot(episodes, tmp_path / "ds")
    assert not (root / "meta" / "subtasks.parquet").exists()
    assert [e.keysteps[0].text for e in open_episodes(f"lerobot:{root}")] == ["reach", "push"]


def test_a_lerobot_v21_dataset_converts_with_its_annotation_column(tmp_path):
    from tests.data.lerobot_fixture import CAMERAS as KEYS
    from tests.data.lerobot_fixture import LENGTHS, frame_code, subtask, write_lerobot

    source = open_episodes(f"lerobot:{write_lerobot(tmp_path / 'v21', 'v2.1')}")
    back = open_episodes(f"lerobot:{export_lerobot(source, tmp_path / 'v30')}")
    assert [(e.task, e.length, e.cameras) for e in back] == [(e.task, e.length, tuple(KEYS)) for e in source]
    assert [e.columns["subtask_index"] for e in back] == [[subtask(f, n) for f in range(n)] for n in LENGTHS]
    for e in back:
        frames = e.read(KEYS[1], range(e.length))
        assert [frame_code(f, KEYS[1]) for f in frames] == [(e.index, f) for f in range(e.length)]


def test_size_shrinks_to_even_sides_and_files_roll_over(tmp_path, monkeypatch):
    monkeypatch.setattr(lerobot_export, "VIDEO_FILE_MB", 1e-6)  # every episode starts a new file
    monkeypatch.setattr(lerobot_export, "DATA_FILE_MB", 1e-6)
    episodes = [synthetic(i, 8 + i, shape=(34, 50)) for i in range(3)]
    root = export_lerobot(episodes, tmp_path / "ds", size=16)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["features"]["observation.images.cam"]["shape"] == [16, 24, 3]
    assert len(list(root.glob("videos/*/chunk-000/*.mp4"))) == 3 and len(list(root.glob("data/*/*.parquet"))) == 3
    rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    key = "videos/observation.images.cam"
    assert [(r[f"{key}/file_index"], r[f"{key}/from_timestamp"], r["data/file_index"]) for r in rows] == [
        (0, 0.0, 0), (1, 0.0, 1), (2, 0.0, 2)]  # each file starts at its first episode
    for i, e in enumerate(open_episodes(f"lerobot:{root}")):
        frames = e.read("observation.images.cam", range(e.length))
        assert frames[0].shape == (16, 24, 3)
        assert [level(f) for f in frames] == list(range(8 + i))
        assert abs(float(frames[0][0].mean()) - 50 * i) < 8


def test_a_failed_export_leaves_nothing_and_keeps_the_old_dataset(tmp_path):
    root = export_lerobot([synthetic(0), synthetic(1)], tmp_path / "ds")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))

    def broken(camera, indices):
        raise OSError("disk unplugged")

    with pytest.raises(OSError, match="disk unplugged"):
        export_lerobot([synthetic(0), synthetic(1, reader=broken)], root, overwrite=True)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    export_lerobot([synthetic(3, 5)], root, overwrite=True)
    assert [e.length for e in open_episodes(f"lerobot:{root}")] == [5]


@pytest.mark.parametrize("episodes, kwargs, message", [
    ([], {}, "no episodes to export"),
    ([synthetic(0), synthetic(1, fps=15.0)], {}, "different frame rates: 10 fps (episode ep0), 15 fps (episode ep1)"),
    ([synthetic(0), synthetic(1, cameras=("cam", "wrist"))], {}, "episode ep1 has cameras cam, wrist"),
    ([synthetic(0), synthetic(1, shape=(30, 40))], {}, "episode ep1, camera cam: frames of 40 x 30"),
    ([synthetic(0, columns={"force": [1.0] * 3})], {}, "episode ep0: column force has 3 values for 12 frames"),
    ([synthetic(0)], {"codec": "mpeg4"}, "codec 'mpeg4': use one of libx264, libsvtav1"),
    ([synthetic(0)], {"fps": -1}, "fps -1"),
])
def test_bad_input_is_named(tmp_path, episodes, kwargs, message):
    with pytest.raises(LeRobotExportError) as err:
        export_lerobot(episodes, tmp_path / "ds", **kwargs)
    assert message in str(err.value)
    assert not any(tmp_path.iterdir())


def test_cli_exports_refuses_a_full_folder_and_overwrites(videos, tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["data", "export-lerobot", f"videos:{videos}", "--out", str(out), "--quiet"]
    assert main([*args, "--episodes", "0-1"]) == 0
    assert "wrote 2 episodes (66 frames)" in capsys.readouterr().out
    assert [e.length for e in open_episodes(f"lerobot:{out}")] == [30, 36]
    assert main(args) == 2
    assert f"{out} exists and is not empty" in capsys.readouterr().err
    assert main([*args, "--episodes", "3", "--codec", "libsvtav1", "--overwrite"]) == 0
    assert [e.task for e in open_episodes(f"lerobot:{out}")] == ["pick cup"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert main([*args[:3], "--out", str(tmp_path / "notes"), "--overwrite"]) == 2
    assert "no LeRobot dataset" in capsys.readouterr().err and (tmp_path / "notes" / "keep.txt").exists()
    (tmp_path / "empty").mkdir()
    assert main(["data", "export-lerobot", f"videos:{tmp_path / 'empty'}", "--out", str(tmp_path / "x")]) == 2
    assert "no videos" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_key_steps_from_sarm_frame_columns_and_bad_annotations(exported, tmp_path, caplog):
    import shutil

    import pyarrow as pa

    root = Path(shutil.copytree(exported["libx264"], tmp_path / "ds"))
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path).drop(["subtask_end_times"])
    ends = table["subtask_end_frames"].to_pylist()
    ends[1] = [20, 10, 35]  # not rising: left out with a warning, the dataset stays readable
    table = table.set_column(table.column_names.index("subtask_end_frames"), "subtask_end_frames",
                             pa.array(ends, pa.list_(pa.int64())))
    pq.write_table(table, path)
    with caplog.at_level(logging.WARNING, logger="progresslm.data.lerobot"):
        episodes = open_episodes(f"lerobot:{root}")
    assert episodes[0].keysteps == [KeyStep(1.0, "reach"), KeyStep(2.0, "grasp"), KeyStep(2.9, "lift")]
    assert episodes[1].keysteps is None and "ends must rise" in caplog.text
