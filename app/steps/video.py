"""Step 1, the video: check an upload, decode it at the model's fps and working size, autosave it, start tracking."""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.engines import Engines
from app.sessions import Session
from app.steps.common import StudioError, ensure_project, plural, safe_name
from mvideo_core import samples
from mvideo_core.video_io import (
    Video,
    VideoDecodeWarning,
    VideoError,
    VideoInfo,
    probe_video,
    read_video,
    truncation_note,
    write_video,
)

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".gif", ".mkv", ".avi", ".m4v")


@dataclass
class VideoSummary:
    """What step 1 shows after loading a video."""

    info: str  # markdown
    first_frame: np.ndarray  # uint8 [H, W, 3]
    num_frames: int
    warnings: list[str] = field(default_factory=list)  # e.g. a truncated file: decoding stopped early


class VideoTooLong(StudioError):
    """The video (or its trimmed part) is longer than the studio takes: the upload is kept so a trim can follow."""


def check_upload(path: str | Path | None, max_upload_mb: float) -> Path:
    """Reject missing, empty, oversized or non-video uploads before decoding them."""
    if path is None or str(path) == "":
        raise StudioError("no file was uploaded; choose a video file (mp4, mov, webm or gif)")
    path = Path(path)
    if not path.is_file():
        raise StudioError(f"the upload {path.name} did not arrive; please upload it again")
    size = path.stat().st_size
    if size == 0:
        raise StudioError(f"{path.name} is empty (0 bytes); upload a video file (mp4, mov, webm or gif)")
    if size > max_upload_mb * 2**20:
        raise StudioError(
            f"{path.name} is {size / 2**20:.1f} MB, over the {max_upload_mb:g} MB upload limit; "
            "upload a shorter or smaller video (or restart the studio with a larger --max-upload-mb)"
        )
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise StudioError(f"{path.name} is not a supported video type; upload one of {', '.join(VIDEO_SUFFIXES)}")
    return path


