"""Rendering Panda scenes (PyBullet): a render client per scene with no goal markers, free cameras framed on the task,
scene styles (randomisation) and object edits for unanswerable samples.

`PandaRenderer` is a second panda-gym env of the scene, loaded with pybullet's `eglRenderer` plugin (17-24 fps at
224 px on 2 cores; TinyRenderer, 11-15 fps, when the plugin fails to load or renders blank), its goal ghosts made
transparent and buried under the floor. It never steps physics: each frame's stored body poses are put into it
(`set_state`) before a render, so what it shows does not depend on what it rendered before (checked: the same pose
renders the same bytes after any other pose, once the first frames, which differ, are rendered and dropped).

Cameras are pybullet's free cameras (target, distance, yaw, pitch; field of view 60 degrees). `PandaStyle` varies
what carries no progress between a demonstration and an observation episode: light strength, tint and a gradient
across the image (pybullet's hardware renderer ignores light arguments, so light is applied to the pixels), floor,
table and robot colours, a camera nudge, distractor shapes on the table away from the object's and fingertips'
paths. The task object's look never changes there; edits (recolour, hide, replace) change only it.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from progresslm.sim.family import LEVELS
from progresslm.sim.mujoco_scene.randomise import style_to_dict
from progresslm.sim.panda.rollout import BURIED, SCENE_BODIES, native_stdout_quiet, new_env, set_state

FOV = 60.0  # degrees, vertical and horizontal (square images)
WARM_UP_RENDERS = 3  # the first frames of a new EGL client differ from later renders of the same pose
TABLE_X, TABLE_Y = (-0.85, 0.25), (-0.35, 0.35)  # panda-gym's table top (z = 0)
HAND_LINKS = (8, 9, 10)  # the Panda's hand and fingers: the task object of a reach


@dataclass(frozen=True)
class CameraSpec:
    """A free camera: its direction (yaw, pitch, degrees) and how framing sets its distance: far enough that the
    task's region fits with `margin`, never nearer than `min_distance`."""

    yaw: float
    pitch: float
    margin: float
    min_distance: float


# panda_wide: panda-gym's own view (robot, table and floor, from the robot's front left, 1.1 m or more away);
# panda_front: from the far end of the table, facing the robot, framed on the task's region (a 4-cm cube must cover
# enough pixels that recolouring or hiding it shows: the share of pixels it covers falls with the square of the
# distance); panda_close: low and oblique from the robot's right, near the task. Wide and close views differ a lot in
# scale and angle.
CAMERA_SPECS = {
    "panda_wide": CameraSpec(45.0, -30.0, 2.6, 1.1),
    "panda_front": CameraSpec(90.0, -35.0, 1.3, 0.5),
    "panda_close": CameraSpec(-40.0, -15.0, 1.2, 0.35),
}

# Plain colours a floor, a table or a robot is painted in (RGB); none is near the cubes' green and blue.
FLOOR_COLOURS = ((0.15, 0.15, 0.15), (0.5, 0.5, 0.5), (0.7, 0.65, 0.55), (0.25, 0.27, 0.35), (0.5, 0.35, 0.25))
TABLE_COLOURS = ((0.95, 0.95, 0.95), (0.6, 0.43, 0.28), (0.8, 0.75, 0.65), (0.5, 0.53, 0.58), (0.33, 0.33, 0.36))
ROBOT_COLOURS = ((0.85, 0.4, 0.1), (0.2, 0.2, 0.22), (0.7, 0.15, 0.15), (0.9, 0.8, 0.3))
DISTRACTOR_COLOURS = ((0.85, 0.15, 0.1), (0.1, 0.55, 0.2), (0.95, 0.8, 0.1), (0.6, 0.2, 0.7), (0.95, 0.5, 0.1),
                      (0.2, 0.5, 0.9), (0.9, 0.9, 0.85), (0.5, 0.3, 0.15))
EDIT_COLOURS = {"red": (0.85, 0.1, 0.1), "yellow": (0.95, 0.85, 0.1), "purple": (0.55, 0.15, 0.7),
                "orange": (0.95, 0.5, 0.05), "black": (0.08, 0.08, 0.08), "pink": (0.95, 0.45, 0.7),
                "blue": (0.1, 0.1, 0.9)}  # no green: the stack scene's other cube is green
