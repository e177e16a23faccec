"""Server-side per-browser-session state: heavy objects live here, keyed by `request.session_hash`.

Like the SAM2 demo backend: one dict behind one lock, a cancel flag per session, and cleanup when the browser
closes (`demo.unload`). `gr.State` only ever holds small values (ids, recipe JSON), never frames or models.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from app.projects import Project
from editing.recipe import UndoStack
from mvideo_core.extraction import TrackerSession
from mvideo_core.masks import MaskSet
from mvideo_core.video_io import VideoInfo


class Candidate(TypedDict):
    """One box offered by text detection: xyxy pixels on `frame`, its score and its phrase."""

    box: list[float]
    score: float
    label: str
    frame: int


@dataclass
class Session:
    """Everything one browser tab owns. Frames: uint8 [T, H, W, 3]; masks: a `MaskSet` at the frames' size."""

    session_id: str
    project: Project | None = None
    frames: np.ndarray | None = None
    fps: float = 8.0
    source_path: str | None = None
    video_info: VideoInfo | None = None
    tracker_state: TrackerSession | None = None
    masks: MaskSet | None = None  # the extracted (unedited) masks
    object_names: dict[int, str] = field(default_factory=dict)
    points: dict[int, list[tuple[int, float, float, int]]] = field(default_factory=dict)  # id -> (frame, x, y, +1/0)
    candidates: list[Candidate] = field(default_factory=list)  # the last detection, best first
    extra_sources: dict[str, MaskSet] = field(default_factory=dict)  # recipe source name -> MaskSet
    undo: UndoStack | None = None  # the edit history of recipes
    edited: MaskSet | None = None  # the last rendered MaskSet
    edited_key: str | None = None  # recipe JSON that `edited` was rendered from
    length_chosen: bool = False  # the user set the video's length (else it follows the motion)
    propagating: bool = False  # a propagation runs (what Stop stops)
    cancel: threading.Event = field(default_factory=threading.Event)
    last_seen: float = field(default_factory=time.monotonic)

    def adopt(self, other: Session) -> None:
        """Take over another session's work (a reopened project built aside, so a failure leaves this one as it was)."""
        for name in ("project", "frames", "fps", "source_path", "video_info", "tracker_state", "masks", "object_names",
                     "points", "candidates", "extra_sources", "undo", "edited", "edited_key", "length_chosen"):  # fmt: skip
            setattr(self, name, getattr(other, name))

    def reset_video(self) -> None:
        """Forget everything derived from the previous source video."""
        self.frames = None
        self.video_info = None
        self.source_path = None
        self.tracker_state = None
        self.masks = None
        self.object_names = {}
        self.points = {}
        self.candidates = []
        self.edited = None
        self.edited_key = None


class SessionStore:
    """Thread-safe map session id -> `Session`. A session is freed when its browser tab closes (`free`) or after
    `idle_timeout` seconds without a request (`expire`, also run on each `get`): clients that never send a heartbeat
    or an unload (plain HTTP, API callers) cannot hold memory for ever. Projects stay on disk either way."""

    def __init__(self, idle_timeout: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self.idle_timeout = idle_timeout
        self._clock = clock

    def get(self, session_id: str) -> Session:
        """The session for this id, created on first use."""
        if not session_id:
            raise ValueError("no session id: the request did not come from a browser session")
        self.expire()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                session = Session(session_id)
                self._sessions[session_id] = session
            session.last_seen = self._clock()
            return session

    def free(self, session_id: str) -> bool:
        """Drop a session (browser closed); its running jobs see the cancel flag and stop."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.cancel.set()
        return True

    def expire(self) -> list[str]:
        """Free every session idle for longer than `idle_timeout`; returns their ids."""
        if not self.idle_timeout:
            return []
        now = self._clock()
        with self._lock:
            idle = [sid for sid, s in self._sessions.items() if now - s.last_seen > self.idle_timeout]
        return [sid for sid in idle if self.free(sid)]

    def start_reaper(self, interval: float = 60.0) -> threading.Thread:
        """A daemon thread that calls `expire` every `interval` seconds (sessions expire with no traffic too)."""

        def loop() -> None:
            while True:
                time.sleep(interval)
                self.expire()

        thread = threading.Thread(target=loop, name="session-reaper", daemon=True)
        thread.start()
        return thread

    def __contains__(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._sessions

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
