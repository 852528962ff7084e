"""The Hugging Face `datasets` round trip (progresslm.data.hf_datasets): export, reload, write back, evaluate, and the authors'
release fetched from a local stand-in for the Hub."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from helpers import BENCH_FILES, FIXTURES, write_images

from progresslm.bench.format import load_bench, read_official
from progresslm.cli.main import main

datasets = pytest.importorskip("datasets")
hf = pytest.importorskip("progresslm.data.hf_datasets")
release = pytest.importorskip("progresslm.data.release")
SIM_SAMPLE = Path(__file__).parent.parent / "fixtures" / "sim_sample"


def _same_samples(original, back) -> None:
    """The labels and everything eval reads, sample by sample (spelling such as "5" or 5 may differ)."""
    assert len(back) == len(original)
    for a, b in zip(original, back):
        assert (a.uid, a.trajectory_id, a.goal, a.demo, a.observation) == (b.uid, b.trajectory_id, b.goal, b.demo,
                                                                           b.observation)  # fmt: skip
        assert (a.progress, a.closest_idx, a.delta, a.labelled) == (b.progress, b.closest_idx, b.delta, b.labelled)
        assert (a.view, a.demo_camera, a.observation_camera, a.data_source) == (
            b.view, b.demo_camera, b.observation_camera, b.data_source)  # fmt: skip
        assert a.extra == b.extra


def _same_images(original, root_a: Path, back, root_b: Path) -> int:
    checked = 0
    for a, b in zip(original, back):
        for name_a, name_b in zip(a.image_names(), b.image_names()):
            assert b.image_path(name_b, root_b).read_bytes() == a.image_path(name_a, root_a).read_bytes()
            checked += 1
    return checked


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    from progresslm.bench.example import build_example

    return build_example(tmp_path_factory.mktemp("example") / "bench", tasks_per_colour=1, per_interval=2).root


@pytest.fixture(scope="module")
def exported(example, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "hf"
    hf.export_hf(example, out, progress=False)
    return out


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Path:
    """The fixture rows of the authors' release (their quirks: string numbers, n/a, camera_combination, a human
    file) with a small image at every path they name."""
    folder = tmp_path_factory.mktemp("official") / "bench"
    folder.mkdir()
    for path in FIXTURES.glob("*.jsonl"):
        shutil.copy(path, folder / path.name)
    write_images(load_bench(sorted(folder.glob("*.jsonl"))).samples, folder / "images")
    return folder


def test_export_reloads_with_load_from_disk_and_as_parquet(exported, example, tmp_path):
    rows = {p.stem: len(p.read_text().splitlines()) for p in example.glob("*.jsonl")}
    disk = datasets.load_from_disk(str(exported / "arrow"))
    assert list(disk) == ["bench"] and disk["bench"].num_rows == sum(rows.values())
    assert Counter(disk["bench"]["kind"]) == rows
    feats = disk["bench"].features
    assert isinstance(feats["observation_image"], datasets.Image) and feats["demo_images"].feature == datasets.Image()
    # the card's YAML header: what the Hub reads to find the shards
    import yaml

    header = yaml.safe_load((exported / "README.md").read_text().split("---")[1])
    (config,) = header["configs"]
    files = {d["split"]: str(exported / d["path"]) for d in config["data_files"]}
    assert list(files) == ["bench"] and header["license"] and "robotics" in header["task_categories"]
    parquet = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert parquet["bench"].num_rows == sum(rows.values()) and parquet["bench"].features == feats
    visual = next(r for r in parquet["bench"] if r["kind"] == "visual_same_view")
    text = next(r for r in parquet["bench"] if r["kind"] == "text-normal")
    assert len(visual["demo_images"]) == len(visual["visual_demo"]) == visual["total_steps"] + 1
    assert visual["observation_image"].size == (112, 112) and text["visual_demo"] is None and text["text_demo"]
    assert json.loads(visual["extra"]) == {} and visual["progress_score"].endswith("%")


def test_round_trip_gives_the_same_rows_and_image_bytes(official, tmp_path):
    """Split folders (bench/, sft/) and the release's quirks survive export -> parquet -> JSONL files and images."""
    source = tmp_path / "src"
    shutil.copytree(official, source / "bench")
    shutil.move(source / "bench" / "images", source / "images")
    (source / "sft").mkdir()
    for path in SIM_SAMPLE.glob("*.jsonl"):
        shutil.copy(path, source / "sft" / path.name)
    shutil.copytree(SIM_SAMPLE / "images", source / "images", dirs_exist_ok=True)
    out = tmp_path / "hf"
    result = hf.export_hf(source, out, progress=False)
    assert set(result.rows) == {"bench", "sft"} and result.rows["sft"]["visual_same_view"] == 2
    shutil.rmtree(out / "arrow")  # as downloaded from the Hub: README.md and data/*.parquet only
    for split in ("bench", "sft"):
        back = hf.materialize(str(out), tmp_path / f"back-{split}", split=split, progress=False)
        kinds = [f.stem for f in back.files]  # in the order of the rows
        original = load_bench(sorted((source / split).glob("*.jsonl"), key=lambda p: kinds.index(p.stem))).samples
        samples = load_bench(back.files).samples
        _same_samples(original, samples)
        assert _same_images(original, source / "images", samples, back.image_root) > len(original)


