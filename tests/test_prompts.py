"""Snapshot tests: a prompt that changes by accident fails here. To accept a deliberate change,
run `UPDATE_SNAPSHOTS=1 pytest tests/test_prompts.py` and commit the new snapshots."""

import os
from pathlib import Path

import pytest
from helpers import fixture

from progresslm.bench.format import read_official
from progresslm.prompts import build_prompt, render_text

SNAPSHOTS = Path(__file__).parent / "snapshots"
CASES = {
    "visual_same_view": ("visual_same_view", 0),
    "visual_cross_view": ("visual_cross_view", 0),
    "text": ("text-normal", 4),
    "human_text": ("human_text_demo", 1),
}


@pytest.mark.parametrize("mode", ["direct", "two-stage"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_prompt_snapshot(case, mode):
    file, row = CASES[case]
    sample = read_official(fixture(file)).samples[row]
    prompt = build_prompt(sample, mode, image_root="/images")
    text = render_text(prompt) + "\n\n[images]\n" + "\n".join(map(str, prompt.images)) + f"\n[hash] {prompt.hash}\n"
    path = SNAPSHOTS / f"prompt_{case}_{mode}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.write_text(text)
    assert path.exists(), f"no snapshot {path}; run UPDATE_SNAPSHOTS=1 pytest {__file__}"
    assert text == path.read_text(), f"prompt changed; if deliberate, run UPDATE_SNAPSHOTS=1 pytest {__file__}"


def test_images_interleaved_and_counted():
    sample = read_official(fixture("visual_same_view")).samples[0]
    prompt = build_prompt(sample, "two-stage", "/root")
    parts = prompt.messages[1]["content"]
    assert sum(part["type"] == "image" for part in parts) == len(prompt.images) == len(sample.demo.items) + 1
    # every keyframe is introduced by text stating its progress, then the image
    for i, part in enumerate(parts):
        if part["type"] == "image" and i < len(parts) - 2:
            assert parts[i - 1]["type"] == "text" and parts[i - 1]["text"].rstrip().endswith("):")
    assert str(prompt.images[0]) == f"/root/{sample.trajectory_id}/camera_top_0000.jpg"


def test_text_prompt_shows_rounded_percent_and_one_image():
    sample = read_official(fixture("text-normal")).samples[5]  # 6 steps: 1/6 -> 17%
    prompt = build_prompt(sample, "direct")
    text = render_text(prompt)
    assert "(ends at 17%)" in text and "(ends at 67%)" in text
    assert len(prompt.images) == 1


def test_hash_changes_with_mode_and_content():
    a, b = read_official(fixture("visual_same_view")).samples[:2]
    assert build_prompt(a, "direct").hash != build_prompt(a, "two-stage").hash
    assert build_prompt(a, "direct").hash != build_prompt(b, "direct").hash
    assert build_prompt(a, "direct", "/x").hash == build_prompt(a, "direct", "/y").hash  # root-independent


def test_unknown_mode():
    sample = read_official(fixture("visual_same_view")).samples[0]
    with pytest.raises(ValueError, match="valid modes"):
        build_prompt(sample, "cot")
