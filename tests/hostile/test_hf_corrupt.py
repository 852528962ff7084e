"""Issue 25 (a corrupt parquet or arrow file gives a traceback, or a message that does not name the file): an
exported benchmark folder whose arrow files, dataset_dict.json, state.json or parquet shards are cut short or are
garbage is refused with one HFDataError line naming the file, by `materialize` and by `progresslm eval --bench`;
what the module writes is strict JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from progresslm.cli.main import main

datasets = pytest.importorskip("datasets")
hf = pytest.importorskip("progresslm.data.hf_datasets")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from progresslm.bench.example import build_example

    example = build_example(tmp_path_factory.mktemp("example") / "bench", tasks_per_colour=1, per_interval=2).root
    out = tmp_path_factory.mktemp("export") / "hf"
    hf.export_hf(example, out, progress=False)
    return out


def damaged(exported: Path, tmp_path: Path, how: str) -> tuple[Path, Path]:
    """A copy of the export with one file damaged; (the folder, the file)."""
    folder = tmp_path / "hf"
    shutil.copytree(exported, folder)
    if how.startswith("parquet"):
        shutil.rmtree(folder / "arrow")  # as downloaded from the Hub: README.md and data/*.parquet
        target = sorted((folder / "data").glob("bench-*.parquet"))[0]
    elif how.startswith("arrow"):
        target = sorted((folder / "arrow" / "bench").glob("*.arrow"))[0]
    elif how == "dataset_dict":
        target = folder / "arrow" / "dataset_dict.json"
    else:
        target = folder / "arrow" / "bench" / "state.json"
    data = target.read_bytes()
    if how.endswith("_cut"):
        target.write_bytes(data[: len(data) // 2])
    elif how.endswith("_garbage"):
        target.write_bytes(b"\x00garbage, not a table\xff" * 40)
    else:
        target.write_bytes(data[: len(data) // 3])
    return folder, target


HOW = ["parquet_cut", "parquet_garbage", "arrow_cut", "arrow_garbage", "dataset_dict", "state"]


@pytest.mark.parametrize("how", HOW)
def test_a_damaged_file_is_one_error_naming_it(exported, tmp_path, how):
    folder, target = damaged(exported, tmp_path, how)
    with pytest.raises(hf.HFDataError) as err:
        hf.materialize(str(folder), tmp_path / "back", progress=False)
    message = str(err.value)
    assert target.name in message and "\n" not in message, message
    assert not (tmp_path / "back").exists() or not any((tmp_path / "back").rglob("*.jsonl"))


@pytest.mark.parametrize("how", ["parquet_cut", "arrow_garbage"])
def test_eval_on_a_damaged_folder_says_which_file(exported, tmp_path, capsys, how):
    folder, target = damaged(exported, tmp_path, how)
    capsys.readouterr()
    code = main(["eval", "--bench", str(folder), "--backend", "constant", "--out", str(tmp_path / "run"), "--quiet",
                 "--no-plots"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert target.name in err, err


def test_the_files_it_writes_are_strict_json(exported, tmp_path):
    back = hf.materialize(str(exported), tmp_path / "back", progress=False)
    for path in [*Path(back.files[0]).parent.rglob("*.json"), *back.files]:
        for line in path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]:
            json.loads(line, parse_constant=lambda name, p=path: pytest.fail(f"{p}: {name} is not JSON"))


def test_fetch_official_survives_a_damaged_unpacked_json(tmp_path, monkeypatch):
    """images/unpacked.json (archive sizes already unpacked) cut short by a crash: everything is unpacked again,
    where json.loads raised a JSONDecodeError naming no file."""
    import tarfile

    import huggingface_hub
    from helpers import fixture, write_images

    from progresslm.bench.format import load_bench
    from progresslm.data import release

    source = tmp_path / "release"
    (source / "prog-bench").mkdir(parents=True)
    shutil.copy(fixture("visual_same_view"), source / "prog-bench" / "visual_same_view.jsonl")
    write_images(load_bench([source / "prog-bench" / "visual_same_view.jsonl"]).samples, tmp_path / "images")
    (source / "images").mkdir()
    for prefix in (tmp_path / "images").iterdir():
        with tarfile.open(source / "images" / f"{prefix.name}.tar", "w") as bundle:
            bundle.add(prefix, arcname=prefix.name)

    def snapshot_download(repo_id, repo_type=None, revision=None, local_dir=None, allow_patterns=None):
        shutil.copytree(source, local_dir, dirs_exist_ok=True)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    out = tmp_path / "official"
    first = release.fetch_official(out)
    stamps = out / "images" / "unpacked.json"
    stamps.write_text(stamps.read_text()[:7])
    shutil.rmtree(first.image_root / next(p.name for p in (tmp_path / "images").iterdir()))
    again = release.fetch_official(out)
    assert again.images_found == again.images_checked == first.images_checked > 0
    assert isinstance(json.loads(stamps.read_text()), dict)
