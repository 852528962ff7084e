"""Scene randomisation of a MuJoCo model (`Randomizer`): what carries no progress changes between a demonstration
episode and an observation episode (light, floor, table, background colours, camera pose, distractor objects), so
that matching pixels stops working as a shortcut. The task object's look never changes here.

A style is applied as a context manager: it edits the `MjModel` arrays that rendering reads (`geom_rgba`,
`light_dir`, `cam_pos`, ...), draws distractors through `FrameRenderer.overlay`, and on exit writes the saved arrays
back, so the model is bit-for-bit what it was. Physics is never touched. Names of scenery bodies follow Meta-World v3.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from progresslm.sim.family import LEVELS
from progresslm.sim.mujoco_scene.model import (
    RGB,
    axis_angle,
    body_geom_ids,
    geom_ids,
    geom_visible,
    household_colour,
    not_default,
    random_rotation,
    random_unit,
    restoring,
    root_geom_ids,
    rotation_matrix,
    shape_geom,
    shown_rgba,
    texture_slice,
)
from progresslm.sim.mujoco_scene.render import SHAPES, ExtraGeom, FrameRenderer

if TYPE_CHECKING:
    import mujoco

# Meta-World v3 scenery (the same in all 50 tasks).
FLOOR_GEOMS = ("floor",)
TABLE_BODIES = ("tablelink",)
RIM_BODIES = ("RetainingWall",)  # the metal rim around the table top
ROBOT_ROOT = "base"  # root body of the Sawyer arm and its pedestal
SCENERY_ROOTS = frozenset({"world", "mocap", ROBOT_ROOT, *TABLE_BODIES, *RIM_BODIES})
TABLE_TOP_Z = 0.0  # height of the table surface, metres
# Free table area for distractors: inside the rim, in front of the robot's pedestal.
TABLE_REGION = ((-0.6, 0.6), (0.35, 0.92))

# Robot paints seen on real arms, for `strong` only.
ROBOT_COLOURS = ((0.55, 0.55, 0.58), (0.85, 0.85, 0.85), (0.85, 0.4, 0.1), (0.15, 0.25, 0.6), (0.12, 0.12, 0.12))
# Plain floors (concrete, beige lino, dark carpet, light wood) replacing the tiles, for `strong` only.
FLOOR_COLOURS = ((0.55, 0.55, 0.55), (0.75, 0.7, 0.6), (0.25, 0.28, 0.35), (0.7, 0.55, 0.4))


@dataclass(frozen=True)
class LevelRanges:
    """How far one randomisation level varies each part of the scene."""

    light_intensity: tuple[float, float]  # factor on every light's diffuse and the headlight
    light_saturation: float  # most colour cast of the lights (0 = white)
    light_turn_deg: float  # most rotation of all light directions together
    surface_brightness: tuple[float, float]  # factor on floor, table, rim and background colours
    surface_saturation: float  # most colour cast of those surfaces
    plain_floor_p: float  # chance of replacing the floor tiles with a plain colour
    robot_paint_p: float  # chance of repainting the arm
    camera_shift_m: float  # most camera displacement, metres
    camera_turn_deg: float  # most camera rotation, degrees
    distractors: tuple[int, int]  # fewest and most distractor objects
    distractor_size_m: tuple[float, float]  # half-size range of distractors, metres
    clearance_m: float = 0.12  # least distance of a distractor from the points to avoid


LEVEL_RANGES: dict[str, LevelRanges] = {
    # Realistic: another day in the same lab. Camera moves ~a tripod nudge (<= 2 cm, 2 degrees).
    "default": LevelRanges(
        light_intensity=(0.8, 1.2),
        light_saturation=0.12,
        light_turn_deg=20.0,
        surface_brightness=(0.75, 1.15),
        surface_saturation=0.2,
        plain_floor_p=0.0,
        robot_paint_p=0.0,
        camera_shift_m=0.02,
        camera_turn_deg=2.0,
        distractors=(0, 2),
        distractor_size_m=(0.015, 0.03),
    ),
    # Another lab: repainted surfaces and arm, a moved camera, clutter.
    "strong": LevelRanges(
        light_intensity=(0.6, 1.4),
        light_saturation=0.3,
        light_turn_deg=35.0,
        surface_brightness=(0.5, 1.25),
        surface_saturation=0.6,
        plain_floor_p=0.3,
        robot_paint_p=0.5,
        camera_shift_m=0.05,
        camera_turn_deg=5.0,
        distractors=(1, 4),
        distractor_size_m=(0.015, 0.05),
    ),
}

@dataclass(frozen=True)
class SceneStyle:
    """One sampled scene look. `None` or empty fields leave that part of the model as it is."""

    level: str = "none"
    light_intensity: float = 1.0
    light_tint: RGB | None = None
    light_turn: tuple[float, float, float] | None = None  # rotation vector (axis * angle), radians
    floor_tint: RGB | None = None
    floor_plain: RGB | None = None  # flat colour replacing the floor texture
    table_tint: RGB | None = None
    rim_tint: RGB | None = None
    background_tint: RGB | None = None  # the skybox behind the scene
    robot_paint: RGB | None = None
    camera_shift: tuple[float, float, float] | None = None  # metres, in each camera's own frame
    camera_turn: tuple[float, float, float] | None = None  # rotation vector, camera frame, radians
    distractors: tuple[ExtraGeom, ...] = field(default=())

    def to_dict(self) -> dict:
        """Plain values, to record in a sample how its frames were made."""
        return style_to_dict(self)


def style_to_dict(style) -> dict:
    """A scene-style dataclass as plain rounded values (vectors as lists, distractors as their dicts), for a sample's
    record of how its frames were made; every family's style records itself this way."""
    out = {}
    for key, value in asdict(style).items():
        if key == "distractors":
            out[key] = [geom.to_dict() for geom in style.distractors]
        elif isinstance(value, (tuple, list)):
            out[key] = [round(float(v), 4) for v in value]
        elif isinstance(value, float):
            out[key] = round(value, 4)
        else:
            out[key] = value
    return out


