"""The authors' release (`progresslm bench fetch-official`): the Hub dataset their README links,
`Raymond-Qiancx/ProgressLM-Dataset`, downloaded with `huggingface_hub.snapshot_download`, its image archives
unpacked, and its benchmark files with the image root they resolve under, in the layout `progresslm eval` reads
(docs/hf.md)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from progresslm.bench.format import FILE_STEMS, read_official
from progresslm.data.hf_datasets import HFDataError, hub_errors, hub_reason, safe_relative, staging_dir
from progresslm.io import write_text_atomic

log = logging.getLogger(__name__)

OFFICIAL_REPO = "Raymond-Qiancx/ProgressLM-Dataset"  # linked from the authors' README
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


@dataclass
class OfficialRelease:
    """The authors' release on disk: the snapshot, its benchmark files and where their images resolve."""

    folder: Path
    release: Path
    bench_files: list[Path]
    other_files: list[Path]
    image_root: Path
    images_found: int
    images_checked: int
    archives: list[Path] = field(default_factory=list)


def _download(repo_id: str, target: Path, revision: str | None, include: list[str] | None) -> None:
    import huggingface_hub  # lazy: huggingface_hub (the [data] extra)

    try:
        huggingface_hub.snapshot_download(repo_id, repo_type="dataset", revision=revision, local_dir=str(target),
                                          allow_patterns=include or None)  # fmt: skip
    except hub_errors() as err:
        raise HFDataError(
            f"could not download the Hub dataset {repo_id} ({hub_reason(err)}). This needs network access to "
            "huggingface.co (and HF_HUB_OFFLINE unset). Elsewhere: hf download "
            f"{repo_id} --repo-type dataset --local-dir {target}, then copy that folder here and run this command "
            "again (files already there are not downloaded again)"
        ) from None


def _visible(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            yield path


def _id_prefixes(files: list[Path]) -> set[str]:
    """The first component of every row's id (`h5_franka_3rgb`, `human`): archives are named after them."""
    prefixes = set()
    for file in files:
        with file.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    prefixes.add(str(json.loads(line)["id"]).split("/", 1)[0])
                except (ValueError, KeyError, TypeError):
                    continue
    return prefixes


def _merge(source: Path, target: Path) -> None:
    """Move the contents of `source` into `target`, folder into folder."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        dest = target / entry.name
        if entry.is_dir() and dest.is_dir():
            _merge(entry, dest)
        else:
            os.replace(entry, dest)


def _extract(archive: Path, images: Path, prefixes: set[str]) -> None:
    """Unpack one archive into `images`. Members that would land outside are refused. An archive named after an
    id prefix (h5_franka_3rgb.tar.gz) whose members lack that folder goes under it, so that IMAGE_ROOT/<id>/<name>
    resolves either way."""
    staging = staging_dir(images / "unpacking")
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as bundle:
                for member in bundle.namelist():
                    safe_relative(member.rstrip("/") or ".", "archive member", str(archive))
                bundle.extractall(staging)
        else:
            with tarfile.open(archive) as bundle:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                    bundle.extractall(staging, filter="data")  # refuses absolute names, '..', links leaving it
                else:
                    for member in bundle.getmembers():
                        safe_relative(member.name, "archive member", str(archive))
                        if not (member.isfile() or member.isdir()):
                            raise HFDataError(f"{archive}: member {member.name!r} is a link or device; refused")
                    bundle.extractall(staging)
        stem = next(archive.name[: -len(s)] for s in ARCHIVE_SUFFIXES if archive.name.endswith(s))
        top = {entry.name for entry in staging.iterdir()}
        _merge(staging, images / stem if stem in prefixes and stem not in top else images)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise HFDataError(f"{archive}: cannot unpack it ({hub_reason(err)}); delete it and download again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _pick_bench_files(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """The benchmark's JSONL files (the folder with most of the authors' five file names) and all the others."""
    by_folder: dict[Path, list[Path]] = {}
    for file in files:
        if file.stem in FILE_STEMS:
            by_folder.setdefault(file.parent, []).append(file)
    if not by_folder:
        return [], files
    folder = max(by_folder, key=lambda f: (len(by_folder[f]), -len(f.parts)))
    bench = sorted(by_folder[folder], key=lambda p: FILE_STEMS.index(p.stem))
    return bench, [f for f in files if f not in bench]


def _find_image_root(files: list[Path], candidates: list[Path], per_file: int = 40) -> tuple[Path, int, int]:
    """The candidate folder under which most of the first rows' images resolve, with (found, checked)."""
    names: list[tuple[str, str]] = []
    for file in files:
        try:
            samples = read_official(file).samples[:per_file]
        except ValueError:  # an unreadable file is reported when it is evaluated
            continue
        names += [(s.trajectory_id, n) for s in samples for n in s.image_names() if not Path(n).is_absolute()]
    best, best_found = candidates[0], -1
    for root in candidates:
        found = sum((root / tid / name).is_file() for tid, name in names)
        if found > best_found:
            best, best_found = root, found
    return best, max(best_found, 0), len(names)


def fetch_official(out: str | Path, revision: str | None = None, include: list[str] | None = None,
                   repo_id: str = OFFICIAL_REPO) -> OfficialRelease:  # fmt: skip
    """Download the authors' release (`snapshot_download`, resumable) into OUT/release, unpack its image archives
    into OUT/images, and find the benchmark files and the folder their images resolve under."""
    out = Path(out)
    release = out / "release"
    _download(repo_id, release, revision, include)
    files = list(_visible(release))
    jsonl = [f for f in files if f.suffix == ".jsonl"]
    if not jsonl:
        raise HFDataError(f"{release}: the download holds no JSONL files (the release layout may have changed: look "
                          "at the folder and pass its benchmark files to progresslm eval --bench)")
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    archives = [f for f in files if f.name.endswith(ARCHIVE_SUFFIXES)]
    stamps_file = images / "unpacked.json"
    try:
        stamps = json.loads(stamps_file.read_text(encoding="utf-8")) if stamps_file.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        stamps = None
    if not isinstance(stamps, dict):  # cut short or garbled: unpack everything again rather than trust it
        log.warning("%s is not a JSON object of archive sizes; unpacking every archive again", stamps_file)
        stamps = {}
    prefixes = _id_prefixes(jsonl) if archives else set()
    for archive in archives:
        key, stamp = str(archive.relative_to(release)), archive.stat().st_size
        if stamps.get(key) != stamp:
            log.info("unpacking %s", archive)
            _extract(archive, images, prefixes)
            stamps[key] = stamp
            write_text_atomic(stamps_file, json.dumps(stamps, indent=2, allow_nan=False) + "\n")
    bench, others = _pick_bench_files(jsonl)
    near = [images, release]
    candidates = near + [d for base in near for d in sorted(base.glob("*/")) + sorted(base.glob("*/*/"))
                         if d.is_dir() and not d.name.startswith(".")]  # fmt: skip
    root, found, checked = _find_image_root(bench or jsonl, candidates)
    return OfficialRelease(out, release, bench, others, root, found, checked, archives)
