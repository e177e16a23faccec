"""Thin adapters between the studio's widgets and the core: plain values in, plain values out, no gradio.

Every function takes the `Engines`, the caller's server-side `Session` and widget values, and returns images
(uint8 [H, W, 3]), file paths inside the session's project folder, or short markdown. User mistakes raise
`StudioError` with a message that says what was wrong and what to do; the studio turns it into a toast.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.engines import Engines
from app.projects import Project, ProjectError, create_project, open_project
from app.sessions import Session

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".gif", ".mkv", ".avi", ".m4v")
MAX_CANDIDATES = 10  # boxes offered after a text query, best scores first
MASK_FORMATS = {"PNG zip": "zip", "NumPy npz": "npz", "label video mp4": "mp4", "COCO RLE json": "json"}


class StudioError(ValueError):
    """A user-facing error: what was wrong and what to do. The session stays usable."""


# -- project -----------------------------------------------------------------------------------------------------
def ensure_project(engines: Engines, session: Session) -> Project:
    """The session's project folder, created on first need."""
    if session.project is None:
        session.project = create_project(engines.settings.projects_dir)
    return session.project


def project_summary(session: Session) -> str:
    if session.project is None:
        return "No project yet: upload a video or pick a sample to start one (it autosaves)."
    meta = session.project.meta()
    parts = [f"Project `{session.project.project_id}` (autosaved)"]
    if meta.get("source_name"):
        parts.append(f"source: {meta['source_name']}")
    clips = len(session.project.clip_paths())
    if clips:
        parts.append(f"{clips} clip(s)")
    return " · ".join(parts)


# -- step 1: video -----------------------------------------------------------------------------------------------
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


@dataclass
class VideoSummary:
    """What step 1 shows after loading a video."""

    info: str  # markdown
    first_frame: np.ndarray  # uint8 [H, W, 3]
    num_frames: int


def load_video(
    engines: Engines, session: Session, path: str | Path | None, start: float = 0.0, end: float | None = None
) -> VideoSummary:
    """Check, decode (at the model's fps and working size), autosave, and open a tracking session on a video."""
    from mvideo_core.video_io import VideoError, probe_video, read_video

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
        raise StudioError(
            f"{path.name} is {span:.1f} s long; the studio takes at most {settings.max_seconds:g} s. Set trim "
            f"start/end to a part of at most {settings.max_seconds:g} s (or restart with a larger --max-seconds)"
        )
    try:
        video = read_video(path, fps=settings.model_fps, size=settings.work_size, fit="crop", start=start, end=end)
    except VideoError as err:
        raise StudioError(f"{path.name} could not be decoded: {err}") from err
    if video.frames.shape[0] == 0:
        raise StudioError(f"{path.name} has no frames in {start:g}..{end or info.duration:g} s; change the trim")
    project = ensure_project(engines, session)
    session.reset_video()
    is_own_source = project.contains(path) and path.name.startswith("source.")
    session.source_path = str(path if is_own_source else project.save_source(path))
    project.update_meta(trim=[start, end], video=_info_dict(info))
    _set_frames(engines, session, video.frames, video.fps)
    session.video_info = info
    return VideoSummary(
        _video_markdown(engines, info, video.frames, video.fps, start, end), video.frames[0], len(video.frames)
    )


def list_samples() -> list[str]:
    try:
        from mvideo_core.samples import list_samples as _list
    except ImportError:
        return []
    return list(_list())


def load_sample(engines: Engines, session: Session, name: str) -> VideoSummary:
    """A procedural sample from assets/ (no upload needed); its ground-truth masks are not used."""
    from mvideo_core.samples import load_sample as _load
    from mvideo_core.video_io import write_video

    if not name:
        raise StudioError("pick a sample from the list first")
    try:
        video, _masks = _load(name)
    except FileNotFoundError:  # assets not generated on this checkout: make it (deterministic, a second or two)
        from mvideo_core.samples import make_sample

        video, _masks = make_sample(name)
    except (KeyError, ValueError) as err:
        raise StudioError(f"sample {name!r} is not available: {err}") from err
    project = ensure_project(engines, session)
    tmp = write_video(project.output_path(f"sample_{_safe_name(name)}.mp4"), video.frames, video.fps)
    return load_video(engines, session, tmp)


def _set_frames(engines: Engines, session: Session, frames: np.ndarray, fps: float) -> None:
    session.frames = frames
    session.fps = float(fps)
    if engines.tracker is not None:
        session.tracker_state = engines.tracker.start(frames, fps)


def _info_dict(info: Any) -> dict[str, Any]:
    keys = ("width", "height", "fps", "num_frames", "duration", "rotation", "codec", "container", "has_audio")
    return {k: getattr(info, k, None) for k in keys}


def _video_markdown(
    engines: Engines, info: Any, frames: np.ndarray, fps: float, start: float, end: float | None
) -> str:
    s = engines.settings
    t, h, w = frames.shape[:3]
    clip_frames = int(round(s.clip_seconds * s.model_fps)) + 1
    clips = max(1, math.ceil((t - 1) / fps / s.clip_seconds - 1e-6))  # clips share their boundary frame
    trim = f"{start:g} s to {end:g} s" if end else (f"{start:g} s to the end" if start else "whole video")
    return (
        f"**Source:** {info.width}x{info.height}, {info.fps:.3g} fps, {info.duration:.2f} s, "
        f"{info.num_frames} frames ({info.codec}/{info.container})\n\n"
        f"**Used:** {trim} -> {t} frames at {fps:g} fps, {w}x{h} (centre crop) for masks; "
        f"the model generates {s.model_size[1]}x{s.model_size[0]} at {s.model_fps:g} fps in {s.clip_seconds:g} s "
        f"clips ({clip_frames} frames): this motion covers {clips} clip(s)"
    )


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "file"


