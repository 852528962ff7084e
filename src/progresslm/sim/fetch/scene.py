"""Rendering Fetch scenes: one renderer per env with fast settings and no markers, scene styles (randomisation) and
object edits for unanswerable samples.

`FetchRenderer` is the shared `FrameRenderer` (shadows, reflections and multisampling off; overlays) with a scene
option that draws no sites (the red goal sphere `target0` and the object's marker), no rangefinder rays (Fetch's
lidar draws green lines across the table) and only geom groups 0-2. A frame whose mean absolute horizontal pixel
difference is above `NOISE_LIMIT` is GL noise (seen when several offscreen contexts share a process): it is
rendered again, and refused if it stays noisy.

`FetchStyle` varies what carries no progress between a demonstration and an observation episode: light strength,
colour and direction, floor and table colours, the robot's paint (strong level), a camera nudge, distractor objects
on the table away from the object's and fingertips' paths. The task object's look never changes there; edits
(recolour, hide, replace) are the shared `edit_object`.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np

from progresslm.sim.family import LEVELS
from progresslm.sim.mujoco_scene.model import restoring
from progresslm.sim.mujoco_scene.randomise import style_to_dict
from progresslm.sim.mujoco_scene.render import SHAPES, ExtraGeom, FrameRenderer, RenderError, check_gl

NOISE_LIMIT = 25.0  # mean |horizontal pixel difference|; clean Fetch frames stay under 10
NOISE_RETRIES = 2
TABLE_TOP = 0.4

# Plain colours a floor, a table or a robot is painted in (RGB).
FLOOR_COLOURS = ((0.2, 0.2, 0.2), (0.55, 0.55, 0.55), (0.75, 0.7, 0.6), (0.25, 0.28, 0.35), (0.55, 0.4, 0.28))
TABLE_COLOURS = ((0.93, 0.93, 0.93), (0.62, 0.45, 0.3), (0.8, 0.75, 0.65), (0.5, 0.55, 0.6), (0.35, 0.35, 0.38))
ROBOT_COLOURS = ((0.55, 0.55, 0.58), (0.85, 0.4, 0.1), (0.15, 0.25, 0.6), (0.12, 0.12, 0.12))
DISTRACTOR_COLOURS = ((0.85, 0.15, 0.1), (0.1, 0.55, 0.2), (0.95, 0.8, 0.1), (0.6, 0.2, 0.7), (0.95, 0.5, 0.1),
                      (0.2, 0.5, 0.9), (0.9, 0.9, 0.85), (0.5, 0.3, 0.15))


@dataclass(frozen=True)
class Ranges:
    light: tuple[float, float]
    light_tint: float
    light_turn_deg: float
    repaint_p: float  # chance of a new floor colour and of a new table colour
    robot_paint_p: float
    camera_shift_m: float
    camera_turn_deg: float
    distractors: tuple[int, int]


LEVEL_RANGES = {
    "default": Ranges((0.75, 1.2), 0.15, 25.0, 0.5, 0.0, 0.02, 2.0, (0, 2)),
    "strong": Ranges((0.55, 1.35), 0.35, 40.0, 0.9, 0.5, 0.05, 5.0, (1, 4)),
}


@dataclass(frozen=True)
class FetchStyle:
    """One sampled look of a Fetch scene; defaults leave the scene as shipped."""

    level: str = "none"
    light: float = 1.0
    light_tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    light_turn: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rotation vector, radians
    floor: tuple[float, float, float] | None = None
    table: tuple[float, float, float] | None = None
    robot: tuple[float, float, float] | None = None
    camera_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # metres, camera frame
    camera_turn: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rotation vector, camera frame
    distractors: tuple[ExtraGeom, ...] = field(default=())

    def to_dict(self) -> dict:
        return style_to_dict(self)


class FetchRenderer(FrameRenderer):
    """`FrameRenderer` drawing no sites and no rangefinder rays, refusing GL-noise frames."""

    def __init__(self, model, size: int):
        check_gl()  # before mujoco's first import picks a GL backend
        import mujoco  # lazy: mujoco is the sim extra's, and MUJOCO_GL must be set first

        option = mujoco.MjvOption()
        option.sitegroup[:] = 0
        option.geomgroup[:] = 0
        option.geomgroup[:3] = 1
        option.flags[mujoco.mjtVisFlag.mjVIS_RANGEFINDER] = 0
        super().__init__(model, size, scene_option=option)

    def render(self, data, camera: str) -> np.ndarray:
        for _ in range(NOISE_RETRIES + 1):
            image = super().render(data, camera)
            noise = horizontal_noise(image)
            if noise <= NOISE_LIMIT:
                return image
        raise RenderError(f"camera {camera!r} gave GL-noise frames (mean horizontal pixel difference {noise:.1f} > "
                          f"{NOISE_LIMIT}) {NOISE_RETRIES + 1} times: render through one context per process")


def horizontal_noise(image: np.ndarray) -> float:
    """Mean absolute difference of horizontally neighbouring pixels (0-255).

    >>> horizontal_noise(np.zeros((4, 4, 3), np.uint8))
    0.0
    """
    return float(np.abs(np.diff(image.astype(np.int16), axis=1)).mean())


# --------------------------------------------------------------------------- geometry of a Fetch model


def body_geoms(model, body: str) -> list[int]:
    b = model.body(body).id
    return [g for g in range(model.ngeom) if model.geom_bodyid[g] == b]


def table_box(model) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) and half-extent (x, y) of the table top."""
    g = body_geoms(model, "table0")[0]
    centre = model.body("table0").pos[:2] + model.geom_pos[g][:2]
    return centre, model.geom_size[g][:2].copy()