def decode_video(
    engines: Engines, path: str | Path | None, start: float = 0.0, end: float | None = None
) -> tuple[Video, VideoInfo, Path]:
    """Check and decode `[start, end)` s of a video at the model's fps and the working size; writes nothing."""
    settings = engines.settings
    path = check_upload(path, settings.max_upload_mb)
    try:
        info = probe_video(path)
    except VideoError as err:
        raise StudioError(f"{path.name} could not be read as a video: {err}") from err
    start = max(0.0, float(start or 0.0))
    end = float(end) if end else None
    if end is not None and end <= start:
        raise StudioError(
            f"trim end ({end:g} s) must be after trim start ({start:g} s); set end to 0 for 'to the end'"
        )
    span = (min(end, info.duration) if end else info.duration) - start
    if span <= 0:
        raise StudioError(f"trim start {start:g} s is past the end of the {info.duration:.1f} s video")
    if span > settings.max_seconds + 1e-6:
        raise VideoTooLong(
            f"{path.name} is {span:.1f} s long; the studio takes at most {settings.max_seconds:g} s. Set trim "
            f"start/end to a part of at most {settings.max_seconds:g} s and press Apply trim (or restart with a "
            "larger --max-seconds)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VideoDecodeWarning)  # kept in video.warnings and shown on the page
            video = read_video(path, fps=settings.model_fps, size=settings.work_size, fit="crop", start=start, end=end)
    except VideoError as err:
        raise StudioError(f"{path.name} could not be decoded: {err}") from err
    if video.frames.shape[0] == 0:
        raise StudioError(f"{path.name} has no frames in {start:g}..{end or info.duration:g} s; change the trim")
    return video, info, path


def load_video(
    engines: Engines, session: Session, path: str | Path | None, start: float = 0.0, end: float | None = None
) -> VideoSummary:
    """Check, decode (at the model's fps and working size), autosave, and open a tracking session on a video."""
    video, info, path = decode_video(engines, path, start, end)
    start = max(0.0, float(start or 0.0))
    end = float(end) if end else None
    project = ensure_project(engines, session)
    session.reset_video()
    is_own_source = project.contains(path) and path.name.startswith("source.")
    session.source_path = str(path if is_own_source else project.save_source(path))
    project.update_meta(trim=[start, end], video=_info_dict(info), objects={}, masks=None)
    with contextlib.suppress(FileNotFoundError):
        project.masks_path.unlink()  # the masks were of the previous video
    set_frames(engines, session, video.frames, video.fps)
    session.video_info = info
    return summarize(engines, video, info, start, end)


def summarize(engines: Engines, video: Video, info: VideoInfo, start: float, end: float | None) -> VideoSummary:
    """What step 1 shows of a decoded video, with the decoder's warnings (a truncated file) first."""
    text = video_markdown(engines, info, video.frames, video.fps, start, end)
    note = truncation_note(video)
    notes = [note] if note else []
    if notes:
        text = "\n\n".join(f"**Warning:** {note}" for note in notes) + "\n\n" + text
    return VideoSummary(text, video.frames[0], len(video.frames), notes)


def list_samples() -> list[str]:
    return list(samples.list_samples())


def load_sample(engines: Engines, session: Session, name: str) -> VideoSummary:
    """A procedural sample from assets/ (no upload needed); its ground-truth masks are not used."""
    if not name:
        raise StudioError("pick a sample from the list first")
    try:
        video, _masks = samples.load_sample(name)
    except FileNotFoundError:  # assets not generated on this checkout: make it (deterministic, a second or two)
        video, _masks = samples.make_sample(name)
    except (KeyError, ValueError) as err:
        raise StudioError(f"sample {name!r} is not available: {err}") from err
    project = ensure_project(engines, session)
    tmp = write_video(project.output_path(f"sample_{safe_name(name)}.mp4"), video.frames, video.fps)
    return load_video(engines, session, tmp)


def set_frames(engines: Engines, session: Session, frames: np.ndarray, fps: float) -> None:
    """Make `frames` uint8 [T, H, W, 3] the session's video and open a tracking session on them."""
    session.frames = frames
    session.fps = float(fps)
    if engines.tracker is not None:
        session.tracker_state = engines.tracker.start(frames, fps)


def _info_dict(info: VideoInfo) -> dict[str, Any]:
    """The probe's facts recorded in project.json (its path is the upload cache's, so it is left out)."""
    data = asdict(info)
    data.pop("path")
    return data


def video_markdown(
    engines: Engines, info: VideoInfo, frames: np.ndarray, fps: float, start: float, end: float | None
) -> str:
    """What the source holds and what the studio uses of it: frames, size, fps, and the clips it covers."""
    s = engines.settings
    t, h, w = frames.shape[:3]
    seconds = (t - 1) / fps

    def covers(clip_seconds: float) -> str:  # clips share their boundary frame
        return plural(max(1, math.ceil(seconds / clip_seconds - 1e-6)), "clip")

    offered = engines.offered()
    if offered:  # each engine that can generate here, with its own clip shape
        models = "; ".join(
            f"{c.short_name} {c.describe()}: this motion covers {covers(c.spec.clip_seconds)}" for c in offered
        )
    else:
        clip_frames = int(round(s.clip_seconds * s.model_fps)) + 1
        models = (
            f"the model generates {s.model_size[1]}x{s.model_size[0]} at {s.model_fps:g} fps in {s.clip_seconds:g} "
            f"s clips ({clip_frames} frames): this motion covers {covers(s.clip_seconds)}"
        )
    trim = f"{start:g} s to {end:g} s" if end else (f"{start:g} s to the end" if start else "whole video")
    return (
        f"**Source:** {info.width}x{info.height}, {info.fps:.3g} fps, {info.duration:.2f} s, "
        f"{info.num_frames} frames ({info.codec}/{info.container})\n\n"
        f"**Used:** {trim} -> {t} frames at {fps:g} fps, {w}x{h} (centre crop) for masks; {models}"
    )
