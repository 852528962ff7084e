"""Issue 25, the three checks left: a build resumed over a manifest, split file or card a kill or a disk left broken
(refused in one line, or written again; never trusted); every JSON that `data build` and `watch` write is strict JSON
under hostile numbers; and a LeRobot dataset read from the Hugging Face cache never follows a link out of its cache
folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from data.own_data import write_videos
from helpers import tiny_sim_config

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