class Randomizer:
    """Samples scene styles of one level and applies them to a model.

    >>> Randomizer("none").sample(np.random.default_rng(0)) == SceneStyle()
    True
    """

    def __init__(self, level: str = "default", ranges: LevelRanges | None = None):
        if level not in LEVELS:
            raise ValueError(f"unknown randomisation level {level!r}; valid levels: {', '.join(LEVELS)}")
        self.level = level
        self.ranges = ranges or LEVEL_RANGES.get(level)

    def sample(
        self,
        rng: np.random.Generator,
        avoid_xy: Sequence[Sequence[float]] = (),
        avoid_rgb: Sequence[Sequence[float]] = (),
    ) -> SceneStyle:
        """A random style. Distractors keep `clearance_m` away from the table points `avoid_xy`
        (pass the object's and goal's positions and the hand's path: nothing collides with drawn
        geoms, so the arm would pass through them) and their colours away from `avoid_rgb`
        (the task object's colours, so that no distractor looks like it)."""
        if self.level == "none" or self.ranges is None:
            return SceneStyle()
        r = self.ranges
        return SceneStyle(
            level=self.level,
            light_intensity=float(rng.uniform(*r.light_intensity)),
            light_tint=_tint(rng, (1.0, 1.0), r.light_saturation),
            light_turn=random_rotation(rng, r.light_turn_deg),
            floor_tint=_tint(rng, r.surface_brightness, r.surface_saturation),
            floor_plain=_pick(rng, FLOOR_COLOURS) if rng.random() < r.plain_floor_p else None,
            # Wood stays wood: half the colour cast of the other surfaces.
            table_tint=_tint(rng, r.surface_brightness, r.surface_saturation / 2),
            rim_tint=_tint(rng, r.surface_brightness, r.surface_saturation),
            background_tint=_tint(rng, r.surface_brightness, r.surface_saturation),
            robot_paint=_pick(rng, ROBOT_COLOURS) if rng.random() < r.robot_paint_p else None,
            camera_shift=tuple(random_unit(rng) * rng.uniform(0.0, r.camera_shift_m)),
            camera_turn=random_rotation(rng, r.camera_turn_deg),
            distractors=_distractors(rng, r, avoid_xy, avoid_rgb),
        )

    @staticmethod
    def apply(
        model: mujoco.MjModel,
        style: SceneStyle,
        *,
        keep: Sequence[int | str] = (),
        renderer: FrameRenderer | None = None,
    ):
        """Context manager: `style` applied to `model` (and `renderer`) inside the block.

        `keep` names the geoms whose look must not change (the task object's). A renderer is needed
        for the parts that live on the GPU or in the drawn scene: background colour, distractors.
        """
        return apply_style(model, style, keep=keep, renderer=renderer)


