"""What the MuJoCo scene tools share: saving and restoring the model arrays an edit writes, geom ids and colours,
the palette of nameable colours, random rotations and shapes. Names of scenery follow Meta-World v3
(`randomise.py`); a model without them has less to vary."""

from __future__ import annotations

import colorsys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from progresslm.sim.mujoco_scene.render import FrameRenderer

if TYPE_CHECKING:
    import mujoco

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

RGB = tuple[float, float, float]


def geom_ids(model: mujoco.MjModel, geoms: Sequence[int | str]) -> list[int]:
    """Geom ids from ids or names; an unknown name fails listing the named geoms."""
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

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



_SAVED_ARRAYS = ("geom_rgba", "geom_matid", "light_diffuse", "light_dir", "light_pos", "cam_pos", "cam_quat")
_SAVED_ARRAYS += ("site_rgba", "cam_fovy")


@contextmanager
def restoring(model, textures: Sequence[int] = (), renderer: FrameRenderer | None = None) -> Iterator[None]:
    """Saves every model array a style or edit writes, and writes them back on exit."""
    arrays = {name: getattr(model, name).copy() for name in _SAVED_ARRAYS}
    headlight = {name: getattr(model.vis.headlight, name).copy() for name in ("ambient", "diffuse")}
    texels = {t: model.tex_data[texture_slice(model, t)].copy() for t in textures}
    try:
        yield
    finally:
        for name, saved in arrays.items():
            getattr(model, name)[...] = saved
        for name, saved in headlight.items():
            getattr(model.vis.headlight, name)[...] = saved
        for t, saved in texels.items():
            model.tex_data[texture_slice(model, t)] = saved
        if texels and renderer is not None:
            renderer.refresh_textures(list(texels))



def texture_slice(model, texture: int) -> slice:
    start = int(model.tex_adr[texture])
    size = int(model.tex_width[texture] * model.tex_height[texture] * model.tex_nchannel[texture])
    return slice(start, start + size)


# -- model queries -----------------------------------------------------------------------------


def shown_rgba(model, g: int) -> np.ndarray:
    """The colour a geom is drawn with: its own, or its material's when its own is unset."""
    rgba, material = model.geom_rgba[g], model.geom_matid[g]
    if material >= 0 and tuple(rgba) == DEFAULT_RGBA:
        return model.mat_rgba[material].copy()
    return rgba.copy()


def apparent_rgb(model, g: int) -> np.ndarray:
    """Roughly the colour a geom appears in: its colour times its texture's mean colour."""
    rgb = shown_rgba(model, g)[:3]
    material = model.geom_matid[g]
    textures = model.mat_texid[material][model.mat_texid[material] >= 0] if material >= 0 else []
    if len(textures):
        texture = int(textures[0])
        channels = int(model.tex_nchannel[texture])
        texels = model.tex_data[texture_slice(model, texture)].reshape(-1, channels)[::61, :3]  # a sample is enough
        rgb = rgb * texels.mean(axis=0) / 255.0
    return rgb


def not_default(rgba) -> np.ndarray:
    rgba = np.asarray(rgba, dtype=np.float32)
    if tuple(rgba) == DEFAULT_RGBA:  # would let the material's colour show through instead
        rgba[0] += 0.004
    return rgba


def geom_visible(model, g: int) -> bool:
    return model.geom_group[g] < VISIBLE_GROUPS and shown_rgba(model, g)[3] > 0


def body_geom_ids(model, bodies: Sequence[str]) -> list[int]:
    return [g for g in range(model.ngeom) if model.body(model.geom_bodyid[g]).name in bodies]


def root_geom_ids(model, root: str) -> list[int]:
    return [g for g in range(model.ngeom) if model.body(model.body_rootid[model.geom_bodyid[g]]).name == root]


# -- sampling ----------------------------------------------------------------------------------


def random_unit(rng: np.random.Generator) -> np.ndarray:
    vector = rng.normal(size=3)
    return vector / np.linalg.norm(vector)


def random_rotation(rng: np.random.Generator, max_deg: float) -> tuple[float, float, float]:
    return tuple(float(v) for v in random_unit(rng) * np.radians(rng.uniform(0.0, max_deg)))


def axis_angle(rotation_vector) -> tuple[np.ndarray, float]:
    vector = np.asarray(rotation_vector, dtype=np.float64)
    angle = float(np.linalg.norm(vector))
    return (vector / angle if angle > 0 else np.array([0.0, 0.0, 1.0])), angle


def rotation_matrix(rotation_vector) -> np.ndarray:
    axis, angle = axis_angle(rotation_vector)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross



def far_colour(rng: np.random.Generator, original: np.ndarray) -> tuple[str, RGB]:
    """A palette colour at least MIN_COLOUR_DISTANCE from `original` (the farthest if none is)."""
    names = list(PALETTE)
    distances = np.array([np.linalg.norm(np.asarray(PALETTE[n]) - original) for n in names])
    far = [n for n, d in zip(names, distances) if d >= MIN_COLOUR_DISTANCE] or [names[int(np.argmax(distances))]]
    name = far[int(rng.integers(len(far)))]
    return name, PALETTE[name]


def household_colour(rng: np.random.Generator, avoid_rgb: Sequence[Sequence[float]]) -> RGB:
    for _ in range(20):
        rgb = np.asarray(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.35, 0.9), rng.uniform(0.35, 0.95)))
        if all(np.linalg.norm(rgb - np.asarray(a)[:3]) >= 0.3 for a in avoid_rgb):
            break
    return tuple(float(v) for v in rgb)


def shape_geom(shape: str, half: float, rng: np.random.Generator) -> tuple[tuple[float, float, float], float]:
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