def robot_geoms(model) -> list[int]:
    return [g for g in range(model.ngeom) if model.body(model.geom_bodyid[g]).name.startswith("robot0:")]


def object_geoms(model, has_object: bool) -> list[int]:
    """The task object's geoms: the block or puck; for a task without one (reach) the gripper and its fingers."""
    if has_object:
        return body_geoms(model, "object0")
    names = ("robot0:gripper_link", "robot0:r_gripper_finger_link", "robot0:l_gripper_finger_link")
    return [g for name in names for g in body_geoms(model, name)]


# --------------------------------------------------------------------------- styles


def _rotvec(rng, max_deg: float) -> tuple[float, float, float]:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return tuple(float(v) for v in axis * np.radians(rng.uniform(0.0, max_deg)))


def _tint(rng, amount: float) -> tuple[float, float, float]:
    hue = np.asarray(colorsys.hsv_to_rgb(rng.random(), 1.0, 1.0))
    mix = rng.uniform(0.0, amount)
    colour = (1.0 - mix) + mix * hue
    return tuple(float(v) for v in colour / colour.max())


def _pick(rng, options):
    return tuple(float(v) for v in options[int(rng.integers(len(options)))])


def sample_style(level: str, rng: np.random.Generator, model, avoid_xy: Sequence[Sequence[float]] = (),
                 avoid_rgb: Sequence[Sequence[float]] = ()) -> FetchStyle:
    """A random look of `level` for a Fetch scene; distractors keep 10 cm from the points `avoid_xy` (the object's
    and fingertips' paths, the goal) and their colours away from `avoid_rgb` (the task object's)."""
    if level not in LEVELS:
        raise ValueError(f"unknown randomisation level {level!r}; valid levels: {', '.join(LEVELS)}")
    if level == "none":
        return FetchStyle()
    r = LEVEL_RANGES[level]
    shift = rng.normal(size=3)
    shift = shift / np.linalg.norm(shift) * rng.uniform(0.0, r.camera_shift_m)
    return FetchStyle(
        level=level,
        light=float(rng.uniform(*r.light)),
        light_tint=_tint(rng, r.light_tint),
        light_turn=_rotvec(rng, r.light_turn_deg),
        floor=_pick(rng, FLOOR_COLOURS) if rng.random() < r.repaint_p else None,
        table=_pick(rng, TABLE_COLOURS) if rng.random() < r.repaint_p else None,
        robot=_pick(rng, ROBOT_COLOURS) if rng.random() < r.robot_paint_p else None,
        camera_shift=tuple(float(v) for v in shift),
        camera_turn=_rotvec(rng, r.camera_turn_deg),
        distractors=_distractors(rng, model, r.distractors, avoid_xy, avoid_rgb),
    )