def require_video(session: Session) -> np.ndarray:
    if session.frames is None:
        raise StudioError("load a video first (step 1: upload one or pick a sample)")
    return session.frames


def require_tracker(engines: Engines, session: Session) -> Any:
    require_video(session)
    if engines.tracker is None or session.tracker_state is None:
        raise StudioError(f"mask extraction is unavailable: {engines.tracker_status}")
    return engines.tracker


# -- step 2: masks -----------------------------------------------------------------------------------------------
def frame_index(session: Session, frame_idx: Any) -> int:
    frames = require_video(session)
    try:
        idx = int(frame_idx or 0)
    except (TypeError, ValueError) as err:
        raise StudioError(f"frame must be a whole number, got {frame_idx!r}") from err
    if not 0 <= idx < len(frames):
        raise StudioError(f"frame {idx} is outside the video (frames 0..{len(frames) - 1})")
    return idx


def detect(engines: Engines, session: Session, text: str, frame_idx: int) -> tuple[np.ndarray, list[str]]:
    """Text -> candidate boxes on one frame; returns the frame with numbered boxes and the choice labels."""
    idx = frame_index(session, frame_idx)
    phrases = [p.strip() for p in (text or "").replace(",", ".").split(".") if p.strip()]
    if not phrases:
        raise StudioError('type what to track, e.g. "person . dog" (phrases separated by dots)')
    if engines.grounder is None:
        raise StudioError(f"text detection is unavailable ({engines.grounder_status}); click on the object instead")
    dets = engines.grounder.detect(session.frames[idx], phrases)
    best = np.argsort(-dets.scores, kind="stable")[:MAX_CANDIDATES]
    session.candidates = [
        {
            "box": [float(v) for v in dets.boxes[i]],
            "score": float(dets.scores[i]),
            "label": dets.labels[i],
            "frame": idx,
        }
        for i in best
    ]
    if not session.candidates:
        raise StudioError(
            f"nothing matching {' . '.join(phrases)} was found on frame {idx}; try another frame or click"
        )
    return draw_candidates(session.frames[idx], session.candidates), candidate_choices(session)


def candidate_choices(session: Session) -> list[str]:
    return [f"{i + 1}: {c['label']} ({c['score']:.2f})" for i, c in enumerate(session.candidates)]


def add_candidates(engines: Engines, session: Session, chosen: list[str]) -> np.ndarray:
    """Turn the picked candidate boxes into tracked objects on their frame; returns that frame's overlay."""
    tracker = require_tracker(engines, session)
    if not chosen:
        raise StudioError("tick at least one candidate box to keep")
    idx = 0
    for choice in chosen:
        try:
            cand = session.candidates[int(str(choice).split(":")[0]) - 1]
        except (ValueError, IndexError) as err:
            raise StudioError(f"candidate {choice!r} is no longer available; run Detect again") from err
        obj_id = next_object_id(session)
        idx = cand["frame"]
        tracker.add_prompt(session.tracker_state, obj_id, idx, box=cand["box"], name=cand["label"])
        session.object_names[obj_id] = cand["label"]
    return preview_frame(engines, session, idx)


def next_object_id(session: Session) -> int:
    used = set(session.object_names)
    if session.tracker_state is not None:
        used |= set(session.tracker_state.objects)
    return max(used, default=0) + 1


def click(
    engines: Engines, session: Session, frame_idx: int, x: float, y: float, positive: bool, obj_id: int | None
) -> tuple[np.ndarray, int]:
    """Add a positive/negative click for an object (None = a new object) and return the refined frame preview."""
    tracker = require_tracker(engines, session)
    idx = frame_index(session, frame_idx)
    if obj_id is None:
        if not positive:
            raise StudioError("a new object starts with a positive click on it; switch the click type to '+'")
        obj_id = next_object_id(session)
        session.object_names[obj_id] = f"object {obj_id}"
    obj_id = int(obj_id)
    try:
        tracker.add_prompt(
            session.tracker_state,
            obj_id,
            idx,
            points=[[float(x), float(y)]],
            labels=[1 if positive else 0],
            name=session.object_names.get(obj_id),
        )
    except ValueError as err:
        if obj_id not in session.tracker_state.objects:
            session.object_names.pop(obj_id, None)
        raise StudioError(str(err)) from err
    session.points.setdefault(obj_id, []).append((idx, float(x), float(y), 1 if positive else 0))
    return preview_frame(engines, session, idx), obj_id


def current_masks(engines: Engines, session: Session) -> Any:
    """The masks as the tracker holds them now (prompted frames and propagated ones), or imported masks."""
    if session.tracker_state is not None and session.tracker_state.objects:
        return engines.tracker.result(session.tracker_state)
    return session.masks


