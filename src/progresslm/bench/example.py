"""A small synthetic benchmark drawn with PIL, for the main job and tests until simulated data exists.

A gripper picks a coloured block and places it on a target zone in four key steps (reach, grasp
and lift, carry, place). Two cameras look at the scene (`top` and `front`). The demonstration
comes from one episode and the observations from another (other positions, other step
durations), so matching pixels is not enough. Every split of the authors' format is written:
same-view, cross-view, text, and both unanswerable kinds (block recoloured; text naming another
object). Labels are exact: progress is linear in time between key-step ends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from progresslm.bench.format import format_percent
from progresslm.io import data_home, write_text_atomic

SIZE = 112  # a multiple of 28, as Qwen2.5-VL's processor wants
COLOURS = {"red": (200, 40, 40), "blue": (40, 70, 210), "yellow": (225, 200, 40), "purple": (140, 50, 170)}
STEPS = ("reach the {c} block", "grasp the {c} block and lift it", "carry the {c} block to the target", "place the {c} block on the target")
OTHER_OBJECT = {"red": "green ball", "blue": "orange cup", "yellow": "white bottle", "purple": "black box"}
VERSION = "1"


@dataclass
class Episode:
    colour: str
    frames: list[dict]  # scene state per frame
    key_frames: list[int]  # frame index at the start and at the end of each step (T+1 entries)

    def progress(self, frame: int) -> float:
        """Linear in time between key-step ends (docs/protocol.md §1)."""
        keys = self.key_frames
        for j in range(len(keys) - 1):
            if frame <= keys[j + 1]:
                d = (frame - keys[j]) / max(keys[j + 1] - keys[j], 1)
                return (j + d) / (len(keys) - 1)
        return 1.0


def simulate(colour: str, rng: np.random.Generator) -> Episode:
    """Scene states of one scripted episode with random positions and step durations."""
    home = np.array([rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.3), 0.6])
    block = np.array([rng.uniform(0.15, 0.45), rng.uniform(0.4, 0.85), 0.0])
    target = np.array([rng.uniform(0.6, 0.85), rng.uniform(0.4, 0.85), 0.0])
    lift = 0.45
    waypoints = [home, block + [0, 0, 0.05], block + [0, 0, lift], target + [0, 0, lift]]  # gripper at step ends
    frames, keys = [], [0]
    block_pos = block.copy()
    for step in range(4):
        start, end = waypoints[step], waypoints[min(step + 1, 3)]
        n = int(rng.integers(6, 15))
        for i in range(1, n + 1):
            t = i / n
            if step == 3:  # place: lower first, then open and rise
                pos = target + [0, 0, lift * (1 - min(t * 2, 1)) + 0.05 + 0.2 * max(t * 2 - 1, 0)]
                closed_now = attached_now = t < 0.5
            elif step == 1:  # grasp, then lift
                pos = start + (end - start) * max(t - 0.3, 0) / 0.7
                closed_now = attached_now = t > 0.3
            else:
                pos = start + (end - start) * t
                closed_now = attached_now = step == 2
            if attached_now:
                block_pos = pos - [0, 0, 0.05]
            elif step == 3:
                block_pos = target.copy()
            frames.append({"gripper": pos.copy(), "closed": closed_now, "block": block_pos.copy(), "target": target})
        keys.append(len(frames) - 1 + 1)
    first = {"gripper": home.copy(), "closed": False, "block": block.copy(), "target": target}
    return Episode(colour=colour, frames=[first] + frames, key_frames=keys)


def render(state: dict, camera: str, colour: tuple[int, int, int], floor_shade: int = 0):
    """One frame of the scene from the `top` or the `front` camera."""
    s = SIZE
    image = Image.new("RGB", (s, s), (150 + floor_shade, 130 + floor_shade, 100 + floor_shade))
    draw = ImageDraw.Draw(image)
    g, b, target = state["gripper"], state["block"], state["target"]
    if camera == "top":
        tx, ty = target[0] * s, target[1] * s
        draw.rectangle([tx - 12, ty - 12, tx + 12, ty + 12], outline=(40, 160, 60), width=3)
        half = 7 + 6 * b[2]
        draw.rectangle([b[0] * s - half, b[1] * s - half, b[0] * s + half, b[1] * s + half], fill=colour)
        gap = 4 if state["closed"] else 11
        x, y = g[0] * s, g[1] * s
        draw.line([x, 0, x, y - 6], fill=(90, 90, 90), width=3)
        for side in (-1, 1):
            draw.rectangle([x + side * gap - 2, y - 6, x + side * gap + 2, y + 6], fill=(60, 60, 60))
    else:  # front: x to the right, height up, depth makes things smaller and higher
        def project(p):
            scale = 1.0 - 0.35 * p[1]
            return s / 2 + (p[0] - 0.5) * s * scale, s * 0.85 - p[2] * s * 0.9 * scale - p[1] * s * 0.25, scale

        draw.rectangle([0, s * 0.55, s, s], fill=(120, 105, 85))
        tx, ty, ts = project(target)
        draw.rectangle([tx - 14 * ts, ty - 2, tx + 14 * ts, ty + 3], fill=(40, 160, 60))
        bx, by, bs = project(b)
        half = 8 * bs
        draw.rectangle([bx - half, by - 2 * half, bx + half, by], fill=colour)
        gx, gy, gs = project(g)
        gap = (4 if state["closed"] else 11) * gs
        draw.line([gx, 0, gx, gy - 10 * gs], fill=(90, 90, 90), width=3)
        for side in (-1, 1):
            draw.rectangle([gx + side * gap - 2, gy - 10 * gs, gx + side * gap + 2, gy + 2], fill=(60, 60, 60))
    return image


@dataclass
class ExampleBench:
    root: Path
    files: list[Path] = field(default_factory=list)


def default_example_dir() -> Path:
    return data_home() / f"example-v{VERSION}"


def _record(traj_id, goal, demo_key, demo, total, obs, closest, progress, delta=None, extra=None) -> dict:
    record = {"id": traj_id, "task_goal": goal, demo_key: demo, "total_steps": total, "stage_to_estimate": obs,
              "closest_idx": closest, "progress_score": progress}
    if delta is not None:
        record["delta"] = delta
    record["data_source"] = "progresslm_example"
    record.update(extra or {})
    return record


def build_example(out: str | Path, seed: int = 0, tasks_per_colour: int = 2, per_interval: int = 3) -> ExampleBench:
    """Write the example benchmark (JSONL files and images) into `out`; reuse it if already complete."""
    root = Path(out)
    names = ["visual_same_view", "visual_cross_view", "visual-unanswerable", "text-normal", "text-unanswerable"]
    bench = ExampleBench(root=root, files=[root / f"{name}.jsonl" for name in names])
    done_marker = root / "DONE"
    if done_marker.exists() and done_marker.read_text().strip() == f"{VERSION}:{seed}":
        return bench
    rng = np.random.default_rng(seed)
    rows: dict[str, list[dict]] = {name: [] for name in names}
    images = root / "images"
    for colour_name, colour in COLOURS.items():
        for k in range(tasks_per_colour):
            demo_ep, obs_ep = simulate(colour_name, rng), simulate(colour_name, rng)
            traj_id = f"example/{colour_name}_block/episode_{k}"
            folder = images / traj_id
            (folder / "demo").mkdir(parents=True, exist_ok=True)
            shade = int(rng.integers(-10, 10))
            for camera in ("top", "front"):
                for f in demo_ep.key_frames:
                    render(demo_ep.frames[f], camera, colour).save(folder / "demo" / f"{camera}_{f:04d}.jpg", quality=90)
            goal = f"pick up the {colour_name} block and place it on the green target"
            steps = [step.format(c=colour_name) for step in STEPS]
            T = len(steps)
            obs_frames = sorted({int(round(a + (b - a) * i / (per_interval + 1)))
                                 for a, b in zip(obs_ep.key_frames, obs_ep.key_frames[1:])
                                 for i in range(per_interval + 2)})
            for f in obs_frames:
                state = obs_ep.frames[f]
                for camera in ("top", "front"):
                    render(state, camera, colour, shade).save(folder / f"{camera}_{f:04d}.jpg", quality=90)
                p = obs_ep.progress(f)
                anchor = int(round(p * T))  # nearest keyframe, 0-based
                delta = format_percent(p - anchor / T, signed=True)
                for name, camera_demo in (("visual_same_view", "top"), ("visual_cross_view", "front")):
                    demo = [f"demo/{camera_demo}_{kf:04d}.jpg" for kf in demo_ep.key_frames]
                    extra = {"camera_combination": f"{camera_demo}+top"} if camera_demo != "top" else None
                    rows[name].append(_record(traj_id, goal, "visual_demo", demo, str(T), [f"top_{f:04d}.jpg"],
                                              str(anchor + 1), format_percent(p), delta, extra))
                text_anchor = max(int(round(p * T)), 1)  # nearest step end, 1-based
                rows["text-normal"].append(_record(traj_id, goal, "text_demo", steps, T, f"top_{f:04d}.jpg",
                                                   text_anchor, format_percent(p)))
                other = OTHER_OBJECT[colour_name]
                rows["text-unanswerable"].append(_record(
                    traj_id, goal.replace(f"{colour_name} block", other), "text_demo",
                    [s.replace(f"{colour_name} block", other) for s in steps], T, f"top_{f:04d}.jpg", "n/a", "n/a"))
            # unanswerable visual: the observation's block recoloured, the demonstration as it was
            recolour = [c for c in COLOURS if c != colour_name][k % (len(COLOURS) - 1)]
            for f in obs_ep.key_frames[1:]:
                render(obs_ep.frames[f], "top", COLOURS[recolour], shade).save(folder / f"top_{f:04d}_edit.jpg", quality=90)
                demo = [f"demo/top_{kf:04d}.jpg" for kf in demo_ep.key_frames]
                rows["visual-unanswerable"].append(_record(traj_id, goal, "visual_demo", demo, str(T),
                                                           [f"top_{f:04d}_edit.jpg"], "n/a", "n/a", "n/a",
                                                           {"edit": f"block recoloured {colour_name} -> {recolour}"}))
    for name, path in zip(names, bench.files):
        write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows[name]))
    done_marker.write_text(f"{VERSION}:{seed}\n")
    return bench
