"""Fast frames, flipped corner cameras, scene randomisation and object edits on a Meta-World scene."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from progresslm.sim.mujoco_scene.edits import EDIT_KINDS, edit_object, goal_sites, hide_sites, task_object_geoms
from progresslm.sim.mujoco_scene.framing import apply_framing, frame_cameras
from progresslm.sim.mujoco_scene.randomise import LEVEL_RANGES, Randomizer, SceneStyle
from progresslm.sim.mujoco_scene.render import (
    OVERLAY,
    SCENE_CAMERAS,
    FrameRenderer,
    RenderError,
    UnknownCameraError,
    check_gl,
)

# Every model field a style or an edit may write; after leaving the context they must be bit-identical.
WRITTEN = ("geom_rgba", "geom_matid", "mat_rgba", "light_diffuse", "light_dir", "light_pos", "cam_pos", "cam_quat")
WRITTEN += ("site_rgba", "tex_data", "cam_fovy")


@pytest.fixture(scope="module", autouse=True)
def gl() -> str:
    """Runs first: it sets MUJOCO_GL, which must happen before anything imports mujoco."""
    try:
        return check_gl()
    except RenderError as error:
        pytest.skip(f"no working MuJoCo GL backend, so nothing can be rendered: {error}")


@pytest.fixture(scope="module")
def env(gl):
    """pick-place at reset: the puck stands on the table, the goal marker is shown."""
    metaworld = pytest.importorskip("metaworld")  # imports mujoco, so only after `gl`
    mt1 = metaworld.MT1("pick-place-v3", seed=0)
    env = mt1.train_classes["pick-place-v3"]()
    env.set_task(mt1.train_tasks[0])
    env.reset(seed=0)
    yield env
    env.close()


@pytest.fixture(scope="module")
def model(env):
    return env.unwrapped.model


@pytest.fixture(scope="module")
def data(env):
    return env.unwrapped.data


@pytest.fixture(scope="module")
def small(model):
    with FrameRenderer(model, size=64) as renderer:
        yield renderer


@pytest.fixture(scope="module")
def big(model):
    """Large enough that the 2-cm puck covers ~35 pixels from corner4."""
    with FrameRenderer(model, size=192) as renderer:
        yield renderer


@pytest.fixture(scope="module")
def obj(model) -> list[int]:
    return task_object_geoms(model)


def snapshot(model) -> dict[str, np.ndarray]:
    arrays = {name: getattr(model, name).copy() for name in WRITTEN}
    arrays["headlight"] = np.concatenate([model.vis.headlight.ambient, model.vis.headlight.diffuse])
    return arrays


def assert_same(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> None:
    for name, array in before.items():
        assert np.array_equal(array, after[name]), f"model.{name} was not restored"


def object_mask(renderer, data, geoms, camera="corner4") -> np.ndarray:
    mask = np.isin(renderer.segment(data, camera), geoms)
    assert mask.sum() > 20, "the object should be visible from this camera"
    return mask


def test_frames_are_uint8_of_the_requested_size(small, data):
    for camera in (*SCENE_CAMERAS, "topview", "gripperPOV"):
        image = small.render(data, camera)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert image.std() > 5, f"{camera} gave a flat image"


def test_corner_cameras_are_turned_upright(small, data):
    raw = small._renderer  # the wrapped mujoco.Renderer, which does not flip
    for camera, flipped in (("corner", True), ("corner3", True), ("topview", False)):
        image = small.render(data, camera)
        raw.update_scene(data, camera)
        unflipped = raw.render()
        assert not np.array_equal(image, unflipped) or not flipped
        assert np.array_equal(image, unflipped[::-1, ::-1] if flipped else unflipped)
    # Upright means sky above floor: the top rows are the flat grey background.
    upright = small.render(data, "corner2")
    assert upright[:4].std() < upright[-4:].std()


def test_unknown_camera_lists_the_valid_ones(small, data):
    with pytest.raises(UnknownCameraError, match="unknown camera 'side'") as error:
        small.render(data, "side")
    for name in ("topview", "corner", "corner2", "corner3", "corner4", "behindGripper", "gripperPOV"):
        assert name in str(error.value)


def test_default_randomisation_changes_the_scene_and_is_undone_exactly(big, model, data, obj):
    mask = object_mask(big, data, obj)
    plain = big.render(data, "corner4")
    before = snapshot(model)
    randomizer = Randomizer("default")
    styled = []
    for seed in (1, 2):
        style = randomizer.sample(np.random.default_rng(seed), avoid_xy=[data.geom_xpos[obj[0]]])
        with randomizer.apply(model, style, keep=obj, renderer=big):
            styled.append(big.render(data, "corner4").astype(int))
    background = ~mask
    assert np.abs(styled[0] - styled[1])[background].mean() > 3, "two default styles should look different"
    assert np.abs(styled[0] - plain)[background].mean() > 3
    assert_same(before, snapshot(model))
    assert np.array_equal(big.render(data, "corner4"), plain), "textures on the GPU were not restored"


@pytest.mark.parametrize("level", ["default", "strong"])
def test_randomisation_leaves_the_object_look_alone(small, model, data, obj, level):
    randomizer = Randomizer(level)
    rgba, material = model.geom_rgba[obj].copy(), model.geom_matid[obj].copy()
    materials = model.mat_rgba.copy()
    for seed in range(10):
        with randomizer.apply(model, randomizer.sample(np.random.default_rng(seed)), keep=obj, renderer=small):
            assert np.array_equal(model.geom_rgba[obj], rgba)
            assert np.array_equal(model.geom_matid[obj], material)
            assert np.array_equal(model.mat_rgba, materials)


def test_level_none_changes_nothing(small, model, data):
    plain = small.render(data, "corner")
    style = Randomizer("none").sample(np.random.default_rng(0))
    assert style == SceneStyle()
    with Randomizer.apply(model, style):
        assert np.array_equal(small.render(data, "corner"), plain)


def test_styles_are_reproducible_and_recordable():
    a = Randomizer("strong").sample(np.random.default_rng(7), avoid_xy=[(0.0, 0.6)])
    b = Randomizer("strong").sample(np.random.default_rng(7), avoid_xy=[(0.0, 0.6)])
    assert a == b
    record = a.to_dict()
    assert record["level"] == "strong" and len(record["distractors"]) == len(a.distractors)


def test_distractors_keep_clear_and_are_drawn(big, model, data, obj):
    avoid = [data.geom_xpos[obj[0]][:2], (0.0, 0.8)]
    randomizer = Randomizer("strong")
    clearance = LEVEL_RANGES["strong"].clearance_m
    for seed in range(20):
        style = randomizer.sample(np.random.default_rng(seed), avoid_xy=avoid)
        assert 1 <= len(style.distractors) <= LEVEL_RANGES["strong"].distractors[1]
        for geom in style.distractors:
            assert min(np.linalg.norm(np.asarray(geom.pos[:2]) - p) for p in avoid) >= clearance
    with randomizer.apply(model, style, keep=obj, renderer=big):
        drawn = (big.segment(data, "corner3") == OVERLAY).sum()
    assert drawn > 0
    assert (big.segment(data, "corner3") == OVERLAY).sum() == 0, "distractors outlived their context"


def test_styles_with_drawn_parts_need_the_renderer(model):
    style = Randomizer("strong").sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="renderer"):
        with Randomizer.apply(model, style):
            pass


@pytest.mark.parametrize("kind", EDIT_KINDS)
def test_each_edit_changes_the_object_region(big, model, data, obj, kind):
    mask = object_mask(big, data, obj)
    plain = big.render(data, "corner4").astype(int)
    before = snapshot(model)
    with edit_object(model, obj, kind, np.random.default_rng(0), renderer=big) as record:
        edited = big.render(data, "corner4").astype(int)
    assert record["kind"] == kind and record["geoms"] == ["objGeom"]
    assert np.abs(edited - plain)[mask].mean() > 30, f"{kind} barely changed the object's pixels"
    assert_same(before, snapshot(model))
    assert np.array_equal(big.render(data, "corner4"), plain)


def test_edit_errors_name_the_fix(model, obj):
    with pytest.raises(ValueError, match="valid kinds: recolor, hide, replace"):
        with edit_object(model, obj, "shrink", np.random.default_rng(0)):
            pass
    with pytest.raises(ValueError, match="renderer"):
        with edit_object(model, obj, "replace", np.random.default_rng(0)):
            pass
    with pytest.raises(ValueError, match="objGeom"):
        with edit_object(model, ["no_such_geom"], "hide", np.random.default_rng(0)):
            pass


def test_goal_marker_can_be_hidden(model):
    goals = goal_sites(model)
    assert [model.site(i).name for i in goals] == ["goal"]
    before = model.site_rgba.copy()
    with hide_sites(model, goals) as hidden:
        assert hidden == ["goal"] and model.site_rgba[goals[0], 3] == 0
    assert np.array_equal(model.site_rgba, before)


def test_missing_gl_backend_says_what_to_install():
    script = "from progresslm.sim.mujoco_scene.render import check_gl; check_gl()"
    environment = {**os.environ, "MUJOCO_GL": "no-such-backend"}
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
    assert result.returncode != 0
    assert "RenderError" in result.stderr
    assert "MUJOCO_GL=egl" in result.stderr and "libosmesa6" in result.stderr


def _axes(quat) -> np.ndarray:
    import mujoco

    rotation = np.zeros(9)
    mujoco.mju_quat2Mat(rotation, np.asarray(quat, dtype=np.float64))
    return rotation.reshape(3, 3)


def _project(model, camera_id: int, points: np.ndarray) -> np.ndarray:
    """Image-plane coordinates in units of tan(fovy / 2): inside the frame when both lie in [-1, 1]."""
    import mujoco

    rotation = np.zeros(9)
    mujoco.mju_quat2Mat(rotation, model.cam_quat[camera_id])
    local = (points - model.cam_pos[camera_id]) @ rotation.reshape(3, 3)
    depth = -local[:, 2]
    assert (depth > 0).all(), "a point lies behind the camera"
    return local[:, :2] / depth[:, None] / np.tan(np.radians(model.cam_fovy[camera_id]) / 2)


def test_framing_zooms_on_the_task_and_keeps_it_in_view(big, model, data, obj):
    """The task region (here: the puck, the goal and a hand path) fills more of the frame, every point of it
    stays inside, the corner camera stays upright, and the model is restored exactly afterwards."""
    puck = data.geom_xpos[obj].mean(axis=0)
    points = np.array([puck, puck + [0.0, 0.0, 0.15], puck + [0.1, -0.05, 0.2], [0.0, 0.6, 0.2]])
    before = snapshot(model)
    plain = object_mask(big, data, obj).sum()
    framing = frame_cameras(model, ["corner4", "corner2"], points)
    assert_same(before, snapshot(model))  # computing a framing changes nothing
    with apply_framing(model, framing):
        for camera in ("corner4", "corner2"):
            c = big.camera_id(camera)
            assert model.cam_fovy[c] < before["cam_fovy"][c]
            uv = _project(model, c, points)
            assert np.abs(uv).max() <= 1.0, f"{camera}: a task point left the frame ({np.abs(uv).max():.2f})"
        framed = object_mask(big, data, obj).sum()
        ups = [_axes(model.cam_quat[big.camera_id(c)])[:, 1] for c in ("corner4", "corner2")]
    assert framed > 3 * plain, (plain, framed)
    for up, c in zip(ups, ("corner4", "corner2")):  # the smallest turn keeps the roll: the flip still applies
        assert up @ _axes(before["cam_quat"][big.camera_id(c)])[:, 1] > 0.9
    assert_same(before, snapshot(model))
    assert set(framing.to_dict()) == {"corner4", "corner2"}


def test_framing_names_an_unknown_camera(model):
    with pytest.raises(ValueError, match="unknown camera 'side'"):
        frame_cameras(model, ["side"], np.zeros((2, 3)))


def test_torch_compiler_loads_after_offscreen_rendering():
    """Mesa's software renderer loads its own LLVM; triton imported after it (torch._dynamo, which transformers and TRL
    import when a model loads) crashed the process with a segmentation fault, e.g. a reward rendered in MuJoCo beside
    a local model. check_gl loads triton first. Run in a child: a crash must not take the test run with it."""
    import importlib.util

    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    child = ("from progresslm.sim.mujoco_scene.render import check_gl; check_gl()\n"
             "import mujoco\n"
             "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"1\"/></worldbody></mujoco>')\n"
             "r = mujoco.Renderer(m, 16, 16); r.update_scene(mujoco.MjData(m)); r.render(); r.close()\n"
             "import torch._dynamo\nprint('loaded')\n")
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "MUJOCO_GL": "egl"})
    assert done.returncode == 0 and "loaded" in done.stdout, (done.returncode, done.stderr[-1000:])
