"""Scene randomisation and object edits, applied as live model edits and undone exactly.

Two uses:

- `Randomizer` changes what carries no progress between a demonstration episode and an observation
  episode (light, floor, table, background colours, camera pose, distractor objects), so that
  matching pixels stops working as a shortcut. The task object's look never changes here.
- `edit_object` recolours, hides or replaces the task object, to make unanswerable samples whose
  observation shows a scene the demonstration does not match; `hide_sites` hides goal markers.

Everything is a context manager: it edits the `MjModel` arrays that rendering reads
(`geom_rgba`, `light_dir`, `cam_pos`, ...), draws extra geoms through `FrameRenderer.overlay`,
and on exit writes the saved arrays back, so the model is bit-for-bit what it was. Physics is never
touched: no recompile, no new bodies, and the simulator state is not read except to place drawn
geoms. Names of scenery bodies follow Meta-World v3; a model without them just has less to vary.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from progresslm.sim.render import SHAPES, ExtraGeom, FrameRenderer

if TYPE_CHECKING:
    import mujoco

LEVELS = ("none", "default", "strong")
EDIT_KINDS = ("recolor", "hide", "replace")

# Meta-World v3 scenery (the same in all 50 tasks).
FLOOR_GEOMS = ("floor",)
TABLE_BODIES = ("tablelink",)
RIM_BODIES = ("RetainingWall",)  # the metal rim around the table top
ROBOT_ROOT = "base"  # root body of the Sawyer arm and its pedestal
SCENERY_ROOTS = frozenset({"world", "mocap", ROBOT_ROOT, *TABLE_BODIES, *RIM_BODIES})
TABLE_TOP_Z = 0.0  # height of the table surface, metres
# Free table area for distractors: inside the rim, in front of the robot's pedestal.
TABLE_REGION = ((-0.6, 0.6), (0.35, 0.92))

DEFAULT_RGBA = (0.5, 0.5, 0.5, 1.0)  # MuJoCo's "unset" geom colour: the material's colour shows instead
VISIBLE_GROUPS = 3  # mjvOption shows geom groups 0, 1 and 2 by default
# Clearly different, nameable colours for recoloured and replacement objects.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.1, 0.1),
    "green": (0.1, 0.65, 0.15),
    "blue": (0.1, 0.25, 0.85),
    "yellow": (0.95, 0.85, 0.1),
    "orange": (0.95, 0.5, 0.05),
    "purple": (0.55, 0.15, 0.7),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
    "cyan": (0.1, 0.8, 0.85),
    "pink": (0.95, 0.45, 0.7),
}
MIN_COLOUR_DISTANCE = 0.6  # RGB distance between an object's colour and its recolouring
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

RGB = tuple[float, float, float]


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
        out = {}
        for key, value in asdict(self).items():
            if key == "distractors":
                out[key] = [geom.to_dict() for geom in self.distractors]
            elif isinstance(value, tuple):
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
            light_turn=_rotation(rng, r.light_turn_deg),
            floor_tint=_tint(rng, r.surface_brightness, r.surface_saturation),
            floor_plain=_pick(rng, FLOOR_COLOURS) if rng.random() < r.plain_floor_p else None,
            # Wood stays wood: half the colour cast of the other surfaces.
            table_tint=_tint(rng, r.surface_brightness, r.surface_saturation / 2),
            rim_tint=_tint(rng, r.surface_brightness, r.surface_saturation),
            background_tint=_tint(rng, r.surface_brightness, r.surface_saturation),
            robot_paint=_pick(rng, ROBOT_COLOURS) if rng.random() < r.robot_paint_p else None,
            camera_shift=tuple(_unit(rng) * rng.uniform(0.0, r.camera_shift_m)),
            camera_turn=_rotation(rng, r.camera_turn_deg),
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
    import mujoco

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
        stack.enter_context(_restored(model, textures=skies if style.background_tint else (), renderer=renderer))
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


@contextmanager
def edit_object(
    model: mujoco.MjModel,
    geoms: Sequence[int | str],
    kind: str,
    rng: np.random.Generator,
    *,
    renderer: FrameRenderer | None = None,
) -> Iterator[dict]:
    """Context manager: the object made of `geoms` recoloured, hidden or replaced inside the block.

    Yields a record of what was done (plain values). `recolor` paints every visible geom of the
    object one palette colour far from its own; `hide` makes it transparent; `replace` hides it and
    draws a differently shaped, differently coloured geom at its current position in every frame
    (needs `renderer`). Physics is unchanged: the arm still grasps the (invisible) object.
    """
    if kind not in EDIT_KINDS:
        raise ValueError(f"unknown edit kind {kind!r}; valid kinds: {', '.join(EDIT_KINDS)}")
    if kind == "replace" and renderer is None:
        raise ValueError("edit kind 'replace' draws the new object, which needs renderer=FrameRenderer(...)")
    ids = geom_ids(model, geoms)
    shown = [g for g in ids if _visible(model, g)]
    if not shown:
        raise ValueError(f"none of the geoms {list(geoms)} is visible, so there is nothing to edit")
    record: dict = {"kind": kind, "geoms": [model.geom(g).name or str(g) for g in ids]}
    original = np.mean([_apparent_rgb(model, g) for g in shown], axis=0)
    with ExitStack() as stack:
        stack.enter_context(_restored(model))
        if kind == "recolor":
            name, rgb = _far_colour(rng, original)
            for g in shown:
                model.geom_rgba[g] = (*rgb, _shown_rgba(model, g)[3])
                material = model.geom_matid[g]
                if material >= 0 and np.any(model.mat_texid[material] >= 0):
                    model.geom_matid[g] = -1  # a texture darkens the new colour (red wood -> teal wood)
            record.update(colour=name, rgb=[round(float(v), 3) for v in rgb])
        else:
            model.geom_rgba[ids, 3] = 0.0
        if kind == "replace":
            colour, new = _replacement(model, shown, original, rng)
            drawn = new.to_dict()
            del drawn["pos"]  # it follows the object, frame by frame
            record.update(colour=colour, **drawn)

            def draw(data: mujoco.MjData) -> list[ExtraGeom]:
                centre = np.mean(data.geom_xpos[shown], axis=0)
                return [ExtraGeom(new.shape, new.size, tuple(centre), new.rgba, new.yaw)]

            stack.enter_context(renderer.overlay(draw))
        yield record


@contextmanager
def hide_sites(model: mujoco.MjModel, sites: Sequence[int | str]) -> Iterator[list[str]]:
    """Context manager: the given sites (e.g. `goal_sites(model)`) transparent inside the block."""
    import mujoco

    ids = [s if isinstance(s, int) else mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, s) for s in sites]
    if any(i < 0 for i in ids):
        valid = [model.site(i).name for i in range(model.nsite)]
        raise ValueError(f"unknown site in {list(sites)}; valid sites: {', '.join(valid)}")
    with _restored(model):
        model.site_rgba[ids, 3] = 0.0
        yield [model.site(i).name for i in ids]


def goal_sites(model: mujoco.MjModel) -> list[int]:
    """Ids of the visible goal markers (Meta-World names them goal, goal_lock, mug_goal, ...)."""
    return [
        i
        for i in range(model.nsite)
        if "goal" in model.site(i).name.lower() and model.site_rgba[i, 3] > 0 and model.site_group[i] < VISIBLE_GROUPS
    ]


def object_colours(model: mujoco.MjModel, geoms: Sequence[int | str]) -> list[RGB]:
    """Roughly the colours the visible `geoms` appear in, for `Randomizer.sample(avoid_rgb=...)`."""
    return [tuple(float(v) for v in _apparent_rgb(model, g)) for g in geom_ids(model, geoms) if _visible(model, g)]


def task_object_geoms(model: mujoco.MjModel) -> list[int]:
    """Geoms that are neither scenery nor robot: in Meta-World, the task's objects and fixtures."""
    roots = (model.body(model.body_rootid[model.geom_bodyid[g]]).name for g in range(model.ngeom))
    return [g for g, root in enumerate(roots) if root not in SCENERY_ROOTS]


