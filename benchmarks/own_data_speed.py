"""Reading users' data: decoded frames/s at 224 px (H.264 and AV1, a LeRobot-v3-style file packing many episodes)
and `data build` samples/s on a videos folder.

    python benchmarks/own_data_speed.py                 # 640 x 480 source, 30 fps, 20 episodes of 10 s
    python benchmarks/own_data_speed.py --episodes 8

Decoding: every frame of each episode's window, scaled to a 224-px shorter side (what `data build` and `watch`
read), one process; target >= 200 frames/s on 2 cores. Build: `data build` with uniform:5 keyframes, 2
observation frames per interval, two cameras, JPEGs at 224 px."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def scene(episode: int, frame: int, height: int, width: int) -> np.ndarray:
    """A moving textured block on a gradient: compresses like footage, not like a flat colour."""
    rng = np.random.default_rng(episode)
    base = np.linspace(40, 200, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    noise = rng.normal(0, 12, size=(height // 8, width // 8, 3)).repeat(8, 0).repeat(8, 1)
    pixels = base + noise[:height, :width]
    x = int(width * 0.1 + width * 0.7 * frame / 300)
    pixels[height // 3: height // 3 + 80, x: x + 60] = (220, 60 + episode * 7 % 150, 40)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()

    from progresslm.data.video import decode, write_video

    per_episode = int(args.seconds * args.fps)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for codec in ("libx264", "libsvtav1"):
            frames = [scene(e, i, args.height, args.width) for e in range(args.episodes) for i in range(per_episode)]
            path = write_video(root / f"packed-{codec}.mp4", frames, args.fps, codec)
            del frames
            start = time.perf_counter()
            count = 0
            for e in range(args.episodes):
                window = (e * args.seconds, (e + 1) * args.seconds)
                count += sum(1 for _ in decode(path, start=window[0], end=window[1], size=224))
            seconds = time.perf_counter() - start
            print(f"decode {codec}: {count} frames ({args.width} x {args.height} -> 224 px) in {seconds:.2f} s: "
                  f"{count / seconds:.0f} frames/s")

        videos = root / "videos"
        for t, task in enumerate(("task_a", "task_b")):
            for e in range(args.episodes // 2):
                for camera in ("top", "side"):
                    frames = [scene(10 * t + e, i, args.height, args.width)[:, :: (1 if camera == "top" else -1)]
                              for i in range(per_episode)]
                    write_video(videos / task / f"ep{e}.{camera}.mp4", frames, args.fps)
        from progresslm.data.data_build import DataBuildConfig, build

        start = time.perf_counter()
        outcome = build(DataBuildConfig(source=f"videos:{videos}", out=str(root / "bench"), keyframes="uniform:5"),
                        progress=False)
        seconds = time.perf_counter() - start
        samples = sum(outcome.samples["bench"].values())
        print(f"data build: {samples} samples from {outcome.episodes} episodes in {seconds:.1f} s "
              f"({samples / seconds:.1f} samples/s, dataset card with baselines included)")


if __name__ == "__main__":
    main()
