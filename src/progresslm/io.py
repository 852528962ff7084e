"""File helpers every part of the package shares: paths as written in recipes and on command lines (`${VAR:-default}`,
`~`, globs), and atomic writes (a temporary file in the same folder renamed over the target, so a reader or a crash
never sees half a file)."""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def expand_path(text: str) -> str:
    """A path as the machine sees it: `${NAME:-default}` (the default when NAME is unset or empty, as in a shell),
    then `$NAME` / `${NAME}`, then `~`. Recipes use it for every data path, so a recipe can say
    `${PROGRESSLM_HOME:-~/.cache/progresslm}/example-v1/text-normal.jsonl`.

    >>> import os; os.environ.pop("PLM_DOCTEST", None)
    >>> expand_path("${PLM_DOCTEST:-/cache}/a.jsonl")
    '/cache/a.jsonl'
    >>> os.environ["PLM_DOCTEST"] = "/data"
    >>> expand_path("${PLM_DOCTEST:-/cache}/a.jsonl"), expand_path("$PLM_DOCTEST/b")
    ('/data/a.jsonl', '/data/b')
    >>> del os.environ["PLM_DOCTEST"]
    """
    text = _DEFAULTED.sub(lambda m: os.environ.get(m.group(1)) or m.group(2), str(text))
    return os.path.expanduser(os.path.expandvars(text))


def expand_files(patterns: list[str]) -> list[Path]:
    """File patterns (`expand_path`, then globs) as paths, in order: each glob's matches sorted, a plain path as it
    is (existing or not)."""
    files: list[Path] = []
    for pattern in patterns:
        text = expand_path(pattern)
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        files.extend(Path(m) for m in matches)
    return files


def data_home() -> Path:
    """The folder builds, caches and fetched data go to by default: `$PROGRESSLM_HOME`, else ~/.cache/progresslm."""
    return Path(os.environ.get("PROGRESSLM_HOME", Path.home() / ".cache" / "progresslm"))


def image_root_path(image_root: str | None) -> str | None:
    """An image root as the machine sees it (`expand_path`), None when unset."""
    return expand_path(image_root) if image_root else None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
KEY_LENGTH = 60


def slug(text: str, limit: int = KEY_LENGTH) -> str:
    """`text` as a safe file or folder name that keeps names apart: runs of other characters become `_`; a name with
    non-ASCII characters, or one cut at `limit` characters, also gets 8 hex digits of its sha256, so names that
    differ only in those characters (task folders named in Chinese, two long names with one beginning) never share
    a key. A name made only of dots (".", "..": a folder itself, its parent) is its hash alone. A plain ASCII name
    keeps the spelling it always had.

    >>> slug("open the drawer/ep 3"), slug("抽屉") != slug("柜子"), len(slug("x" * 100)), len(slug(".."))
    ('open_the_drawer_ep_3', True, 60, 8)
    """
    safe = _UNSAFE.sub("_", text).strip("_")
    if not safe.strip("."):  # "." and ".." name a folder itself and its parent: such a name is its hash alone
        safe = ""
    if safe.isascii() and text.isascii() and len(safe) <= limit and safe:
        return safe
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe[: limit - 9].strip('_')}-{digest}".lstrip("-")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` when the block ends without an error,
    removed when it raises."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextmanager
def atomic_dir(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """A fresh folder beside `path` (`<name>.partial`, emptied first if a killed run left one) to fill; renamed to
    `path` when the block ends without an error, removed when it raises, so `path` never holds half a result. An
    existing `path` must be an empty folder, or `replace` must be set: it is then removed, but only once the new
    folder is complete."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        old = None
        if replace and path.is_dir() and any(path.iterdir()):
            old = path.with_name(path.name + ".replaced")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)  # over an empty folder, or none
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


class OutsideRootError(ValueError):
    """A path that resolves outside the folder it must stay in (an absolute name, `..`, a symlink out)."""


def confined(path: str | Path, root: str | Path, what: str, resolve: bool = True) -> Path:
    """`path` (relative to `root` unless absolute) resolved, when it lies under `root` (resolved too); else
    OutsideRootError, one line naming `what` (e.g. "meta/info.json video_path", "row 12 image") and the path. Symlinks
    are followed on both sides, so a link inside `root` that points out is refused as well. `resolve=False` checks the
    name only (absolute names and `..` that climbs out are refused, symlinks are not followed): for folders made of
    links by design, such as a Hugging Face cache snapshot, whose files link to `../../blobs/`.

    >>> import tempfile; root = Path(tempfile.mkdtemp())
    >>> confined("a/b.png", root, "image") == (root / "a/b.png").resolve()
    True
    >>> confined("../x.png", root, "row 3 image")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    progresslm.io.OutsideRootError: row 3 image '../x.png' leads outside .../
    >>> confined("videos/a/../b.mp4", "/data", "video_path", resolve=False)
    PosixPath('/data/videos/b.mp4')
    """
    if not resolve:
        name = str(path)
        normal = os.path.normpath(name) if name else ""
        if "\0" in name or os.path.isabs(name) or normal == ".." or normal.startswith(".." + os.sep):
            raise OutsideRootError(f"{what} {name!r} leads outside {Path(root)}{os.sep} (an absolute name or '..')")
        return Path(root) / normal
    base = Path(root).resolve()
    try:
        target = (base / Path(path)).resolve()  # an absolute `path` replaces `base` here, and is then checked
    except (ValueError, OSError) as err:  # a NUL byte, a symlink loop
        raise OutsideRootError(f"{what} {str(path)!r} is not a usable path ({err})") from None
    if not target.is_relative_to(base):
        raise OutsideRootError(f"{what} {str(path)!r} leads outside {base}{os.sep}")
    return target


class Confinement:
    """Many paths checked against one root, as `confined` checks one: `inside(path)` is whether `path` (absolute, or
    relative to the working folder) resolves under `root`, following symlinks. Each folder is resolved once and each
    path judged once, since a benchmark's images share a few folders (eval checks every image of every prompt:
    resolving each path whole made 198k lstat calls on 3,000 samples)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._folders: dict[str, str] = {}  # folder -> its real path
        self._verdicts: dict[str, bool] = {}  # path -> inside the root

    def inside(self, path: str | Path) -> bool:
        key = str(path)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = self._judge(key)
        return verdict

    def _judge(self, path: str) -> bool:
        if "\0" in path:
            return False
        if ".." in Path(path).parts:  # '..' after a symlinked folder must follow the link: resolve it all
            return Path(path).resolve().is_relative_to(self.root)
        folder, name = os.path.split(os.path.abspath(path))
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(folder)
        target = os.path.join(real, name)
        if os.path.islink(target) or name in ("", ".", ".."):
            target = os.path.realpath(target)
        return Path(target).is_relative_to(self.root)