@contextmanager
def apply_style(
    model: mujoco.MjModel,
    style: SceneStyle,
    *,
    keep: Sequence[int | str] = (),
    renderer: FrameRenderer | None = None,
) -> Iterator[SceneStyle]:
    """See `Randomizer.apply`."""
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    if renderer is None and (style.distractors or style.background_tint is not None):
        raise ValueError(
            "this style draws distractors or changes the background, which needs the renderer: "
            "pass renderer=FrameRenderer(...) (or use a style from level 'none')"
        )
    if renderer is not None and renderer.model is not model:
        raise ValueError("renderer was made for another model; pass the model it renders")
    kept = set(geom_ids(model, keep))
    skies = [t for t in range(model.ntex) if model.tex_type[t] == mujoco.mjtTexture.mjTEXTURE_SKYBOX]
    with ExitStack() as stack:
        stack.enter_context(restoring(model, textures=skies if style.background_tint else (), renderer=renderer))
        _light(model, style)
        _surfaces(model, style, kept)
        _camera(model, style)
        if style.background_tint is not None and skies:
            for texture in skies:
                _tint_texture(model, texture, style.background_tint)
            renderer.refresh_textures(skies)
        if style.distractors:
            stack.enter_context(renderer.overlay(lambda data: style.distractors))
        yield style



def _light(model, style: SceneStyle) -> None:
    gain = style.light_intensity * np.asarray(style.light_tint or (1.0, 1.0, 1.0))
    model.light_diffuse[:] = np.clip(model.light_diffuse * gain, 0.0, 1.0)
    headlight = model.vis.headlight
    headlight.diffuse[:] = np.clip(headlight.diffuse * gain, 0.0, 1.0)
    headlight.ambient[:] = np.clip(headlight.ambient * style.light_intensity, 0.0, 1.0)
    if style.light_turn is not None:
        turn = rotation_matrix(style.light_turn)
        model.light_dir[:] = model.light_dir @ turn.T
        model.light_pos[:] = model.light_pos @ turn.T


def _surfaces(model, style: SceneStyle, kept: set[int]) -> None:
    def paint(geoms: list[int], rgb: RGB | None, multiply: bool) -> None:
        for g in geoms:
            if g in kept or rgb is None:
                continue
            base = shown_rgba(model, g)
            colour = base[:3] * np.asarray(rgb) if multiply else np.asarray(rgb)
            model.geom_rgba[g] = not_default((*np.clip(colour, 0.0, 1.0), base[3]))

    floor = [g for g in range(model.ngeom) if model.geom(g).name in FLOOR_GEOMS]
    if style.floor_plain is not None:
        for g in floor:
            if g not in kept:
                model.geom_matid[g] = -1
        paint(floor, style.floor_plain, multiply=False)
    else:
        paint(floor, style.floor_tint, multiply=True)
    paint(body_geom_ids(model, TABLE_BODIES), style.table_tint, multiply=True)
    paint(body_geom_ids(model, RIM_BODIES), style.rim_tint, multiply=True)
    if style.robot_paint is not None:
        robot = [g for g in root_geom_ids(model, ROBOT_ROOT) if geom_visible(model, g) and model.geom_matid[g] < 0]
        if robot:
            colours, counts = np.unique(model.geom_rgba[robot, :3], axis=0, return_counts=True)
            body_colour = colours[np.argmax(counts)]  # the arm's paint; leaves grippers and screen alone
            paint([g for g in robot if np.array_equal(model.geom_rgba[g, :3], body_colour)], style.robot_paint, False)


