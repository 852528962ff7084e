"""Pictures of a monitored run: the progress curve (raw answers, the smoothed estimate in its band, events) as a
PNG, and the overlay video (each scored frame above the curve so far)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


class DrawingError(ValueError):
    """A drawing that needs a package that is not installed."""


OVERLAY_WIDTH = 480  # overlay frames are scaled to this width; the curve panel sits below

PANEL_HEIGHT = 128

EVENT_COLOURS = {"progress": "#2ca02c", "stall": "#ff7f0e", "regression": "#d62728", "done": "#9467bd",
                 "off_task": "#7f7f7f"}  # fmt: skip

def _event_label(event) -> str:
    return event.detail.split(" (")[0] if event.kind == "progress" else event.kind.replace("_", " ")

def plot_curve(steps, events, path: Path, title: str) -> Path:
    """Raw answers as points, the smoothed estimate as a line inside its band, events as labelled lines."""
    # lazy: matplotlib costs ~0.3 s at import and --help imports this module
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    t = [s.t for s in steps]
    nan = float("nan")
    smoothed = [nan if s.smoothed is None else s.smoothed * 100 for s in steps]
    low = [nan if s.low is None else s.low * 100 for s in steps]
    high = [nan if s.high is None else s.high * 100 for s in steps]
    ax.fill_between(t, low, high, color="#1f77b4", alpha=0.18, linewidth=0, label="band")
    ax.plot(t, smoothed, color="#1f77b4", linewidth=2, label="smoothed")
    answered = [(s.t, s.raw * 100) for s in steps if s.raw is not None]
    if answered:
        ax.scatter(*zip(*answered), s=14, color="#444444", zorder=3, label="raw answer")
    for status, colour, label in (("na", "#7f7f7f", "N/A"), ("parse_failure", "#d62728", "unreadable")):
        times = [s.t for s in steps if s.status == status]
        if times:
            ax.scatter(times, [-4] * len(times), marker="x", s=20, color=colour, zorder=3, label=label)
    for event in events:
        colour = EVENT_COLOURS.get(event.kind, "black")
        ax.axvline(event.t, color=colour, linestyle="--", linewidth=1, alpha=0.8)
        ax.text(event.t, 103, _event_label(event), rotation=90, va="top", ha="right", fontsize=7, color=colour)
    ax.set_ylim(-8, 105)
    if len(t) > 1 and t[-1] > t[0]:
        ax.set_xlim(t[0], t[-1])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("progress (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    figure.clear()
    return path

class Overlay:
    """Writes overlay.mp4 as frames arrive: each frame scaled to OVERLAY_WIDTH above the curve so far."""

    def __init__(self, path: Path, fps: float, t_end: float | None):
        try:
            import imageio_ffmpeg  # lazy: imageio-ffmpeg (the [online] extra)
        except ImportError:
            raise DrawingError("--video needs imageio-ffmpeg: pip install -e '.[online]' (in the progresslm clone)") from None
        self.path, self.fps, self.t_end = path, fps, t_end
        self._ffmpeg = imageio_ffmpeg
        self._writer = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def add(self, image, steps, events) -> None:
        """Draw one frame: `steps` are the monitor's steps up to and including this frame's."""
        picture = Image.fromarray(np.asarray(image)[..., :3])
        if self._size is None:
            height = max(16, round(picture.height * OVERLAY_WIDTH / picture.width / 16) * 16)
            self._size = (OVERLAY_WIDTH, height + PANEL_HEIGHT)
            self._writer = self._ffmpeg.write_frames(str(self.path), self._size, fps=self.fps, macro_block_size=16)
            self._writer.send(None)
        width, total = self._size
        canvas = Image.new("RGB", self._size, "white")
        canvas.paste(picture.resize((width, total - PANEL_HEIGHT), Image.BILINEAR), (0, 0))
        self._panel(ImageDraw.Draw(canvas), total - PANEL_HEIGHT, steps, events)
        self._writer.send(np.asarray(canvas).tobytes())
        self.frames += 1

    def _panel(self, draw, top: int, steps, events) -> None:
        left, right, y0, y1 = 8, OVERLAY_WIDTH - 8, top + 22, top + PANEL_HEIGHT - 8
        start = steps[0].t
        span = max((self.t_end or 0.0) - start, steps[-1].t - start, 1e-6)

        def xy(t: float, fraction: float) -> tuple[float, float]:
            return left + (right - left) * (t - start) / span, y1 - (y1 - y0) * fraction

        draw.rectangle((left, y0, right, y1), outline="#bbbbbb")
        known = [s for s in steps if s.smoothed is not None]
        if len(known) > 1:
            band = [xy(s.t, s.high) for s in known] + [xy(s.t, s.low) for s in reversed(known)]
            draw.polygon(band, fill="#c6dbef")
            draw.line([xy(s.t, s.smoothed) for s in known], fill="#1f77b4", width=2)
        for s in steps:
            x, y = xy(s.t, s.raw if s.raw is not None else 0.0)
            colour = "#444444" if s.raw is not None else "#7f7f7f"
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=colour)
        for event in events:
            x, _ = xy(event.t, 0.0)
            draw.line([(x, y0), (x, y1)], fill=EVENT_COLOURS.get(event.kind, "black"), width=1)
        last = steps[-1]
        text = f"t={last.t:.1f}s  " + ("progress n/a" if last.smoothed is None else
                                       f"{last.smoothed:.0%} [{last.low:.0%}-{last.high:.0%}]")  # fmt: skip
        recent = [e for e in events if last.t - e.t <= 2.0]
        draw.text((left, top + 5), text, fill="black")
        if recent:
            draw.text((left + 200, top + 5), _event_label(recent[-1]), fill=EVENT_COLOURS.get(recent[-1].kind, "black"))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
