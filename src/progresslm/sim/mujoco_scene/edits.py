"""Object edits of a MuJoCo model for unanswerable samples: `edit_object` recolours, hides or replaces the task object,
so the observation shows a scene the demonstration does not match; `hide_sites` hides goal markers. Context managers,
undone exactly on exit (`model.restoring`); physics is never touched."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import numpy as np

from progresslm.sim.mujoco_scene.model import (
    RGB,
    VISIBLE_GROUPS,
    apparent_rgb,
    far_colour,
    geom_ids,
    geom_visible,
    restoring,
    shape_geom,
    shown_rgba,
)
from progresslm.sim.mujoco_scene.randomise import SCENERY_ROOTS
from progresslm.sim.mujoco_scene.render import SHAPES, ExtraGeom, FrameRenderer

if TYPE_CHECKING:
    import mujoco

EDIT_KINDS = ("recolor", "hide", "replace")


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
    shown = [g for g in ids if geom_visible(model, g)]
    if not shown:
        raise ValueError(f"none of the geoms {list(geoms)} is visible, so there is nothing to edit")
    record: dict = {"kind": kind, "geoms": [model.geom(g).name or str(g) for g in ids]}
    original = np.mean([apparent_rgb(model, g) for g in shown], axis=0)
    with ExitStack() as stack:
        stack.enter_context(restoring(model))
        if kind == "recolor":
            name, rgb = far_colour(rng, original)
            for g in shown:
                model.geom_rgba[g] = (*rgb, shown_rgba(model, g)[3])
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
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    ids = [s if isinstance(s, int) else mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, s) for s in sites]
    if any(i < 0 for i in ids):
        valid = [model.site(i).name for i in range(model.nsite)]
        raise ValueError(f"unknown site in {list(sites)}; valid sites: {', '.join(valid)}")
    with restoring(model):
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
    return [tuple(float(v) for v in apparent_rgb(model, g)) for g in geom_ids(model, geoms) if geom_visible(model, g)]


def task_object_geoms(model: mujoco.MjModel) -> list[int]:
    """Geoms that are neither scenery nor robot: in Meta-World, the task's objects and fixtures."""
    roots = (model.body(model.body_rootid[model.geom_bodyid[g]]).name for g in range(model.ngeom))
    return [g for g, root in enumerate(roots) if root not in SCENERY_ROOTS]



_SIMILAR_SHAPES = {"sphere": "ellipsoid", "ellipsoid": "sphere", "cylinder": "capsule", "capsule": "cylinder"}


def _replacement(model, shown: list[int], original: np.ndarray, rng: np.random.Generator) -> tuple[str, ExtraGeom]:
    """A geom of another shape and colour, about the object's size (position filled in per frame)."""
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    half_sizes = model.geom_aabb[shown, 3:]
    largest = shown[int(np.argmax(np.prod(half_sizes, axis=1)))]
    own = {mujoco.mjtGeom.mjGEOM_BOX: "box", mujoco.mjtGeom.mjGEOM_MESH: "box"}.get(model.geom_type[largest])
    own = own or mujoco.mjtGeom(model.geom_type[largest]).name.removeprefix("mjGEOM_").lower()
    choices = [s for s in SHAPES if s not in (own, _SIMILAR_SHAPES.get(own))]
    shape = choices[int(rng.integers(len(choices)))]
    half = float(np.clip(half_sizes.max() * 1.2, 0.025, 0.10))  # small shapes are thinner than the box
    size, _ = shape_geom(shape, half, rng)
    colour, rgb = far_colour(rng, original)
    return colour, ExtraGeom(shape, size, (0.0, 0.0, 0.0), (*rgb, 1.0), float(rng.uniform(0.0, np.pi)))
