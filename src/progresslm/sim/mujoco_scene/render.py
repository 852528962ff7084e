"""Fast offscreen frames of a MuJoCo scene: camera checks, flipped corner cameras, extra drawn geoms.

Speed comes from turning off what a 224-px frame does not need: shadows and reflections (~86 ->
~20 ms/frame) and multisampling (-> ~13 ms). Meta-World's `corner*` cameras come out upside
down, so their frames are turned by 180 degrees. Geoms that exist only in the picture (scene
distractors, an object drawn in place of a hidden one) are added through overlays: they are
appended to the visual scene after it is built from the simulator state, so physics never sees
them.

mujoco reads `MUJOCO_GL` once, when it is first imported: call `check_gl()` (FrameRenderer does)
before anything imports mujoco.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import mujoco

# Meta-World cameras, measured at 224 px over expert episodes of 10 tasks (pick-place, push, reach,
# drawer-open, door-open, button-press, window-open, peg-insert-side, basketball, faucet-open):
# - corner, corner3, corner4 show arm, table and object (a 2-cm puck covers 25-60 px);
# - corner2 is the widest view (the puck covers 11-20 px) and still shows everything;
# - topview: the arm hovers over small objects, which then stay hidden for the whole episode
#   (0 px of the puck in pick-place, push and reach), and tall fixtures are cut off at the top;
# - behindGripper and gripperPOV ride on the hand: close-ups of the fingers, or of the arm itself
#   (button-press), without the scene.
SCENE_CAMERAS: tuple[str, ...] = ("corner", "corner2", "corner3", "corner4")
FLIPPED_CAMERAS: frozenset[str] = frozenset({"corner", "corner2", "corner3", "corner4"})

DEFAULT_SIZE = 224
OVERLAY = -2  # value in `FrameRenderer.segment` output for pixels of overlay geoms
SHAPES = ("box", "sphere", "cylinder", "capsule", "ellipsoid")

_GL_HELP = {
    "egl": (
        "EGL (hardware or Mesa) could not be used. Install it (Debian/Ubuntu: "
        "`apt-get install libegl1 libgl1-mesa-dri`), or render in software: "
        "`apt-get install libosmesa6` and set MUJOCO_GL=osmesa."
    ),
    "osmesa": (
        "OSMesa could not be used. Install it (Debian/Ubuntu: `apt-get install libosmesa6`), "
        "or use EGL instead: `apt-get install libegl1 libgl1-mesa-dri` and set MUJOCO_GL=egl."
    ),
}
_HEADLESS = (
    "set MUJOCO_GL=egl (Debian/Ubuntu: `apt-get install libegl1 libgl1-mesa-dri`) "
    "or MUJOCO_GL=osmesa (`apt-get install libosmesa6`)"
)
_GL_HELP_OTHER = f"This backend needs a display. On a headless machine {_HEADLESS}."
_GL_HELP_INVALID = f"That is not a MUJOCO_GL value: {_HEADLESS}, or use glfw with a display."
_gl_checked: str | None = None


class RenderError(RuntimeError):
    """Offscreen rendering is not possible here; the message says what to install or set."""


class UnknownCameraError(ValueError):
    """A camera name the model does not have; the message lists the valid ones."""


def preload_triton() -> None:
    """Import triton (when installed, with torch) before the first EGL / OSMesa context: Mesa's software renderer
    (llvmpipe) loads its own LLVM, and triton imported after it (by `torch._dynamo`, which transformers and TRL import
    when a model loads) crashes the process with a segmentation fault. Imported first, both load; ~0.2 s once."""
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    try:
        import triton  # noqa: F401  # lazy: torch's optional compiler, only to load its LLVM before Mesa's
    except Exception:  # a broken triton install is torch's problem, not the renderer's
        pass


def check_gl() -> str:
    """Make sure offscreen rendering works and return the `MUJOCO_GL` value in use.

    Sets `MUJOCO_GL=egl` when it is unset (headless machines have no display for the default,
    GLFW). Raises `RenderError` naming the package to install and the `MUJOCO_GL` value to use
    when mujoco cannot be imported or a renderer cannot be created. The check renders one 8x8
    frame of an empty model, once per process.
    """
    global _gl_checked
    backend = os.environ.setdefault("MUJOCO_GL", "egl").lower().strip()
    if _gl_checked == backend:
        return backend
    active = backend
    if backend in ("egl", "osmesa"):
        preload_triton()
    try:
        import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

        # mujoco chose its GL backend when first imported, perhaps before MUJOCO_GL was set.
        context = getattr(mujoco.gl_context, "GLContext", None)
        active = context.__module__.rsplit(".", 1)[-1] if context is not None else backend
        renderer = mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8)
        try:
            renderer.render()
        finally:
            renderer.close()
    except Exception as error:  # any failure here (ImportError, GL errors) has the same remedy
        order = ""
        if active != (backend if backend in ("egl", "osmesa", "cgl") else "glfw"):
            order = (
                f" mujoco was imported before MUJOCO_GL={backend} was set and uses {active}: set MUJOCO_GL "
                "in the environment before Python starts (or call check_gl() before importing mujoco, "
                "gymnasium or metaworld)."
            )
        raise RenderError(
            f"MuJoCo offscreen rendering failed with the {active} GL backend: "
            f"{type(error).__name__}: {error}. {_gl_help(active)}{order}"
        ) from error
    _gl_checked = backend
    return backend


def _gl_help(backend: str) -> str:
    if backend in _GL_HELP:
        return _GL_HELP[backend]
    if backend in ("glfw", "glx", "", "enable", "enabled", "on", "true", "1"):
        return _GL_HELP_OTHER
    return _GL_HELP_INVALID


@dataclass(frozen=True)
class ExtraGeom:
    """A geom drawn into one frame only: no body, no collisions, invisible to physics."""

    shape: str  # one of SHAPES
    size: tuple[float, float, float]  # MuJoCo geom size (half-sizes for a box)
    pos: tuple[float, float, float]  # world position of the centre, metres
    rgba: tuple[float, float, float, float]
    yaw: float = 0.0  # rotation about the world z axis, radians

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; valid shapes: {', '.join(SHAPES)}")

    def to_dict(self) -> dict:
        """Plain values, to record in a sample how its frame was made."""
        return {
            "shape": self.shape,
            "size": [round(float(v), 4) for v in self.size],
            "pos": [round(float(v), 4) for v in self.pos],
            "rgba": [round(float(v), 3) for v in self.rgba],
            "yaw": round(float(self.yaw), 4),
        }


# Turns the simulator state into the geoms to draw on top of the model's own, once per frame.
Overlay = Callable[["mujoco.MjData"], Iterable[ExtraGeom]]


class FrameRenderer:
    """Square RGB frames of one model from its named cameras, with fast settings.

    Usage::

        with FrameRenderer(model, size=224) as renderer:
            image = renderer.render(data, "corner3")  # uint8 array, 224 x 224 x 3

    `scene_option` (a `mujoco.MjvOption`) chooses what is drawn, e.g. no sites for a family whose goal markers are
    sites. Before each frame the camera and light poses are recomputed from the model (`mj_camlight`), so
    live edits of `model.cam_pos` / `model.light_dir` show up without stepping the simulation.
    """

    def __init__(self, model: mujoco.MjModel, size: int = DEFAULT_SIZE,
                 scene_option: mujoco.MjvOption | None = None):
        check_gl()
        import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        self.model = model
        self.size = size
        self.scene_option = scene_option  # what to draw (geom and site groups, visual flags); None: mujoco's default
        self._overlays: list[Overlay] = []
        self._stale_textures: set[int] = set()
        self._sent_textures: dict[int, np.ndarray] = {}  # texture id -> data last uploaded
        # Multisampling is fixed when the GL context is made and the offscreen buffer must hold
        # the frame; both are model settings, so set them for the renderer's creation only.
        quality, frame = model.vis.quality, model.vis.global_
        saved = quality.offsamples, frame.offwidth, frame.offheight
        quality.offsamples = 0
        frame.offwidth, frame.offheight = max(frame.offwidth, size), max(frame.offheight, size)
        try:
            self._renderer = mujoco.Renderer(model, size, size)
        except Exception as error:
            raise RenderError(f"could not create a {size}x{size} MuJoCo renderer: {error}") from error
        finally:
            quality.offsamples, frame.offwidth, frame.offheight = saved
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0

    # -- cameras -----------------------------------------------------------------------------

    @property
    def cameras(self) -> list[str]:
        """Names of the model's cameras."""
        return [self.model.camera(i).name for i in range(self.model.ncam)]

    def camera_id(self, camera: str) -> int:
        """The id of a named camera; `UnknownCameraError` lists the valid names."""
        import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

        camera_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < 0:
            raise UnknownCameraError(
                f"unknown camera {camera!r}; valid cameras: {', '.join(self.cameras)} "
                f"(the ones that show the scene: {', '.join(SCENE_CAMERAS)})"
            )
        return camera_id

    # -- overlays ----------------------------------------------------------------------------

    @contextmanager
    def overlay(self, source: Overlay) -> Iterator[None]:
        """Draw `source(data)`'s geoms into every frame rendered inside the `with` block."""
        self._overlays.append(source)
        try:
            yield
        finally:
            self._overlays.remove(source)

    def _draw_overlays(self, data: mujoco.MjData) -> None:
        import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

        scene = self._renderer.scene
        for source in self._overlays:
            for geom in source(data):
                if scene.ngeom >= scene.maxgeom:
                    raise RenderError(f"the visual scene is full ({scene.maxgeom} geoms); draw fewer overlays")
                index = scene.ngeom
                target = scene.geoms[index]
                cos, sin = np.cos(geom.yaw), np.sin(geom.yaw)
                rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
                shape = getattr(mujoco.mjtGeom, f"mjGEOM_{geom.shape.upper()}")
                mujoco.mjv_initGeom(
                    target,
                    shape,
                    np.asarray(geom.size, dtype=np.float64),
                    np.asarray(geom.pos, dtype=np.float64),
                    rotation.reshape(-1),
                    np.asarray(geom.rgba, dtype=np.float32),
                )
                # Same convention as mjv_updateScene, so segmentation can tell overlay pixels apart.
                target.segid = index
                target.objtype = mujoco.mjtObj.mjOBJ_UNKNOWN
                target.objid = -1
                target.category = mujoco.mjtCatBit.mjCAT_DECOR
                target.specular, target.shininess = 0.3, 0.3
                scene.ngeom += 1

    # -- frames ------------------------------------------------------------------------------

    def _prepare(self, data: mujoco.MjData, camera: str) -> bool:
        import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

        camera_id = self.camera_id(camera)
        if self._stale_textures:
            self._upload_stale_textures()
        mujoco.mj_camlight(self.model, data)  # picks up live edits of camera and light poses
        self._renderer.update_scene(data, camera_id, scene_option=self.scene_option)
        self._draw_overlays(data)
        return camera in FLIPPED_CAMERAS

    def render(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        """The frame of `data`'s state seen from `camera`, a `size x size x 3` uint8 array."""
        flip = self._prepare(data, camera)
        image = self._renderer.render()
        return np.ascontiguousarray(image[::-1, ::-1]) if flip else image

    def segment(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        """Per-pixel geom ids (int32, `size x size`) of the frame `render` would give.

        -1 marks background and non-geom pixels (sites, decorations), `OVERLAY` pixels of
        overlay geoms. Slower than `render` (meant for tests and masks, not for datasets).
        """
        import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

        flip = self._prepare(data, camera)
        self._renderer.enable_segmentation_rendering()
        try:
            raw = self._renderer.render()
        finally:
            self._renderer.disable_segmentation_rendering()
        ids, types = raw[..., 0], raw[..., 1]
        out = np.where(types == mujoco.mjtObj.mjOBJ_GEOM, ids, -1).astype(np.int32)
        out[(types == mujoco.mjtObj.mjOBJ_UNKNOWN) & (ids == -1)] = OVERLAY
        return np.ascontiguousarray(out[::-1, ::-1]) if flip else out

    def refresh_textures(self, texture_ids: Sequence[int]) -> None:
        """Make the GPU's copies of these textures follow edits of `model.tex_data`.

        Textures live on the GPU from the renderer's creation on. The upload (~1 ms for a small
        texture) happens before the next frame and only if the data differ from what was last sent,
        so applying the same edit around every frame costs nothing after the first.
        """
        self._stale_textures.update(int(t) for t in texture_ids)

    def _upload_stale_textures(self) -> None:
        import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

        gl_context = getattr(self._renderer, "_gl_context", None)
        mjr_context = getattr(self._renderer, "_mjr_context", None)
        if mjr_context is None:
            raise RenderError("cannot upload textures: the renderer is closed (or mujoco.Renderer changed)")
        for texture in sorted(self._stale_textures):
            start = int(self.model.tex_adr[texture])
            size = int(np.prod([self.model.tex_width[texture], self.model.tex_height[texture]]))
            texels = self.model.tex_data[start : start + size * int(self.model.tex_nchannel[texture])]
            sent = self._sent_textures.get(texture)
            if sent is not None and np.array_equal(sent, texels):
                continue
            if gl_context is not None:
                gl_context.make_current()
            mujoco.mjr_uploadTexture(self.model, mjr_context, texture)
            self._sent_textures[texture] = texels.copy()
        self._stale_textures.clear()

    def resync(self) -> None:
        """Re-check every texture uploaded so far against the model before the next frame (a renderer kept across
        episodes: an edit made for one episode and undone in the model must be undone on the GPU too)."""
        self._stale_textures.update(self._sent_textures)

    def close(self) -> None:
        """Free the GL context (with EGL, skipping this prints harmless tracebacks at exit)."""
        self._renderer.close()

    def __enter__(self) -> FrameRenderer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
