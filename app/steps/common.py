"""What every step shares: the user-facing error, the session's project, and the checks that a step may run."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from app.engines import Engines
from app.projects import Project, create_project
from app.sessions import Session
from mvideo_core.extraction import Tracker, TrackerSession


class StudioError(ValueError):
    """A user-facing error: what was wrong and what to do. The session stays usable."""


def ensure_project(engines: Engines, session: Session) -> Project:
    """The session's project folder, created on first need."""
    if session.project is None:
        session.project = create_project(engines.settings.projects_dir)
    return session.project


def require_project(session: Session) -> Project:
    """The session's project folder, or a message that step 1 comes first."""
    if session.project is None:
        raise StudioError("load a video first (step 1: upload one or pick a sample)")
    return session.project


def require_video(session: Session) -> np.ndarray:
    """The session's frames uint8 [T, H, W, 3], or a message that step 1 comes first."""
    if session.frames is None:
        raise StudioError("load a video first (step 1: upload one or pick a sample)")
    return session.frames


def require_tracker(engines: Engines, session: Session) -> tuple[Tracker, TrackerSession]:
    """The tracker and the session's tracking state on the loaded video."""
    require_video(session)
    if engines.tracker is None or session.tracker_state is None:
        raise StudioError(f"mask extraction is unavailable: {engines.tracker_status}")
    return engines.tracker, session.tracker_state


def frame_index(session: Session, frame_idx: Any) -> int:
    """A widget's frame number checked against the loaded video."""
    frames = require_video(session)
    try:
        idx = int(frame_idx or 0)
    except (TypeError, ValueError) as err:
        raise StudioError(f"frame must be a whole number, got {frame_idx!r}") from err
    if not 0 <= idx < len(frames):
        raise StudioError(f"frame {idx} is outside the video (frames 0..{len(frames) - 1})")
    return idx


def match_length(frames: np.ndarray, t: int) -> np.ndarray:
    """Frames [T', H, W, 3] cut or looped to T frames (edited masks may be longer than the source)."""
    if len(frames) >= t:
        return frames[:t]
    return frames[np.arange(t) % len(frames)]


def safe_name(name: str) -> str:
    """A short file-name-safe version of a user's name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "file"


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def plural(count: int, word: str) -> str:
    """`1 clip`, `2 clips`."""
    return f"{count} {word}{'' if count == 1 else 's'}"