def test_eval_on_the_exported_folder_gives_the_same_metrics(exported, example, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PROGRESSLM_HOME", str(tmp_path / "home"))
    # pixel-nn answers from the images, so a changed image would change the metrics
    common = ["--backend", "pixel-nn", "--quiet", "--bootstrap", "0", "--no-plots", "--no-floors"]
    files = [str(p) for p in sorted(example.glob("*.jsonl"))]
    assert main(["eval", "--bench", *files, "--image-root", str(example / "images"), "--out", str(tmp_path / "a"),
                 *common]) == 0  # fmt: skip
    assert main(["eval", "--bench", str(exported), "--out", str(tmp_path / "b"), *common]) == 0
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in "ab"]
    assert metrics[0] == metrics[1] and metrics[0]["splits"]
    written = list((tmp_path / "home" / "hf").iterdir())
    assert len(written) == 1 and (written[0] / hf.MARKER).is_file()
    assert main(["eval", "--bench", str(exported), "--out", str(tmp_path / "c"), *common, "--image-root", "x"]) == 2
    assert main(["eval", "--bench", *files, "--bench-split", "sft", "--out", str(tmp_path / "d"), *common]) == 2


def test_a_hub_id_is_loaded_with_load_dataset(exported, tmp_path, monkeypatch):
    """The Hub branch of `materialize`: `load_dataset` answers from the exported parquet shards, as the Hub would."""
    real = datasets.load_dataset
    shards = {"bench": str(exported / "data" / "bench-*.parquet")}
    asked = []

    def from_hub(repo_id, split=None):
        asked.append(repo_id)
        return real("parquet", data_files=shards, split=split, cache_dir=str(tmp_path / "cache"))

    monkeypatch.setattr(datasets, "load_dataset", from_hub)
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda repo_id: list(shards))
    monkeypatch.setenv("PROGRESSLM_HOME", str(tmp_path / "home"))
    back = hf.materialize("me/progress-bench", progress=False)
    assert asked == ["me/progress-bench"] and back.folder == tmp_path / "home" / "hf" / "me--progress-bench-bench"
    assert len(load_bench(back.files).samples) == back.rows
    with pytest.raises(hf.HFDataError, match="no split 'rl'; its splits: bench"):
        hf.materialize("me/progress-bench", split="rl", progress=False)