SHAPES = ("box", "sphere", "cylinder")


@dataclass(frozen=True)
class Distractor:
    shape: str
    size: tuple[float, ...]  # box: half extents; sphere: (radius,); cylinder: (radius, height)
    pos: tuple[float, float, float]
    rgba: tuple[float, float, float, float]

    def to_dict(self) -> dict:
        return {"shape": self.shape, "size": [round(v, 4) for v in self.size], "pos": [round(v, 4) for v in self.pos],
                "rgba": [round(v, 3) for v in self.rgba]}


@dataclass(frozen=True)
class Ranges:
    light: tuple[float, float]
    light_tint: float
    light_slope: float  # brightness change from one image edge to the other, at most
    repaint_p: float  # chance of a new floor colour and of a new table colour
    robot_paint_p: float
    camera_shift_m: float
    camera_turn_deg: float
    camera_zoom: float  # distance scaled by 1 +- this
    distractors: tuple[int, int]


LEVEL_RANGES = {
    "default": Ranges((0.75, 1.2), 0.15, 0.2, 0.5, 0.0, 0.03, 5.0, 0.08, (0, 2)),
    "strong": Ranges((0.55, 1.35), 0.35, 0.4, 0.9, 0.5, 0.06, 10.0, 0.15, (1, 4)),
}


@dataclass(frozen=True)
class PandaStyle:
    """One sampled look of a Panda scene; defaults leave the scene as shipped."""

    level: str = "none"
    light: float = 1.0
    light_tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    light_slope: tuple[float, float] = (0.0, 0.0)  # brightness gradient across the image (x, y)
    floor: tuple[float, float, float] | None = None
    table: tuple[float, float, float] | None = None
    robot: tuple[float, float, float] | None = None
    camera_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # metres, the camera target moved in the world
    camera_turn: tuple[float, float] = (0.0, 0.0)  # degrees added to yaw and pitch
    camera_zoom: float = 1.0  # distance factor
    distractors: tuple[Distractor, ...] = field(default=())

    def to_dict(self) -> dict:
        return style_to_dict(self)