def geom_ids(model: mujoco.MjModel, geoms: Sequence[int | str]) -> list[int]:
    """Geom ids from ids or names; an unknown name fails listing the named geoms."""
    import mujoco

    ids = []
    for geom in geoms:
        if isinstance(geom, (int, np.integer)):
            index = int(geom)
        else:
            index = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, geom)
        if not 0 <= index < model.ngeom:
            named = [model.geom(i).name for i in range(model.ngeom) if model.geom(i).name]
            raise ValueError(f"unknown geom {geom!r}; named geoms: {', '.join(named)}")
        ids.append(int(index))
    return ids


# -- framing the task ------------------------------------------------------------------------

# Meta-World's corner cameras show the whole table: a 2-cm puck covers 25-60 of 50,176 pixels at
# 224 px (0.05-0.12 %), so recolouring or hiding it changes almost nothing a model can see. A unit's
# cameras are therefore aimed at, and zoomed onto, the region its task happens in (object, goal and
# gripper paths), as a camera operator frames a robot's workspace. The puck then covers ~0.5-1 %.
FRAMING_MARGIN = 1.25  # the region's projected half-extent times this is the half field of view
MIN_FOVY_DEG = 14.0  # never zoom in further (a small region would fill the frame with one object)


@dataclass(frozen=True)
class Framing:
    """Per camera name: the orientation (MuJoCo quaternion, world frame) and vertical field of view
    (degrees) that frame the task's region. Applied with `apply_framing`; recorded in each sample."""

    cameras: dict[str, tuple[tuple[float, float, float, float], float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {name: {"quat": [round(v, 5) for v in quat], "fovy": round(fovy, 3)}
                for name, (quat, fovy) in self.cameras.items()}  # fmt: skip


def frame_cameras(
    model: mujoco.MjModel,
    cameras: Sequence[str],
    points: np.ndarray,
    margin: float = FRAMING_MARGIN,
    min_fovy: float = MIN_FOVY_DEG,
) -> Framing:
    """Turn each named camera (in place: it keeps its position) toward the world `points` (n, 3) and
    narrow its field of view until they all fit, with `margin`. The turn is the smallest rotation
    of the optical axis, so the camera keeps its roll (the corner cameras stay upside down, as the
    renderer expects). The field of view never widens and never goes below `min_fovy`."""
    import mujoco

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    out = {}
    for name in cameras:
        c = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if c < 0:
            raise ValueError(f"unknown camera {name!r}")
        position = model.cam_pos[c].copy()
        quat = model.cam_quat[c].copy()
        for _ in range(3):  # re-aim at the centre of the projected extent; converges in 2-3 turns
            rotation = _quat_matrix(quat)
            local = (points - position) @ rotation  # camera frame: x right, y up, looking along -z
            depth = np.maximum(-local[:, 2], 1e-3)
            u, v = local[:, 0] / depth, local[:, 1] / depth
            centre = np.array([(u.max() + u.min()) / 2, (v.max() + v.min()) / 2, -1.0])
            quat = _turned_toward(quat, rotation @ centre)
        rotation = _quat_matrix(quat)
        local = (points - position) @ rotation
        depth = np.maximum(-local[:, 2], 1e-3)
        half = float(np.max(np.abs(local[:, :2]) / depth[:, None])) * margin
        fovy = float(np.clip(np.degrees(2 * np.arctan(half)), min_fovy, model.cam_fovy[c]))
        out[name] = (tuple(float(q) for q in quat), fovy)
    return Framing(out)


@contextmanager
def apply_framing(model: mujoco.MjModel, framing: Framing | None) -> Iterator[Framing | None]:
    """Context manager: the cameras of `framing` turned and zoomed inside the block."""
    import mujoco

    with _restored(model):
        for name, (quat, fovy) in (framing.cameras if framing else {}).items():
            c = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            model.cam_quat[c] = quat
            model.cam_fovy[c] = fovy
        yield framing


def _quat_matrix(quat) -> np.ndarray:
    import mujoco

    matrix = np.zeros(9)
    mujoco.mju_quat2Mat(matrix, np.asarray(quat, dtype=np.float64))
    return matrix.reshape(3, 3)


def _turned_toward(quat, direction) -> np.ndarray:
    """`quat` rotated (in the world frame) by the smallest turn that points its -z axis along `direction`."""
    import mujoco

    axis_now = -_quat_matrix(quat)[:, 2]
    target = np.asarray(direction, dtype=np.float64)
    target = target / np.linalg.norm(target)
    cross = np.cross(axis_now, target)
    sin, cos = np.linalg.norm(cross), float(np.dot(axis_now, target))
    if sin < 1e-9:
        return np.asarray(quat, dtype=np.float64)
    turn = np.zeros(4)
    mujoco.mju_axisAngle2Quat(turn, cross / sin, float(np.arctan2(sin, cos)))
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, turn, np.asarray(quat, dtype=np.float64))
    return out


# -- applying a style --------------------------------------------------------------------------

_SAVED_ARRAYS = ("geom_rgba", "geom_matid", "light_diffuse", "light_dir", "light_pos", "cam_pos", "cam_quat")
_SAVED_ARRAYS += ("site_rgba", "cam_fovy")


@contextmanager
def _restored(model, textures: Sequence[int] = (), renderer: FrameRenderer | None = None) -> Iterator[None]:
    """Saves every model array a style or edit writes, and writes them back on exit."""
    arrays = {name: getattr(model, name).copy() for name in _SAVED_ARRAYS}
    headlight = {name: getattr(model.vis.headlight, name).copy() for name in ("ambient", "diffuse")}
    texels = {t: model.tex_data[_texture_slice(model, t)].copy() for t in textures}
    try:
        yield
    finally:
        for name, saved in arrays.items():
            getattr(model, name)[...] = saved
        for name, saved in headlight.items():
            getattr(model.vis.headlight, name)[...] = saved
        for t, saved in texels.items():
            model.tex_data[_texture_slice(model, t)] = saved
        if texels and renderer is not None:
            renderer.refresh_textures(list(texels))


def _light(model, style: SceneStyle) -> None:
    gain = style.light_intensity * np.asarray(style.light_tint or (1.0, 1.0, 1.0))
    model.light_diffuse[:] = np.clip(model.light_diffuse * gain, 0.0, 1.0)
    headlight = model.vis.headlight
    headlight.diffuse[:] = np.clip(headlight.diffuse * gain, 0.0, 1.0)
    headlight.ambient[:] = np.clip(headlight.ambient * style.light_intensity, 0.0, 1.0)
    if style.light_turn is not None:
        turn = _rotation_matrix(style.light_turn)
        model.light_dir[:] = model.light_dir @ turn.T
        model.light_pos[:] = model.light_pos @ turn.T


def _surfaces(model, style: SceneStyle, kept: set[int]) -> None:
    def paint(geoms: list[int], rgb: RGB | None, multiply: bool) -> None:
        for g in geoms:
            if g in kept or rgb is None:
                continue
            base = _shown_rgba(model, g)
            colour = base[:3] * np.asarray(rgb) if multiply else np.asarray(rgb)
            model.geom_rgba[g] = _not_default((*np.clip(colour, 0.0, 1.0), base[3]))

    floor = [g for g in range(model.ngeom) if model.geom(g).name in FLOOR_GEOMS]
    if style.floor_plain is not None:
        for g in floor:
            if g not in kept:
                model.geom_matid[g] = -1
        paint(floor, style.floor_plain, multiply=False)
    else:
        paint(floor, style.floor_tint, multiply=True)
    paint(_body_geoms(model, TABLE_BODIES), style.table_tint, multiply=True)
    paint(_body_geoms(model, RIM_BODIES), style.rim_tint, multiply=True)
    if style.robot_paint is not None:
        robot = [g for g in _root_geoms(model, ROBOT_ROOT) if _visible(model, g) and model.geom_matid[g] < 0]
        if robot:
            colours, counts = np.unique(model.geom_rgba[robot, :3], axis=0, return_counts=True)
            body_colour = colours[np.argmax(counts)]  # the arm's paint; leaves grippers and screen alone
            paint([g for g in robot if np.array_equal(model.geom_rgba[g, :3], body_colour)], style.robot_paint, False)


def _camera(model, style: SceneStyle) -> None:
    import mujoco

    if style.camera_shift is None and style.camera_turn is None:
        return
    turn = np.zeros(4)
    mujoco.mju_axisAngle2Quat(turn, *_axis_angle(style.camera_turn or (0.0, 0.0, 0.0)))
    for c in range(model.ncam):
        orientation = np.zeros(9)
        mujoco.mju_quat2Mat(orientation, model.cam_quat[c])
        model.cam_pos[c] += orientation.reshape(3, 3) @ np.asarray(style.camera_shift or (0.0, 0.0, 0.0))
        quat = np.zeros(4)
        mujoco.mju_mulQuat(quat, model.cam_quat[c], turn)  # rotation in the camera's own frame
        model.cam_quat[c] = quat


def _tint_texture(model, texture: int, rgb: RGB) -> None:
    span = _texture_slice(model, texture)
    channels = int(model.tex_nchannel[texture])
    texels = model.tex_data[span].reshape(-1, channels).astype(np.float32)
    texels[:, :3] *= np.asarray(rgb, dtype=np.float32)
    model.tex_data[span] = np.clip(np.rint(texels), 0, 255).astype(np.uint8).reshape(-1)


def _texture_slice(model, texture: int) -> slice:
    start = int(model.tex_adr[texture])
    size = int(model.tex_width[texture] * model.tex_height[texture] * model.tex_nchannel[texture])
    return slice(start, start + size)


# -- model queries -----------------------------------------------------------------------------


def _shown_rgba(model, g: int) -> np.ndarray:
    """The colour a geom is drawn with: its own, or its material's when its own is unset."""
    rgba, material = model.geom_rgba[g], model.geom_matid[g]
    if material >= 0 and tuple(rgba) == DEFAULT_RGBA:
        return model.mat_rgba[material].copy()
    return rgba.copy()


def _apparent_rgb(model, g: int) -> np.ndarray:
    """Roughly the colour a geom appears in: its colour times its texture's mean colour."""
    rgb = _shown_rgba(model, g)[:3]
    material = model.geom_matid[g]
    textures = model.mat_texid[material][model.mat_texid[material] >= 0] if material >= 0 else []
    if len(textures):
        texture = int(textures[0])
        channels = int(model.tex_nchannel[texture])
        texels = model.tex_data[_texture_slice(model, texture)].reshape(-1, channels)[::61, :3]  # a sample is enough
        rgb = rgb * texels.mean(axis=0) / 255.0
    return rgb


def _not_default(rgba) -> np.ndarray:
    rgba = np.asarray(rgba, dtype=np.float32)
    if tuple(rgba) == DEFAULT_RGBA:  # would let the material's colour show through instead
        rgba[0] += 0.004
    return rgba


def _visible(model, g: int) -> bool:
    return model.geom_group[g] < VISIBLE_GROUPS and _shown_rgba(model, g)[3] > 0


def _body_geoms(model, bodies: Sequence[str]) -> list[int]:
    return [g for g in range(model.ngeom) if model.body(model.geom_bodyid[g]).name in bodies]


def _root_geoms(model, root: str) -> list[int]:
    return [g for g in range(model.ngeom) if model.body(model.body_rootid[model.geom_bodyid[g]]).name == root]


# -- sampling ----------------------------------------------------------------------------------


def _unit(rng: np.random.Generator) -> np.ndarray:
    vector = rng.normal(size=3)
    return vector / np.linalg.norm(vector)


def _rotation(rng: np.random.Generator, max_deg: float) -> tuple[float, float, float]:
    return tuple(float(v) for v in _unit(rng) * np.radians(rng.uniform(0.0, max_deg)))


def _axis_angle(rotation_vector) -> tuple[np.ndarray, float]:
    vector = np.asarray(rotation_vector, dtype=np.float64)
    angle = float(np.linalg.norm(vector))
    return (vector / angle if angle > 0 else np.array([0.0, 0.0, 1.0])), angle


def _rotation_matrix(rotation_vector) -> np.ndarray:
    axis, angle = _axis_angle(rotation_vector)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _tint(rng: np.random.Generator, brightness: tuple[float, float], saturation: float) -> RGB:
    """A colour factor: `brightness` times white mixed with a random hue by up to `saturation`."""
    hue = np.asarray(colorsys.hsv_to_rgb(rng.random(), 1.0, 1.0))
    mix = rng.uniform(0.0, saturation)
    colour = (1.0 - mix) + mix * hue
    return tuple(float(v) for v in rng.uniform(*brightness) * colour / colour.max())


def _pick(rng: np.random.Generator, options: Sequence[RGB]) -> RGB:
    return tuple(float(v) for v in options[int(rng.integers(len(options)))])


def _far_colour(rng: np.random.Generator, original: np.ndarray) -> tuple[str, RGB]:
    """A palette colour at least MIN_COLOUR_DISTANCE from `original` (the farthest if none is)."""
    names = list(PALETTE)
    distances = np.array([np.linalg.norm(np.asarray(PALETTE[n]) - original) for n in names])
    far = [n for n, d in zip(names, distances) if d >= MIN_COLOUR_DISTANCE] or [names[int(np.argmax(distances))]]
    name = far[int(rng.integers(len(far)))]
    return name, PALETTE[name]


def _household_colour(rng: np.random.Generator, avoid_rgb: Sequence[Sequence[float]]) -> RGB:
    for _ in range(20):
        rgb = np.asarray(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.35, 0.9), rng.uniform(0.35, 0.95)))
        if all(np.linalg.norm(rgb - np.asarray(a)[:3]) >= 0.3 for a in avoid_rgb):
            break
    return tuple(float(v) for v in rgb)