def preview_frame(engines: Engines, session: Session, frame_idx: int) -> np.ndarray:
    """One frame with every object's mask, its clicks and boxes drawn: uint8 [H, W, 3]."""
    idx = frame_index(session, frame_idx)
    frame = session.frames[idx]
    out = frame.copy()
    state = session.tracker_state
    if state is not None and state.objects:
        from mvideo_core.masks import color_for_id

        alpha = 0.5
        for obj_id, obj in state.objects.items():
            mask = obj.masks[idx]
            if mask.any():
                color = np.array(color_for_id(obj_id), dtype=np.float32)
                out[mask] = (out[mask] * (1 - alpha) + color * alpha).astype(np.uint8)
                _label(out, mask, session.object_names.get(obj_id, obj.name), color_for_id(obj_id))
            prompt = obj.prompts.get(idx)
            if prompt is not None and prompt.box is not None:
                x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
                cv2.rectangle(out, (x0, y0), (x1, y1), color_for_id(obj_id), 2)
    elif session.masks is not None:
        from mvideo_core.masks import render_overlay

        sub = _frame_slice(session.masks, idx)
        out = render_overlay(frame[None], sub, alpha=0.5, labels=True)[0]
    for pts in session.points.values():
        for f, x, y, lab in pts:
            if f == idx:
                color = (40, 220, 40) if lab else (230, 30, 30)
                cv2.circle(out, (int(x), int(y)), 6, (255, 255, 255), -1)
                cv2.circle(out, (int(x), int(y)), 4, color, -1)
    return out


def _frame_slice(maskset: Any, idx: int) -> Any:
    from mvideo_core.masks import MaskSet

    return MaskSet(maskset.masks[:, idx : idx + 1], maskset.fps, list(maskset.ids), list(maskset.names))


def _label(img: np.ndarray, mask: np.ndarray, text: str, color: tuple[int, int, int]) -> None:
    ys, xs = np.nonzero(mask)
    x, y = int(xs.min()), max(12, int(ys.min()) - 4)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, tuple(int(c) for c in color), 1, cv2.LINE_AA)


