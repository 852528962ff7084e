"""Sources of episodes by name: `KIND:PATH` (`lerobot:DIR` or a Hub dataset id, `videos:DIR`, `frames:DIR`,
`hdf5:FILE`, or `hdf5:FILE#KEY` for the demos of robomimic's filter key `mask/KEY`) or a path alone, whose kind is then recognised from what it holds (`meta/info.json` is LeRobot,
`.hdf5`/`.h5` is robomimic, a folder of video files is videos, a folder of image folders is frames)."""

from __future__ import annotations

from pathlib import Path

from progresslm.data.episodes import VIDEO_SUFFIXES, Episode, EpisodeSourceError, kind_is_hub_id
from progresslm.data.folders import open_frames, open_videos
from progresslm.data.hdf5 import open_hdf5
from progresslm.data.lerobot import open_lerobot
from progresslm.images import IMAGE_SUFFIXES

KINDS = ("lerobot", "videos", "frames", "hdf5")


def parse_spec(spec: str) -> tuple[str | None, str]:
    """(kind or None, location) from `KIND:PATH` or a bare path.

    >>> parse_spec("lerobot:/data/pusht"), parse_spec("runs/clips"), parse_spec("C:/x")
    (('lerobot', '/data/pusht'), (None, 'runs/clips'), (None, 'C:/x'))
    """
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS:
        return kind, rest
    return None, spec


def detect_kind(path: Path) -> str:
    """The kind of a local source from what it holds."""
    if path.is_file():
        if path.suffix.lower() in (".hdf5", ".h5"):
            return "hdf5"
        raise EpisodeSourceError(f"{path}: a single file is read only as robomimic HDF5 (.hdf5/.h5); "
                                 "put videos in a folder (videos:DIR)")
    if not path.is_dir():
        raise EpisodeSourceError(f"{path} does not exist")
    if (path / "meta" / "info.json").is_file():
        return "lerobot"
    entries = list(path.rglob("*"))
    if any(p.suffix.lower() in VIDEO_SUFFIXES for p in entries):
        return "videos"

    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
        return "frames"
    raise EpisodeSourceError(f"{path}: not a LeRobot dataset (no meta/info.json), and holds no videos or image folders")


def open_episodes(spec: str, **options) -> list[Episode]:
    """Every episode of a source, in source order. `options` go to the source's reader (e.g. `revision` of a Hub
    dataset, `fps` of frame folders)."""
    kind, location = parse_spec(spec)
    path = Path(location).expanduser()
    if kind is None:
        if not path.exists() and kind_is_hub_id(location):
            kind = "lerobot"
        else:
            kind = detect_kind(path)
    if kind == "lerobot":
        return open_lerobot(location, **options)
    if kind == "videos":
        return open_videos(path, **options)
    if kind == "frames":
        return open_frames(path, **options)

    file, mark, key = location.rpartition("#")
    if mark and key and not path.exists():  # FILE#KEY: robomimic's filter key, written into the source name so
        options = {**options, "filter_key": key}  # that data build's card and watch --source carry it
        path = Path(file).expanduser()
    return open_hdf5(path, **options)


def select(episodes: list[Episode], ranges: str | None, option: str = "--episodes") -> list[Episode]:
    """The episodes whose index is in `ranges` ("0-9,12"; None: all); an EpisodeSourceError naming `option` (the
    command-line option the ranges came from) for a range written backwards (3-1), one beyond the source's indices
    (checked before any index is listed, so 0-20000000 costs nothing) or an index the source lacks.

    >>> eps = [Episode("x", str(i), i, "t", ("c",), 10.0, 5, reader=None) for i in range(5)]
    >>> [e.index for e in select(eps, "0-1,4")]
    [0, 1, 4]
    """
    if not ranges:
        return episodes
    if not episodes:
        raise EpisodeSourceError(f"{option} {ranges!r}: the source has no episodes")
    by_index = {e.index: e for e in episodes}
    low, high = min(by_index), max(by_index)
    have = f"it has {len(episodes)} episodes: {low}-{high}"
    spans: list[tuple[int, int]] = []
    for part in str(ranges).split(","):
        a, sep, b = part.strip().partition("-")
        try:
            lo, hi = int(a), int(b) if sep else int(a)
        except ValueError:
            raise EpisodeSourceError(f"{option} {ranges!r}: write indices and ranges like 0-9,12") from None
        if hi < lo:
            raise EpisodeSourceError(f"{option} {ranges!r}: the range {part.strip()} runs backwards (write {hi}-{lo})")
        if lo < low or hi > high:
            raise EpisodeSourceError(f"{option} {ranges!r}: the source has no episode "
                                     f"{lo if lo < low else hi} ({have})")  # fmt: skip
        spans.append((lo, hi))
    wanted = [i for lo, hi in spans for i in range(lo, hi + 1)]  # each span lies inside the source's indices
    missing = [i for i in wanted if i not in by_index]
    if missing:
        raise EpisodeSourceError(f"{option}: the source has no episode {missing[0]} ({have})")
    return [by_index[i] for i in dict.fromkeys(wanted)]
