"""Request bodies of the server's JSON endpoints (pydantic, strict: "0.5" is not a number)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from progresslm.online.monitor import DEFAULT_STALL_SECONDS
from progresslm.prompts import MODES

Mode = Literal[MODES]  # type: ignore[valid-type]


class ChatCompletionBody(BaseModel):
    """OpenAI's chat-completions body; fields this server does not use (stop, user, ...) are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    messages: list[Any] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    n: int = Field(1, ge=1, le=8)
    stream: bool = False
    stream_options: dict[str, Any] | None = None  # {"include_usage": true}: a last chunk with the usage


class MonitorSettings(BaseModel):
    """`ProgressMonitor` keyword arguments a session may set; the monitor checks their ranges."""

    model_config = ConfigDict(extra="forbid", strict=True)

    samples: int = 1
    stall_seconds: float | None = DEFAULT_STALL_SECONDS
    stall_frames: int | None = None
    min_gain: float = 0.02
    regression_drop: float = 0.10
    done_threshold: float = 0.95
    done_frames: int = 2
    off_task_frames: int = 3
    milestones: str | list[float] = "tenths"


class DemoFields(BaseModel):
    """A task: its goal and a demonstration, keyframe images (base64 / data URLs) or text steps."""

    model_config = ConfigDict(extra="forbid", strict=True)

    goal: str = Field(min_length=1)
    demo_images: list[str] | None = None
    demo_steps: list[str] | None = None
    mode: Mode | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)


class ProgressBody(DemoFields):
    observation: str


class SessionBody(DemoFields):
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)


class FramesBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    frames: list[str] = Field(min_length=1)
    timestamps: list[float] | None = None