def _camera(model, style: SceneStyle) -> None:
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    if style.camera_shift is None and style.camera_turn is None:
        return
    turn = np.zeros(4)
    mujoco.mju_axisAngle2Quat(turn, *axis_angle(style.camera_turn or (0.0, 0.0, 0.0)))
    for c in range(model.ncam):
        orientation = np.zeros(9)
        mujoco.mju_quat2Mat(orientation, model.cam_quat[c])
        model.cam_pos[c] += orientation.reshape(3, 3) @ np.asarray(style.camera_shift or (0.0, 0.0, 0.0))
        quat = np.zeros(4)
        mujoco.mju_mulQuat(quat, model.cam_quat[c], turn)  # rotation in the camera's own frame
        model.cam_quat[c] = quat


def _tint_texture(model, texture: int, rgb: RGB) -> None:
    span = texture_slice(model, texture)
    channels = int(model.tex_nchannel[texture])
    texels = model.tex_data[span].reshape(-1, channels).astype(np.float32)
    texels[:, :3] *= np.asarray(rgb, dtype=np.float32)
    model.tex_data[span] = np.clip(np.rint(texels), 0, 255).astype(np.uint8).reshape(-1)



# -- sampling ----------------------------------------------------------------------------------


def _tint(rng: np.random.Generator, brightness: tuple[float, float], saturation: float) -> RGB:
    """A colour factor: `brightness` times white mixed with a random hue by up to `saturation`."""
    hue = np.asarray(colorsys.hsv_to_rgb(rng.random(), 1.0, 1.0))
    mix = rng.uniform(0.0, saturation)
    colour = (1.0 - mix) + mix * hue
    return tuple(float(v) for v in rng.uniform(*brightness) * colour / colour.max())


def _pick(rng: np.random.Generator, options: Sequence[RGB]) -> RGB:
    return tuple(float(v) for v in options[int(rng.integers(len(options)))])



def _distractors(rng, ranges: LevelRanges, avoid_xy, avoid_rgb) -> tuple[ExtraGeom, ...]:
    avoid = [np.asarray(p, dtype=np.float64)[:2] for p in avoid_xy]
    placed: list[np.ndarray] = []
    out = []
    for _ in range(int(rng.integers(ranges.distractors[0], ranges.distractors[1] + 1))):
        for _attempt in range(50):
            xy = np.array([rng.uniform(*TABLE_REGION[0]), rng.uniform(*TABLE_REGION[1])])
            if all(np.linalg.norm(xy - p) >= ranges.clearance_m for p in avoid) and all(
                np.linalg.norm(xy - p) >= 2.5 * ranges.distractor_size_m[1] for p in placed
            ):
                break
        else:
            continue  # the table is too crowded: fewer distractors
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        size, height = shape_geom(shape, rng.uniform(*ranges.distractor_size_m), rng)
        rgb = household_colour(rng, avoid_rgb)
        yaw = float(rng.uniform(0.0, np.pi))
        out.append(ExtraGeom(shape, size, (float(xy[0]), float(xy[1]), TABLE_TOP_Z + height), (*rgb, 1.0), yaw))
        placed.append(xy)
    return tuple(out)