@dataclass
class PandaFraming:
    """Per camera name: the point it looks at and its distance from it (yaw and pitch are the camera's own)."""

    cameras: dict[str, tuple[tuple[float, float, float], float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {name: {"target": [round(v, 4) for v in target], "distance": round(distance, 4)}
                for name, (target, distance) in self.cameras.items()}  # fmt: skip


def frame_cameras(cameras: Sequence[str], points: np.ndarray) -> PandaFraming:
    """Aim each camera at the centre of the box around `points` (n, 3) and set its distance so that the sphere around
    them fits the field of view with the camera's margin."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    radius = max(float(np.linalg.norm(high - low)) / 2, 0.05)
    out = {}
    for name in cameras:
        spec = camera_spec(name)
        distance = max(spec.min_distance, spec.margin * radius / np.sin(np.radians(FOV / 2)))
        out[name] = (tuple(float(v) for v in centre), float(distance))
    return PandaFraming(out)


def camera_spec(name: str) -> CameraSpec:
    if name not in CAMERA_SPECS:
        raise ValueError(f"unknown Panda camera {name!r}; valid cameras: {', '.join(CAMERA_SPECS)}")
    return CAMERA_SPECS[name]


# --------------------------------------------------------------------------- rendering


class RenderError(RuntimeError):
    pass


class PandaRenderer:
    """A render-only panda-gym env of one scene: EGL when it works, TinyRenderer otherwise; goal ghosts never drawn."""

    def __init__(self, scene: str):
        self.env = new_env(scene, render=True)
        self.client, self.bullet = self.env.sim.physics_client, self.env.bullet
        self.bodies = dict(self.env.sim._bodies_idx)
        self.scene = scene
        self.mode = self.bullet.ER_BULLET_HARDWARE_OPENGL if self.env.egl else self.bullet.ER_TINY_RENDERER
        for ghost in SCENE_BODIES[scene][1]:
            self.client.changeVisualShape(self.bodies[ghost], -1, rgbaColor=[0.0, 0.0, 0.0, 0.0])
            self.client.resetBasePositionAndOrientation(self.bodies[ghost], BURIED, (0.0, 0.0, 0.0, 1.0))
        self.original = {(d[0], d[1]): tuple(d[7]) for body in self.bodies.values()
                         for d in self.client.getVisualShapeData(body)}
        self._shapes: dict[tuple, int] = {}
        self.dirty = False  # colours changed since the last restore
        probe = None
        with native_stdout_quiet():  # the EGL plugin's first renders print the GL vendor
            for _ in range(WARM_UP_RENDERS):
                probe = self._raw((0.0, 0.0, 0.0), 1.2, 45.0, -30.0, 32)
        if self.env.egl and int(probe.max()) == int(probe.min()):  # a blank EGL frame: use TinyRenderer
            self.mode = self.bullet.ER_TINY_RENDERER
        self.renderer_name = "egl" if self.mode == self.bullet.ER_BULLET_HARDWARE_OPENGL else "tiny"

    def _raw(self, target, distance: float, yaw: float, pitch: float, size: int) -> np.ndarray:
        view = self.client.computeViewMatrixFromYawPitchRoll(list(target), distance, yaw, pitch, 0.0, 2)
        projection = self.client.computeProjectionMatrixFOV(FOV, 1.0, 0.02, 20.0)
        _, _, rgba, _, _ = self.client.getCameraImage(size, size, view, projection, renderer=self.mode)
        return np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[..., :3].copy()

    def paint(self, body: str, rgba, links: Sequence[int] | None = None) -> None:
        uid = self.bodies[body]
        self.dirty = True
        for (b, link) in self.original:
            if b == uid and (links is None or link in links):
                self.client.changeVisualShape(uid, link, rgbaColor=list(rgba))

    def restore_colours(self) -> None:
        if self.dirty:
            for (body, link), rgba in self.original.items():
                self.client.changeVisualShape(body, link, rgbaColor=list(rgba))
            self.dirty = False

    def add_shape(self, shape: str, size: Sequence[float], pos, rgba) -> int:
        """A visual-only body (no collision, no mass) drawn until removed."""
        key = (shape, tuple(round(float(v), 6) for v in size), tuple(round(float(v), 4) for v in rgba))
        visual = self._shapes.get(key)
        if visual is None:
            b = self.bullet
            kwargs = {"box": {"halfExtents": list(size)}, "sphere": {"radius": size[0]},
                      "cylinder": {"radius": size[0], "length": size[-1]}}[shape]
            geom = {"box": b.GEOM_BOX, "sphere": b.GEOM_SPHERE, "cylinder": b.GEOM_CYLINDER}[shape]
            visual = self._shapes[key] = self.client.createVisualShape(geom, rgbaColor=list(rgba), **kwargs)
        return self.client.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=visual,
                                           basePosition=list(pos))

    def close(self) -> None:
        with native_stdout_quiet():  # the EGL plugin says "Destroy EGL OpenGL window."
            self.env.close()


def check_render() -> None:
    """Raises RenderError unless a Panda scene renders a frame that is not blank (run in a child process)."""
    renderer = PandaRenderer("push")
    try:
        image = renderer._raw((0.0, 0.0, 0.0), 1.2, 45.0, -30.0, 32)
        if int(image.max()) == int(image.min()):
            raise RenderError(f"pybullet rendered a blank frame with its {renderer.renderer_name} renderer")
    finally:
        renderer.close()


def light_pixels(pixels: np.ndarray, style: PandaStyle) -> np.ndarray:
    """The style's light applied to an image: strength times tint, times a linear gradient across it.

    >>> light_pixels(np.full((2, 2, 3), 100, np.uint8), PandaStyle(light=1.5))[0, 0].tolist()
    [150, 150, 150]
    """
    if style.light == 1.0 and style.light_tint == (1.0, 1.0, 1.0) and style.light_slope == (0.0, 0.0):
        return pixels
    h, w = pixels.shape[:2]
    xs, ys = np.linspace(-0.5, 0.5, w), np.linspace(-0.5, 0.5, h)
    gradient = 1.0 + style.light_slope[0] * xs[None, :] + style.light_slope[1] * ys[:, None]
    gain = style.light * gradient[..., None] * np.asarray(style.light_tint)[None, None, :]
    return np.clip(np.rint(pixels.astype(np.float64) * gain), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- styles


def _tint(rng, amount: float) -> tuple[float, float, float]:
    hue = np.asarray(colorsys.hsv_to_rgb(rng.random(), 1.0, 1.0))
    mix = rng.uniform(0.0, amount)
    colour = (1.0 - mix) + mix * hue
    return tuple(float(v) for v in colour / colour.max())


def _pick(rng, options):
    return tuple(float(v) for v in options[int(rng.integers(len(options)))])


def sample_style(level: str, rng: np.random.Generator, avoid_xy: Sequence[Sequence[float]] = (),
                 avoid_rgb: Sequence[Sequence[float]] = ()) -> PandaStyle:
    """A random look of `level` for a Panda scene; distractors keep 10 cm from the points `avoid_xy` (the object's
    and fingertips' paths, the goal) and their colours away from `avoid_rgb` (the task object's)."""
    if level not in LEVELS:
        raise ValueError(f"unknown randomisation level {level!r}; valid levels: {', '.join(LEVELS)}")
    if level == "none":
        return PandaStyle()
    r = LEVEL_RANGES[level]
    shift = rng.normal(size=3)
    shift = shift / np.linalg.norm(shift) * rng.uniform(0.0, r.camera_shift_m)
    return PandaStyle(
        level=level,
        light=float(rng.uniform(*r.light)),
        light_tint=_tint(rng, r.light_tint),
        light_slope=tuple(float(v) for v in rng.uniform(-r.light_slope, r.light_slope, size=2)),
        floor=_pick(rng, FLOOR_COLOURS) if rng.random() < r.repaint_p else None,
        table=_pick(rng, TABLE_COLOURS) if rng.random() < r.repaint_p else None,
        robot=_pick(rng, ROBOT_COLOURS) if rng.random() < r.robot_paint_p else None,
        camera_shift=tuple(float(v) for v in shift),
        camera_turn=tuple(float(v) for v in rng.uniform(-r.camera_turn_deg, r.camera_turn_deg, size=2)),
        camera_zoom=float(1.0 + rng.uniform(-r.camera_zoom, r.camera_zoom)),
        distractors=_distractors(rng, r.distractors, avoid_xy, avoid_rgb),
    )


def _distractors(rng, count: tuple[int, int], avoid_xy, avoid_rgb) -> tuple[Distractor, ...]:
    avoid = [np.asarray(p, dtype=float)[:2] for p in avoid_xy] + [np.array([-0.6, 0.0])]  # and the robot's base
    colours = [c for c in DISTRACTOR_COLOURS
               if all(np.linalg.norm(np.subtract(c, a)) > 0.35 for a in avoid_rgb)] or list(DISTRACTOR_COLOURS)
    out, placed = [], []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        for _attempt in range(40):
            xy = np.array([rng.uniform(TABLE_X[0] + 0.3, TABLE_X[1] - 0.04), rng.uniform(TABLE_Y[0] + 0.04, TABLE_Y[1] - 0.04)])
            if all(np.linalg.norm(xy - p) > 0.1 for p in avoid + placed):
                break
        else:
            continue
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        s = float(rng.uniform(0.015, 0.035))
        size = {"box": (s, s * rng.uniform(0.6, 1.4), s), "sphere": (s,), "cylinder": (s, 3 * s)}[shape]
        height = {"box": s, "sphere": s, "cylinder": 1.5 * s}[shape]
        out.append(Distractor(shape, tuple(float(v) for v in size), (float(xy[0]), float(xy[1]), height),
                              (*_pick(rng, colours), 1.0)))
        placed.append(xy)
    return tuple(out)


def camera_pose(framing: PandaFraming, camera: str, style: PandaStyle | None) -> tuple[tuple, float, float, float]:
    """(target, distance, yaw, pitch) of `camera`: its framing, nudged by the style."""
    spec = camera_spec(camera)
    if camera not in framing.cameras:
        raise ValueError(f"camera {camera!r} was not framed; framed cameras: {', '.join(framing.cameras)}")
    target, distance = framing.cameras[camera]
    yaw, pitch = spec.yaw, spec.pitch
    if style is not None:
        target = tuple(float(a + b) for a, b in zip(target, style.camera_shift))
        yaw, pitch = yaw + style.camera_turn[0], pitch + style.camera_turn[1]
        distance = distance * style.camera_zoom
    return target, distance, yaw, pitch


def _far_colour(original, rng: np.random.Generator) -> tuple[str, tuple[float, float, float]]:
    names = [n for n, c in EDIT_COLOURS.items() if np.linalg.norm(np.subtract(c, original[:3])) > 0.6]
    name = names[int(rng.integers(len(names)))]
    return name, EDIT_COLOURS[name]


EDIT_KINDS = ("recolor", "hide", "replace")


def render_frame(renderer: PandaRenderer, state: np.ndarray, pose, size: int, style: PandaStyle | None,
                 object_body: str | None, edit: tuple[str, np.random.Generator] | None) -> tuple[np.ndarray, dict]:
    """`state` posed in `renderer`, drawn from camera `pose` with `style`, the task object (`object_body`, or the
    gripper when None) edited by `edit`; every change undone afterwards. Returns the pixels and the edit's record."""
    set_state(renderer.env, state)
    record: dict = {}
    added: list[int] = []
    client = renderer.client
    try:
        if style is not None:
            if style.floor is not None:
                renderer.paint("plane", (*style.floor, 1.0))
            if style.table is not None:
                renderer.paint("table", (*style.table, 1.0))
            if style.robot is not None:  # the arm; the hand and fingers keep their look
                renderer.paint("panda", (*style.robot, 1.0), links=[-1, 0, 1, 2, 3, 4, 5, 6, 7])
            added += [renderer.add_shape(d.shape, d.size, d.pos, d.rgba) for d in style.distractors]
        if edit is not None:
            kind, rng = edit
            if kind not in EDIT_KINDS:
                raise ValueError(f"unknown edit kind {kind!r}; valid kinds: {', '.join(EDIT_KINDS)}")
            if object_body is None:
                uid, links, name = renderer.bodies["panda"], HAND_LINKS, "gripper"
            else:
                uid, links, name = renderer.bodies[object_body], (-1,), object_body
            original = renderer.original[(uid, links[0])]
            record = {"kind": kind, "bodies": [name]}
            renderer.dirty = True
            if kind == "recolor":
                colour, rgb = _far_colour(original, rng)
                for link in links:
                    client.changeVisualShape(uid, link, rgbaColor=[*rgb, 1.0])
                record.update(colour=colour, rgb=[round(float(v), 3) for v in rgb])
            else:
                if object_body is None:
                    centre = np.asarray(renderer.env.robot.get_ee_position(), dtype=float)
                    for link in links:
                        client.changeVisualShape(uid, link, rgbaColor=[0.0, 0.0, 0.0, 0.0])
                else:
                    centre = np.asarray(client.getBasePositionAndOrientation(uid)[0], dtype=float)
                    client.resetBasePositionAndOrientation(uid, BURIED, (0.0, 0.0, 0.0, 1.0))
                if kind == "replace":
                    colour, rgb = _far_colour(original, rng)
                    shape = ("sphere", "cylinder")[int(rng.integers(2))]
                    extent = (0.03,) if shape == "sphere" else (0.025, 0.07)
                    added.append(renderer.add_shape(shape, extent, centre, (*rgb, 1.0)))
                    record.update(colour=colour, shape=shape, size=list(extent))
        target, distance, yaw, pitch = pose
        pixels = renderer._raw(target, distance, yaw, pitch, size)
    finally:
        for body in added:
            client.removeBody(body)
        renderer.restore_colours()
    if style is not None:
        pixels = light_pixels(pixels, style)
    return pixels, record
