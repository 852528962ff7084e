"""Camera framing of a MuJoCo model: each camera turned toward, and zoomed onto, the region a task happens in."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from progresslm.sim.mujoco_scene.model import restoring

if TYPE_CHECKING:
    import mujoco


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
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

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
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    with restoring(model):
        for name, (quat, fovy) in (framing.cameras if framing else {}).items():
            c = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            model.cam_quat[c] = quat
            model.cam_fovy[c] = fovy
        yield framing


def _quat_matrix(quat) -> np.ndarray:
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

    matrix = np.zeros(9)
    mujoco.mju_quat2Mat(matrix, np.asarray(quat, dtype=np.float64))
    return matrix.reshape(3, 3)


def _turned_toward(quat, direction) -> np.ndarray:
    """`quat` rotated (in the world frame) by the smallest turn that points its -z axis along `direction`."""
    import mujoco  # lazy: MUJOCO_GL must be set (check_gl) before mujoco's first import

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