def _shape_geom(shape: str, half: float, rng: np.random.Generator) -> tuple[tuple[float, float, float], float]:
    """MuJoCo size of a `shape` about `half` metres in half-size, and the height of its centre."""
    if shape == "box":
        size = (half, half * rng.uniform(0.6, 1.4), half * rng.uniform(0.6, 1.5))
        return size, size[2]
    if shape == "sphere":
        return (half, half, half), half
    if shape == "ellipsoid":
        size = (half, half * rng.uniform(0.5, 0.9), half * rng.uniform(0.5, 1.0))
        return size, size[2]
    length = half * rng.uniform(0.8, 2.0)  # cylinder and capsule stand upright
    return (half * rng.uniform(0.5, 0.9), length, 0.0), length + (half if shape == "capsule" else 0.0)


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
        size, height = _shape_geom(shape, rng.uniform(*ranges.distractor_size_m), rng)
        rgb = _household_colour(rng, avoid_rgb)
        yaw = float(rng.uniform(0.0, np.pi))
        out.append(ExtraGeom(shape, size, (float(xy[0]), float(xy[1]), TABLE_TOP_Z + height), (*rgb, 1.0), yaw))
        placed.append(xy)
    return tuple(out)


_SIMILAR_SHAPES = {"sphere": "ellipsoid", "ellipsoid": "sphere", "cylinder": "capsule", "capsule": "cylinder"}