def test_bad_input_gets_a_clear_error(example, exported, tmp_path):
    with pytest.raises(hf.HFDataError, match="no JSONL files"):
        hf.export_hf(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(hf.HFDataError, match="exists and is not empty; .* --overwrite"):
        hf.export_hf(example, exported, progress=False)
    broken = tmp_path / "broken"
    shutil.copytree(SIM_SAMPLE, broken)
    first = read_official(broken / "visual_same_view.jsonl").samples[0]
    first.image_path(first.observation, broken / "images").unlink()
    with pytest.raises(hf.HFDataError, match=r"visual_same_view.jsonl:1: image .*corner_0026.jpg cannot be read"):
        hf.export_hf(broken, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out-*"))  # nothing half-written is left
    assert main(["bench", "export", str(broken), "--out", str(tmp_path / "out"), "--allow-missing-images",
                 "--quiet"]) == 0  # fmt: skip
    assert datasets.load_from_disk(str(tmp_path / "out" / "arrow"))["bench"][0]["observation_image"] is None
    (broken / "text-normal.jsonl").write_text('{"id": "x", "task_goal": "g"}\n')
    assert main(["bench", "export", str(broken), "--out", str(tmp_path / "out2"), "--quiet"]) == 2


def test_a_dataset_cannot_write_outside_its_folder(exported, tmp_path):
    """Rows come from anyone's Hub repository: an id or file name with '..' or an absolute path is refused."""
    rows = datasets.load_from_disk(str(exported / "arrow"))["bench"].select(range(2))
    for column, value in (("id", "../../escaped"), ("stage_to_estimate", "/tmp/escaped.jpg")):
        bad = tmp_path / column
        changed = rows.map(lambda r, c=column, v=value: {c: v}, keep_in_memory=True)
        datasets.DatasetDict({"bench": changed}).save_to_disk(str(bad / "arrow"))
        with pytest.raises(hf.HFDataError, match="refused"):
            hf.materialize(str(bad), tmp_path / f"back-{column}", progress=False)
        assert not (tmp_path / f"back-{column}").exists() and not list(tmp_path.rglob("escaped*"))


# ------------------------------------------------------------------------------------------ the authors' release


@pytest.fixture
def fake_release(official, tmp_path) -> Path:
    """A stand-in for the Hub dataset: benchmark files under prog-bench/, the human set, a training file, and the
    images in one archive per id prefix (one with its prefix folder, one without, one zip)."""
    release = tmp_path / "fake-release"
    (release / "prog-bench").mkdir(parents=True)
    for stem in BENCH_FILES:
        shutil.copy(official / f"{stem}.jsonl", release / "prog-bench" / f"{stem}.jsonl")
    (release / "human-bench").mkdir()
    shutil.copy(official / "human_text_demo.jsonl", release / "human-bench" / "text_demo_human_activities.jsonl")
    (release / "raw_data" / "raw_rl").mkdir(parents=True)
    shutil.copy(official / "text-normal.jsonl", release / "raw_data" / "raw_rl" / "text_positive_rl.jsonl")
    (release / "images").mkdir()
    images = official / "images"
    for prefix in sorted(p.name for p in images.iterdir()):
        if prefix == "human":
            with zipfile.ZipFile(release / "images" / "human.zip", "w") as bundle:
                for path in sorted((images / prefix).rglob("*.jpg")):
                    bundle.write(path, str(path.relative_to(images)))
        elif prefix == "h5_agilex_3rgb":  # without its prefix folder inside
            with tarfile.open(release / "images" / f"{prefix}.tar", "w") as bundle:
                for path in sorted((images / prefix).iterdir()):
                    bundle.add(path, arcname=path.name)
        else:
            with tarfile.open(release / "images" / f"{prefix}.tar.gz", "w:gz") as bundle:
                bundle.add(images / prefix, arcname=prefix)
    return release


def _serve(monkeypatch, release: Path, calls: list) -> None:
    import huggingface_hub

    def snapshot_download(repo_id, repo_type=None, revision=None, local_dir=None, allow_patterns=None):
        calls.append((repo_id, repo_type, revision))
        shutil.copytree(release, local_dir, dirs_exist_ok=True)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)


def test_fetch_official_lays_the_release_out_for_eval(fake_release, official, tmp_path, monkeypatch, capsys):
    calls = []
    _serve(monkeypatch, fake_release, calls)
    out = tmp_path / "official"
    assert main(["bench", "fetch-official", "--out", str(out), "--revision", "v1"]) == 0
    assert calls == [("Raymond-Qiancx/ProgressLM-Dataset", "dataset", "v1")]
    printed = capsys.readouterr().out
    assert "text_demo_human_activities.jsonl" in printed and "text_positive_rl.jsonl" in printed
    command = shlex.split(printed.split("evaluate with:")[1].strip())
    assert command[:3] == ["progresslm", "eval", "--bench"]
    files = command[3: command.index("--image-root")]
    assert [Path(f).stem for f in files] == BENCH_FILES and all("prog-bench" in f for f in files)
    root = Path(command[command.index("--image-root") + 1])
    samples = load_bench(files).samples
    assert all(s.image_path(n, root).is_file() for s in samples for n in s.image_names())
    assert _same_images(samples, root, samples, official / "images") > 0
    run = tmp_path / "run"
    assert main([*command[1:], "--backend", "constant", "--out", str(run), "--quiet", "--bootstrap", "0",
                 "--no-plots"]) == 0  # fmt: skip
    assert json.loads((run / "metrics.json").read_text())["splits"]
    again = release.fetch_official(out)  # archives already unpacked are not unpacked again
    assert again.image_root == root and again.images_found == again.images_checked > 0


def test_an_archive_that_reaches_outside_is_refused(fake_release, tmp_path, monkeypatch):
    data = b"not an image"
    with tarfile.open(fake_release / "images" / "evil.tar", "w") as bundle:
        member = tarfile.TarInfo("../../escaped.jpg")
        member.size = len(data)
        bundle.addfile(member, io.BytesIO(data))
    _serve(monkeypatch, fake_release, [])
    with pytest.raises(hf.HFDataError, match="evil.tar: cannot unpack it"):
        release.fetch_official(tmp_path / "official")
    (fake_release / "images" / "evil.tar").unlink()
    with zipfile.ZipFile(fake_release / "images" / "evil.zip", "w") as bundle:
        bundle.writestr("../escaped.jpg", data)
    with pytest.raises(hf.HFDataError, match="would be written outside"):
        release.fetch_official(tmp_path / "official2")
    assert not list(tmp_path.rglob("escaped.jpg"))


def test_offline_the_hub_commands_say_what_went_wrong(exported, tmp_path):
    """With HF_HUB_OFFLINE=1 (read when huggingface_hub is imported, hence a fresh process) nothing hangs or
    crashes: each command says what it could not reach and what to do instead."""
    code = (
        "import sys\nfrom progresslm.cli.main import main\n"
        f"print('eval', main(['eval', '--bench', 'nobody/no-such-bench', '--backend', 'constant', '--quiet']))\n"
        f"print('fetch', main(['bench', 'fetch-official', '--out', {str(tmp_path / 'official')!r}]))\n"
        f"print('push', main(['bench', 'export', {str(SIM_SAMPLE)!r}, '--out', {str(tmp_path / 'hf')!r}, "
        "'--push', 'nobody/bench', '--quiet']))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"),
           "PROGRESSLM_HOME": str(tmp_path / "home")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    codes = [line for line in done.stdout.splitlines() if line.startswith(("eval ", "fetch ", "push "))]
    assert codes == ["eval 2", "fetch 2", "push 1"], done.stderr
    err = done.stderr
    assert "'nobody/no-such-bench' is no file or folder here, and loading it as a Hub dataset failed" in err
    assert "could not download the Hub dataset Raymond-Qiancx/ProgressLM-Dataset" in err
    assert "could not push" in err and "HF_HUB_OFFLINE" in err and "hf upload nobody/bench" in err
    assert (tmp_path / "hf" / "data" / "bench-00000-of-00001.parquet").is_file()  # the export itself is complete