def draw_candidates(frame: np.ndarray, candidates: list[dict[str, Any]]) -> np.ndarray:
    """Numbered candidate boxes on a copy of the frame."""
    from mvideo_core.masks import color_for_id

    out = frame.copy()
    for i, cand in enumerate(candidates):
        x0, y0, x1, y1 = (int(round(v)) for v in cand["box"])
        color = color_for_id(i + 1)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, 2)
        cv2.putText(out, f"{i + 1}: {cand['label']}", (x0 + 2, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    color, 1, cv2.LINE_AA)  # fmt: skip
    return out


def propagate(engines: Engines, session: Session, progress: Callable[[int, int, str], None] | None = None) -> str:
    """Carry every prompt through the video (both ways), autosave the masks and write the overlay preview."""
    from mvideo_core.extraction.base import ExtractionCancelled

    tracker = require_tracker(engines, session)
    if not session.tracker_state.objects:
        raise StudioError("add an object first: detect it by text or click on it")
    session.cancel.clear()
    try:
        masks = tracker.propagate(session.tracker_state, progress=progress, cancel=session.cancel, show_progress=False)
    except ExtractionCancelled as err:
        if err.partial is not None:
            _store_masks(session, err.partial)
        raise StudioError(f"stopped: {err}") from err
    _store_masks(session, masks)
    return overlay_video(session)


def _store_masks(session: Session, masks: Any) -> None:
    names = [session.object_names.get(i, n) for i, n in zip(masks.ids, masks.names)]
    masks.names = names
    session.masks = masks
    session.edited = None
    session.edited_key = None
    autosave_masks(session)


def autosave_masks(session: Session) -> None:
    """Write the masks to the project; a failed autosave is logged and never loses the in-memory masks."""
    if session.project is None or session.masks is None:
        return
    try:
        session.project.save_masks(session.masks)
    except (ImportError, OSError, ValueError) as err:
        logger.warning("autosave of masks failed: %s", err)


def overlay_video(session: Session, masks: Any = None, name: str = "masks_overlay.mp4") -> str:
    """Overlay preview video of the masks on the source, inside the project folder."""
    from editing.preview import preview_video
    from mvideo_core.video_io import write_clip

    masks = masks if masks is not None else session.masks
    if masks is None:
        raise StudioError("no masks yet: propagate first")
    frames = _match_length(require_video(session), masks.num_frames)
    return str(write_clip(session.project.output_path(name), preview_video(masks, frames), masks.fps))


def _match_length(frames: np.ndarray, t: int) -> np.ndarray:
    """Frames [T', H, W, 3] cut or looped to T frames (edited masks may be longer than the source)."""
    if len(frames) >= t:
        return frames[:t]
    return frames[np.arange(t) % len(frames)]


def objects_table(session: Session) -> list[list[Any]]:
    """Rows [id, name, colour, frames tracked (or with a mask, for imported masks)] for the object list."""
    from mvideo_core.masks import color_for_id

    def hexcolor(obj_id: int) -> str:
        return "#{:02x}{:02x}{:02x}".format(*color_for_id(obj_id))

    rows = []
    state = session.tracker_state
    if state is not None and state.objects:
        for obj_id, obj in sorted(state.objects.items()):
            name = session.object_names.get(obj_id, obj.name)
            rows.append([obj_id, name, hexcolor(obj_id), int(np.count_nonzero(obj.done))])
    elif session.masks is not None:
        for k, obj_id in enumerate(session.masks.ids):
            present = int(session.masks.masks[k].any(axis=(1, 2)).sum())
            rows.append([obj_id, session.masks.names[k], hexcolor(obj_id), present])
    return rows


def object_choices(session: Session) -> list[tuple[str, str]]:
    """Dropdown choices (label, value) for 'which object a click refines'; 'new' starts a new object."""
    return [("new object", "new")] + [(f"{r[0]}: {r[1]}", str(r[0])) for r in objects_table(session)]


def delete_object(engines: Engines, session: Session, obj_id: Any) -> None:
    if obj_id in (None, "", "new"):
        raise StudioError("choose the object to delete in the object list")
    obj_id = int(obj_id)
    state = session.tracker_state
    if state is not None and obj_id in state.objects:
        engines.tracker.remove_object(state, obj_id)
    elif session.masks is not None and obj_id in session.masks.ids:
        session.masks = session.masks.without_object(obj_id)
    else:
        raise StudioError(f"there is no object {obj_id}")
    session.object_names.pop(obj_id, None)
    session.points.pop(obj_id, None)
    if state is not None:
        session.masks = engines.tracker.result(state) if state.objects else None
    autosave_masks(session)


def rename_object(session: Session, obj_id: Any, name: str) -> None:
    if obj_id in (None, "", "new"):
        raise StudioError("choose the object to rename in the object list")
    name = (name or "").strip()
    if not name:
        raise StudioError("type a name for the object")
    session.object_names[int(obj_id)] = name
    state = session.tracker_state
    if state is not None and int(obj_id) in state.objects:
        state.objects[int(obj_id)].name = name


def export_masks(session: Session, fmt: str) -> str:
    """Write the masks in one of the formats (PNG zip, npz, label mp4, COCO RLE json) into the project."""
    from mvideo_core.masks import save_masks

    if session.masks is None:
        raise StudioError("no masks to export yet: propagate (or import masks) first")
    ext = MASK_FORMATS.get(fmt, fmt)
    if ext not in MASK_FORMATS.values():
        raise StudioError(f"unknown mask format {fmt!r}; choose one of {', '.join(MASK_FORMATS)}")
    path = session.project.output_path(f"masks.{ext}")
    return str(save_masks(session.masks, path, format=ext))


def read_mask_file(engines: Engines, path: str | Path | None) -> Any:
    """Load a mask file in any supported format and bring it to the model's fps and the working size."""
    from mvideo_core.masks import MaskError, load_masks

    if path is None or str(path) == "":
        raise StudioError("choose a mask file (.zip, .npz, .mp4 or .json)")
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise StudioError(f"{path.name} is empty or missing; upload the mask file again")
    try:
        masks = load_masks(path, fps=engines.settings.model_fps)
    except (MaskError, ValueError, OSError) as err:
        raise StudioError(f"{path.name} could not be read as masks: {err}") from err
    return fit_masks(engines, masks)


def fit_masks(engines: Engines, masks: Any) -> Any:
    """Masks resampled to the model's fps and resized to the working size (nearest)."""
    from mvideo_core.masks import MaskSet
    from mvideo_core.video_io import resample_fps, resize_masks

    s = engines.settings
    data = masks.masks
    fps = masks.fps
    if abs(fps - s.model_fps) > 1e-6:
        data = np.stack([resample_fps(m[..., None], fps, s.model_fps)[..., 0] for m in data]) if len(data) else data
        fps = s.model_fps
    if tuple(data.shape[2:]) != tuple(s.work_size):
        data = np.stack([resize_masks(m, s.work_size, fit="crop") for m in data])
    return MaskSet(data, fps, list(masks.ids), list(masks.names), dict(masks.meta))


def import_masks(engines: Engines, session: Session, path: str | Path | None) -> str:
    """Replace the session's masks with a mask file (the tracker's prompts are kept aside)."""
    require_video(session)
    masks = read_mask_file(engines, path)
    ensure_project(engines, session)
    if engines.tracker is not None:
        session.tracker_state = engines.tracker.start(session.frames, session.fps)
    session.points = {}
    session.object_names = dict(zip(masks.ids, masks.names))
    _store_masks(session, masks)
    return overlay_video(session)


def tracker_banner(engines: Engines) -> str:
    return (
        f"**Tracker:** {engines.tracker_status}  \n**Text detection:** {engines.grounder_status}  \n"
        f"**Generator:** {engines.generation_status}"
    )


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def generation_explanation(engines: Engines) -> str:
    """Why Generate cannot run here, with the flags that fix it."""
    return (
        f"Generation is unavailable: {engines.generation_status}. "
        "Point the studio at the weights with --base-model (CogVideoX hub id or folder) and --mvideo-weights "
        "(MVideo .safetensors), on a machine with a CUDA GPU (--device cuda); or try the whole flow with "
        "--tiny-random (tiny random-weight models on CPU, noise output)."
    )


def reopen_project(engines: Engines, session: Session, project_id: str) -> str | None:
    """Reopen an autosaved project: source video, masks, extra layers and the edit come back.

    Returns the video step's info (None when the project has no video yet)."""
    from editing.recipe import UndoStack
    from mvideo_core.masks import load_masks

    try:
        project = open_project(engines.settings.projects_dir, project_id)
    except ProjectError as err:
        raise StudioError(str(err)) from err
    session.project = project
    session.reset_video()
    session.extra_sources, session.undo = {}, None
    src = project.source_path()
    if src is None:
        return None
    trim = project.meta().get("trim") or [0.0, None]
    summary = load_video(engines, session, src, trim[0], trim[1])
    masks = project.load_masks()
    if masks is not None:
        session.object_names = dict(zip(masks.ids, masks.names))
        session.masks = masks
    for path in sorted(project.outputs_dir.glob("layer_*.npz")):
        session.extra_sources[path.stem.removeprefix("layer_")] = load_masks(path)
    recipe = project.load_recipe()
    if recipe is not None and masks is not None:
        try:
            _render(session, recipe)
            session.undo = UndoStack(recipe)
        except ValueError as err:  # an edit that no longer renders is left on disk, not loaded
            logger.warning("project %s: saved recipe not restored: %s", project.project_id, err)
    return summary.info


# -- step 3: edit ------------------------------------------------------------------------------------------------
MAIN_SOURCE = "video"
TERRAINS = ("flat", "uphill", "downhill", "arc", "stairs")


def edit_sources(session: Session) -> dict[str, Any]:
    """Recipe source name -> MaskSet: the extracted masks ("video") plus layers added from mask files/samples."""
    sources = dict(session.extra_sources)
    if session.masks is not None:
        sources[MAIN_SOURCE] = session.masks
    return sources


def start_edit(engines: Engines, session: Session, reset: bool = False) -> dict[str, Any]:
    """The current recipe; the first call (or `reset`) starts from one layer per extracted object."""
    from editing.recipe import UndoStack, recipe_from_maskset

    if session.undo is not None and session.undo.current is not None and not reset:
        return session.undo.current
    if session.masks is None or session.masks.num_objects == 0:
        raise StudioError("no masks to edit yet: extract them in step 2 (Propagate) or import a mask file")
    recipe = recipe_from_maskset(MAIN_SOURCE, session.masks)
    if session.undo is None or reset:
        session.undo = UndoStack(recipe)
    else:
        session.undo.push(recipe)
    _autosave_recipe(session)
    return session.undo.current


def _autosave_recipe(session: Session) -> None:
    if session.project is not None and session.undo is not None and session.undo.current is not None:
        session.project.save_recipe(session.undo.current)


def _push(engines: Engines, session: Session, recipe: dict[str, Any]) -> dict[str, Any]:
    """Validate by rendering, then record the edit (a failing edit leaves the history unchanged)."""
    from editing.recipe import RecipeError

    try:
        rendered = _render(session, recipe)
    except (RecipeError, ValueError) as err:
        raise StudioError(f"that edit cannot be applied: {err}") from err
    current = session.undo.push(recipe)
    session.edited, session.edited_key = rendered, to_json(current)
    _autosave_recipe(session)
    return current


def _render(session: Session, recipe: dict[str, Any]) -> Any:
    from editing.recipe import render

    return render(recipe, edit_sources(session))


def edited_masks(engines: Engines, session: Session) -> Any:
    """The masks the recipe renders to (cached per recipe); the model's condition comes from these."""
    recipe = start_edit(engines, session)
    key = to_json(recipe)
    if session.edited is None or session.edited_key != key:
        try:
            session.edited = _render(session, recipe)
        except ValueError as err:
            raise StudioError(f"the recipe cannot be rendered: {err}") from err
        session.edited_key = key
    return session.edited


def _layer(recipe: dict[str, Any], layer_id: Any) -> dict[str, Any]:
    if layer_id in (None, ""):
        raise StudioError("choose a layer first")
    for lay in recipe["layers"]:
        if str(lay.get("id")) == str(layer_id).split(":")[0]:
            return lay
    raise StudioError(f"there is no layer {layer_id}; layers: {[lay.get('id') for lay in recipe['layers']]}")


def recipe_summary(recipe: dict[str, Any]) -> str:
    """One line per layer: what the edit does, e.g. `1 object 1: zoom/pan (2 keys), terrain uphill`."""
    lines = []
    for lay in recipe["layers"]:
        parts = []
        for op in lay.get("ops", []):
            if op["op"] == "transform":
                parts.append(f"zoom/pan ({len(op['keys'])} keys)")
            elif op["op"] == "terrain":
                parts.append(f"terrain {op['profile']} {op.get('rise', 0.25):+g}")
            else:
                parts.append(op["op"])
        for op in lay.get("timeline", []):
            parts.append(op["op"])
        if lay.get("start"):
            parts.append(f"starts at {lay['start']:g} s")
        if lay.get("speed", 1.0) != 1.0:
            parts.append(f"speed x{lay['speed']:g}")
        lines.append(f"- layer {lay['id']} ({lay.get('name', lay['source'])}): {', '.join(parts) or 'as extracted'}")
    return "\n".join(lines)


def layer_choices(session: Session) -> list[tuple[str, str]]:
    recipe = session.undo.current if session.undo is not None else None
    if not recipe:
        return []
    return [(f"{lay['id']}: {lay.get('name', lay['source'])}", str(lay["id"])) for lay in recipe["layers"]]


def recipe_duration(recipe: dict[str, Any]) -> float:
    return recipe["target"]["num_frames"] / recipe["target"]["fps"]


def add_keyframe(
    engines: Engines,
    session: Session,
    layer_id: Any,
    t: float,
    scale: float = 1.0,
    x: float = 0.0,
    y: float = 0.0,
    rotate: float = 0.0,
    ease: str = "linear",
    anchor: str = "centroid",
) -> dict[str, Any]:
    """Add (or replace, at the same time) a zoom/pan/rotate keyframe on a layer; an identity key starts at 0 s."""
    recipe = start_edit(engines, session)
    lay = _layer(recipe, layer_id)
    duration = recipe_duration(recipe)
    t = float(t or 0.0)
    if not 0 <= t <= duration + 1e-9:
        raise StudioError(f"keyframe time {t:g} s is outside the edit's 0..{duration:.2f} s")
    if not scale or scale <= 0:
        raise StudioError(f"zoom must be > 0 (1 = unchanged, 2 = twice as large), got {scale}")
    ops = lay.setdefault("ops", [])
    op = next((o for o in ops if o["op"] == "transform"), None)
    if op is None:
        op = {"op": "transform", "anchor": anchor, "keys": []}
        ops.insert(0, op)
        if t > 0:
            op["keys"].append({"t": 0.0, "scale": 1.0, "x": 0.0, "y": 0.0, "rotate": 0.0})
    op["anchor"] = anchor
    key = {"t": t, "scale": float(scale), "x": float(x or 0), "y": float(y or 0), "rotate": float(rotate or 0)}
    key["ease"] = ease
    op["keys"] = sorted([k for k in op["keys"] if abs(k["t"] - t) > 1e-9] + [key], key=lambda k: k["t"])
    return _push(engines, session, recipe)


def clear_keyframes(engines: Engines, session: Session, layer_id: Any) -> dict[str, Any]:
    recipe = start_edit(engines, session)
    lay = _layer(recipe, layer_id)
    lay["ops"] = [o for o in lay.get("ops", []) if o["op"] != "transform"]
    return _push(engines, session, recipe)


def set_terrain(
    engines: Engines, session: Session, layer_id: Any, profile: str, rise: float, tilt: float = 0.0
) -> dict[str, Any]:
    """Replace the layer's terrain warp (`flat` removes it); `rise` is the climb as a fraction of frame height."""
    if profile not in TERRAINS:
        raise StudioError(f"terrain must be one of {', '.join(TERRAINS)}, got {profile!r}")
    recipe = start_edit(engines, session)
    lay = _layer(recipe, layer_id)
    ops = [o for o in lay.get("ops", []) if o["op"] != "terrain"]
    if profile != "flat":
        ops.append({"op": "terrain", "profile": profile, "rise": float(rise), "tilt": float(tilt or 0.0)})
    lay["ops"] = ops
    return _push(engines, session, recipe)


def set_timing(
    engines: Engines, session: Session, layer_id: Any, start: float, speed: float, retime_seconds: float = 0.0
) -> dict[str, Any]:
    """Layer time offset (s), playback speed, and optionally retime its motion to a duration (loops to fill)."""
    recipe = start_edit(engines, session)
    lay = _layer(recipe, layer_id)
    if not speed or speed <= 0:
        raise StudioError(f"speed must be > 0 (1 = as filmed, 2 = twice as fast), got {speed}")
    lay["start"] = float(start or 0.0)
    lay["speed"] = float(speed)
    timeline_ops = [o for o in lay.get("timeline", []) if o["op"] != "retime"]
    if retime_seconds and retime_seconds > 0:
        timeline_ops.append({"op": "retime", "duration": float(retime_seconds), "mode": "loop"})
    lay["timeline"] = timeline_ops
    return _push(engines, session, recipe)


def set_length(engines: Engines, session: Session, seconds: float) -> dict[str, Any]:
    """Length of the edited motion in seconds (frames = seconds * fps + 1; layers loop to fill it)."""
    recipe = start_edit(engines, session)
    if not seconds or seconds <= 0 or seconds > engines.settings.max_seconds * 4:
        raise StudioError(f"length must be between 0 and {engines.settings.max_seconds * 4:g} s, got {seconds}")
    fps = recipe["target"]["fps"]
    recipe["target"]["num_frames"] = int(round(seconds * fps)) + 1
    for lay in recipe["layers"]:
        lay.setdefault("extend", "loop")
    return _push(engines, session, recipe)


def undo(engines: Engines, session: Session) -> dict[str, Any]:
    start_edit(engines, session)
    if not session.undo.can_undo:
        raise StudioError("nothing to undo")
    recipe = session.undo.undo()
    _autosave_recipe(session)
    return recipe


def redo(engines: Engines, session: Session) -> dict[str, Any]:
    start_edit(engines, session)
    if not session.undo.can_redo:
        raise StudioError("nothing to redo")
    recipe = session.undo.redo()
    _autosave_recipe(session)
    return recipe


def edit_preview_frame(engines: Engines, session: Session, frame_idx: Any) -> np.ndarray:
    """One frame of the edited masks over the source video: uint8 [H, W, 3] (live preview while scrubbing)."""
    from editing.preview import preview_frame as _preview

    masks = edited_masks(engines, session)
    idx = min(max(int(frame_idx or 0), 0), masks.num_frames - 1)
    background = _match_length(require_video(session), masks.num_frames)
    return _preview(masks, idx, background[idx])


def edit_preview_video(engines: Engines, session: Session) -> str:
    """The whole edited motion as an overlay video in the project folder."""
    from editing.preview import preview_video
    from mvideo_core.video_io import write_clip

    masks = edited_masks(engines, session)
    frames = preview_video(masks, _match_length(require_video(session), masks.num_frames))
    return str(write_clip(session.project.output_path("edit_preview.mp4"), frames, masks.fps))


def add_layer_from_masks(engines: Engines, session: Session, masks: Any, name: str) -> dict[str, Any]:
    """A new layer (all objects of `masks` as one subject) from another source; it keeps its own motion."""
    recipe = start_edit(engines, session)
    source = f"{_safe_name(name)}"
    n = 2
    while source in edit_sources(session) or source == MAIN_SOURCE:
        source = f"{_safe_name(name)}_{n}"
        n += 1
    session.extra_sources[source] = masks
    _save_extra_source(session, source, masks)
    new_id = max((lay.get("id", 0) for lay in recipe["layers"]), default=0) + 1
    recipe["layers"].append(
        {
            "id": new_id,
            "name": name,
            "source": source,
            "object": "all",
            "z": max((lay.get("z", 0) for lay in recipe["layers"]), default=0) + 1,
            "extend": "loop",
            "timeline": [],
            "ops": [],
        }
    )
    try:
        return _push(engines, session, recipe)
    except StudioError:
        session.extra_sources.pop(source, None)
        raise


def add_layer_from_file(engines: Engines, session: Session, path: str | Path | None) -> dict[str, Any]:
    masks = read_mask_file(engines, path)
    return add_layer_from_masks(engines, session, masks, Path(path).stem)


def add_layer_from_project(engines: Engines, session: Session, project_id: str) -> dict[str, Any]:
    """A layer from the masks extracted in another project (another uploaded video): a subject with its own motion."""
    try:
        other = open_project(engines.settings.projects_dir, project_id)
    except ProjectError as err:
        raise StudioError(str(err)) from err
    masks = other.load_masks()
    if masks is None or masks.num_objects == 0:
        raise StudioError(f"project {other.project_id} has no extracted masks yet; propagate there first")
    masks = fit_masks(engines, masks)
    return add_layer_from_masks(engines, session, masks, f"from {other.project_id[-6:]}")


def add_layer_from_sample(engines: Engines, session: Session, name: str) -> dict[str, Any]:
    """A layer from a sample's ground-truth masks (a second subject with its own motion)."""
    from mvideo_core.samples import load_sample as _load

    if not name:
        raise StudioError("pick a sample first")
    _video, masks = _load(name)
    masks = fit_masks(engines, masks)
    return add_layer_from_masks(engines, session, masks, name)


def _save_extra_source(session: Session, source: str, masks: Any) -> None:
    """Autosave a layer's source masks as `outputs/layer_<source>.npz` (reopened with the project)."""
    if session.project is None:
        return
    from mvideo_core.masks import save_masks

    save_masks(masks, session.project.output_path(f"layer_{source}.npz"), format="npz")


def recipe_file(engines: Engines, session: Session) -> str:
    """The current recipe as a JSON file to download."""
    from editing.recipe import save

    recipe = start_edit(engines, session)
    return str(save(recipe, session.project.output_path("recipe.json")))


def load_recipe_file(engines: Engines, session: Session, path: str | Path | None) -> dict[str, Any]:
    """Replace the edit with an uploaded recipe (validated against this session's sources first)."""
    from editing.recipe import RecipeError, load

    if path is None or str(path) == "":
        raise StudioError("choose a recipe .json file")
    start_edit(engines, session)
    try:
        recipe = load(path)
    except RecipeError as err:
        raise StudioError(f"{Path(path).name} is not a usable recipe: {err}") from err
    return _push(engines, session, recipe)


# -- step 4: generate --------------------------------------------------------------------------------------------
@dataclass
class GenerationUpdate:
    """One step of a streamed generation: a newly finished clip, all clips so far, and at the end the outputs."""

    status: str
    clip: str | None = None
    clips: tuple[str, ...] = ()
    final: str | None = None
    record: str | None = None


@dataclass
class GenerationRequest:
    """The Generate form, checked."""

    prompt: str
    negative_prompt: str
    seconds: int
    steps: int
    guidance: float
    seed: int
    start_image: np.ndarray | None = None
    mask_guidance: float = 1.0  # the pipeline's push towards the masks; 1 = off


def check_generation(
    engines: Engines,
    prompt: str,
    negative_prompt: str = "",
    seconds: float = 4,
    steps: float | None = None,
    guidance: float | None = None,
    seed: float | None = 0,
    start_image: np.ndarray | None = None,
    mask_guidance: float | None = None,
) -> GenerationRequest:
    """Validate the form with messages that say which field is wrong; also explains a missing generator."""
    s = engines.settings
    if engines.generator is None:
        raise StudioError(generation_explanation(engines))
    prompt = (prompt or "").strip()
    if not prompt:
        raise StudioError(
            "write a prompt: what the video should show, e.g. 'an astronaut doing a backflip on the moon'"
        )
    step = s.clip_seconds
    try:
        seconds_f = float(seconds)
    except (TypeError, ValueError) as err:
        raise StudioError(f"length must be a number of seconds, got {seconds!r}") from err
    if seconds_f < step or abs(seconds_f / step - round(seconds_f / step)) > 1e-6:
        raise StudioError(
            f"length must be a whole number of {step:g} s clips ({step:g}, {2 * step:g}, ...), got {seconds}"
        )
    steps = s.default_steps if steps in (None, "") else steps
    if not float(steps).is_integer() or not 1 <= int(steps) <= 500:
        raise StudioError(f"steps must be a whole number in 1..500, got {steps}")
    guidance = s.default_guidance if guidance in (None, "") else float(guidance)
    if not 0 <= guidance <= 30:
        raise StudioError(f"guidance must be in 0..30 (6 is typical; 0 or 1 turns it off), got {guidance}")
    try:
        seed_i = int(seed or 0)
    except (TypeError, ValueError) as err:
        raise StudioError(f"seed must be a whole number, got {seed!r}") from err
    try:
        mask_guidance_f = 1.0 if mask_guidance in (None, "") else float(mask_guidance)
    except (TypeError, ValueError):
        mask_guidance_f = float("nan")
    if not 1 <= mask_guidance_f <= 10:
        raise StudioError(
            f"mask guidance must be in 1..10 (1 = off, 2 pushes the video towards the masks), got {mask_guidance!r}"
        )
    if start_image is not None:
        start_image = np.asarray(start_image)
        if start_image.ndim != 3 or start_image.shape[-1] not in (3, 4) or start_image.dtype != np.uint8:
            raise StudioError(f"the start image must be an RGB picture, got an array of shape {start_image.shape}")
        start_image = start_image[..., :3]
    return GenerationRequest(prompt, (negative_prompt or "").strip(), int(round(seconds_f)), int(steps), guidance,
                             seed_i, start_image, mask_guidance_f)  # fmt: skip


def condition_masks(engines: Engines, session: Session) -> Any | None:
    """The motion condition: the edited masks when an edit exists, else the extracted ones; None = text only."""
    if session.undo is not None and session.undo.current is not None:
        return edited_masks(engines, session)
    return session.masks


def model_masks(engines: Engines, masks: Any, num_frames: int) -> np.ndarray:
    """The union of `masks` at the model's size, looped or cut to `num_frames`: bool [F, H, W]."""
    from mvideo_core.video_io import resize_masks

    union = masks.union()  # bool [T, H, W]
    if tuple(union.shape[1:]) != tuple(engines.settings.model_size):
        union = resize_masks(union, engines.settings.model_size, fit="crop")
    return union[np.arange(num_frames) % len(union)]


def generation_dir(session: Session, form: GenerationRequest, masks: np.ndarray | None) -> Path:
    """One folder per distinct generation; the same settings reuse it, so a stopped run resumes its clips."""
    import hashlib

    fields = [form.prompt, form.negative_prompt, form.seconds, form.steps, form.guidance, form.seed]
    if form.mask_guidance != 1.0:  # only when on: folders made before the setting existed keep their name
        fields.append(form.mask_guidance)
    h = hashlib.sha1(to_json(fields).encode())
    for extra in (masks, form.start_image):
        h.update(b"-" if extra is None else np.ascontiguousarray(extra).tobytes())
    return session.project.root / "generations" / h.hexdigest()[:12]


def generate(engines: Engines, session: Session, form: GenerationRequest) -> Iterator[GenerationUpdate]:
    """Stream a generation: one update per finished clip (its mp4 already on disk), then the final outputs."""
    from mvideo_core.long_video import ClipResult, generate_long_video, num_clips_for

    ensure_project(engines, session)
    masks = condition_masks(engines, session)
    num_clips = num_clips_for(form.seconds)
    union = None if masks is None else model_masks(engines, masks, 32 * num_clips + 1)
    out_dir = generation_dir(session, form, union)
    h, w = engines.settings.model_size
    what = "following your masks" if union is not None else "from text only (no masks yet)"
    noise = " (tiny random model: NOISE)" if engines.settings.tiny_random else ""
    yield GenerationUpdate(f"Generating {num_clips} clip(s) {what}{noise}…")
    session.cancel.clear()
    clips: list[str] = []
    try:
        stream = generate_long_video(
            engines.generator,
            form.prompt,
            out_dir=out_dir,
            seconds=form.seconds,
            masks=union,
            mask_fps=engines.settings.model_fps,
            negative_prompt=form.negative_prompt or None,
            seed=form.seed,
            num_inference_steps=form.steps,
            guidance_scale=form.guidance,
            mask_guidance_scale=form.mask_guidance if union is not None else 1.0,  # no masks: nothing to push towards
            height=h,
            width=w,
            start_image=form.start_image,
            cancel=session.cancel,
        )
        for item in stream:
            if isinstance(item, ClipResult):
                clips.append(str(item.path))
                resumed = " (resumed from disk)" if item.resumed else ""
                yield GenerationUpdate(
                    f"Clip {item.index + 1} of {item.num_clips} finished{resumed}{noise}",
                    clip=str(item.path),
                    clips=tuple(clips),
                )
            else:
                session.project.update_meta(last_generation=str(out_dir.relative_to(session.project.root)))
                yield GenerationUpdate(
                    f"Done: {len(clips)} clip(s), {item.num_frames} frames at {item.fps:g} fps{noise}. "
                    f"Saved in project {session.project.project_id}.",
                    clips=tuple(clips),
                    final=str(item.path),
                    record=str(item.generation_json),
                )
                return
    except ValueError as err:
        raise StudioError(f"generation failed: {err}") from err
    yield GenerationUpdate(
        f"Stopped after {len(clips)} finished clip(s); they are kept, and Generate with the same settings resumes.",
        clips=tuple(clips),
    )