def _replacement(model, shown: list[int], original: np.ndarray, rng: np.random.Generator) -> tuple[str, ExtraGeom]:
    """A geom of another shape and colour, about the object's size (position filled in per frame)."""
    import mujoco

    half_sizes = model.geom_aabb[shown, 3:]
    largest = shown[int(np.argmax(np.prod(half_sizes, axis=1)))]
    own = {mujoco.mjtGeom.mjGEOM_BOX: "box", mujoco.mjtGeom.mjGEOM_MESH: "box"}.get(model.geom_type[largest])
    own = own or mujoco.mjtGeom(model.geom_type[largest]).name.removeprefix("mjGEOM_").lower()
    choices = [s for s in SHAPES if s not in (own, _SIMILAR_SHAPES.get(own))]
    shape = choices[int(rng.integers(len(choices)))]
    half = float(np.clip(half_sizes.max() * 1.2, 0.025, 0.10))  # small shapes are thinner than the box
    size, _ = _shape_geom(shape, half, rng)
    colour, rgb = _far_colour(rng, original)
    return colour, ExtraGeom(shape, size, (0.0, 0.0, 0.0), (*rgb, 1.0), float(rng.uniform(0.0, np.pi)))


__all__ = [
    "EDIT_KINDS",
    "Framing",
    "apply_framing",
    "frame_cameras",
    "LEVELS",
    "LEVEL_RANGES",
    "LevelRanges",
    "Randomizer",
    "SceneStyle",
    "apply_style",
    "edit_object",
    "geom_ids",
    "goal_sites",
    "hide_sites",
    "object_colours",
    "task_object_geoms",
]