def _distractors(rng, model, count: tuple[int, int], avoid_xy, avoid_rgb) -> tuple[ExtraGeom, ...]:
    centre, half = table_box(model)
    avoid = [np.asarray(p, dtype=float)[:2] for p in avoid_xy]
    colours = [c for c in DISTRACTOR_COLOURS
               if all(np.linalg.norm(np.subtract(c, a)) > 0.35 for a in avoid_rgb)] or list(DISTRACTOR_COLOURS)
    out, placed = [], []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        for _attempt in range(40):
            xy = centre + rng.uniform(-1.0, 1.0, size=2) * (half - 0.05)
            if all(np.linalg.norm(xy - p) > 0.1 for p in avoid + placed):
                break
        else:
            continue
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        s = float(rng.uniform(0.015, 0.035))
        size = {"box": (s, s * rng.uniform(0.6, 1.4), s), "sphere": (s, s, s), "cylinder": (s, s * 1.5, s),
                "capsule": (s * 0.7, s, s), "ellipsoid": (s, s * 0.7, s * 0.8)}[shape]
        height = {"box": size[2], "sphere": s, "cylinder": size[1], "capsule": size[0] + size[1],
                  "ellipsoid": size[2]}[shape]
        rgb = _pick(rng, colours)
        out.append(ExtraGeom(shape, tuple(float(v) for v in size), (float(xy[0]), float(xy[1]), TABLE_TOP + height),
                             (*rgb, 1.0), float(rng.uniform(0.0, np.pi))))
        placed.append(xy)
    return tuple(out)


def _matrix(rotvec) -> np.ndarray:
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-9:
        return np.eye(3)
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, np.asarray(rotvec) / angle, angle)
    out = np.zeros(9)
    mujoco.mju_quat2Mat(out, quat)
    return out.reshape(3, 3)


@contextmanager
def apply_style(model, style: FetchStyle, renderer: FrameRenderer, keep: Sequence[int] = ()) -> Iterator[None]:
    """Context manager: `style` applied to `model` (and drawn by `renderer`) inside the block; undone exactly."""
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import


    kept = set(keep)
    with ExitStack() as stack:
        stack.enter_context(restoring(model))
        headlight = model.vis.headlight
        saved = headlight.diffuse.copy(), headlight.ambient.copy()
        stack.callback(lambda: (headlight.diffuse.__setitem__(slice(None), saved[0]),
                                headlight.ambient.__setitem__(slice(None), saved[1])))
        gain = style.light * np.asarray(style.light_tint)
        model.light_diffuse[:] = np.clip(model.light_diffuse * gain, 0.0, 1.0)
        headlight.diffuse[:] = np.clip(headlight.diffuse * gain, 0.0, 1.0)
        headlight.ambient[:] = np.clip(headlight.ambient * style.light, 0.0, 1.0)
        turn = _matrix(style.light_turn)
        model.light_dir[:] = model.light_dir @ turn.T

        def paint(geoms, rgb):
            for g in geoms:
                if g not in kept:
                    model.geom_matid[g] = -1
                    model.geom_rgba[g] = (*rgb, 1.0)

        if style.floor is not None:
            paint([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "floor0")], style.floor)
        if style.table is not None:
            paint(body_geoms(model, "table0"), style.table)
        if style.robot is not None:  # the arm's white shell; the blue links and the gripper stay
            robot = [g for g in robot_geoms(model) if model.geom_matid[g] >= 0
                     and np.allclose(model.mat_rgba[model.geom_matid[g]][:3], 1.0)
                     and model.geom_rgba[g][3] > 0 and "finger" not in model.body(model.geom_bodyid[g]).name]
            paint(robot, style.robot)
        camera_turn = np.zeros(4)
        angle = float(np.linalg.norm(style.camera_turn))
        if angle > 1e-9:
            mujoco.mju_axisAngle2Quat(camera_turn, np.asarray(style.camera_turn) / angle, angle)
        else:
            camera_turn[0] = 1.0
        for c in range(model.ncam):
            orientation = np.zeros(9)
            mujoco.mju_quat2Mat(orientation, model.cam_quat[c])
            model.cam_pos[c] += orientation.reshape(3, 3) @ np.asarray(style.camera_shift)
            quat = np.zeros(4)
            mujoco.mju_mulQuat(quat, model.cam_quat[c], camera_turn)
            model.cam_quat[c] = quat
        if style.distractors:
            stack.enter_context(renderer.overlay(lambda data: style.distractors))
        yield
