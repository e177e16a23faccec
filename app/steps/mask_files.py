"""Mask files in and out of step 2: export in every format, import (replacing the masks), fit to the studio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.engines import Engines
from app.sessions import Session
from app.steps.common import StudioError, ensure_project, require_video
from app.steps.masks import overlay_video, save_objects, store_masks
from mvideo_core.masks import MASK_FORMAT_LABELS, MaskError, MaskSet, load_masks, save_masks
from mvideo_core.video_io import resample_fps, resize_masks

MASK_FORMATS = MASK_FORMAT_LABELS  # the menu is the core's list, not a copy


def export_masks(session: Session, fmt: str) -> str:
    """Write the masks in one of the formats (PNG zip, npz, label mp4, COCO RLE json) into the project."""
    if session.masks is None or session.project is None:
        raise StudioError("no masks to export yet: propagate (or import masks) first")
    ext = MASK_FORMATS.get(fmt, fmt)
    if ext not in MASK_FORMATS.values():
        raise StudioError(f"unknown mask format {fmt!r}; choose one of {', '.join(MASK_FORMATS)}")
    path = session.project.output_path(f"masks.{ext}")
    return str(save_masks(session.masks, path, format=ext))


def read_mask_file(engines: Engines, path: str | Path | None) -> MaskSet:
    """Load a mask file in any supported format and bring it to the model's fps and the working size."""
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


def fit_masks(engines: Engines, masks: MaskSet) -> MaskSet:
    """Masks resampled to the model's fps and resized to the working size (nearest)."""
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
    frames = require_video(session)
    masks = read_mask_file(engines, path)
    ensure_project(engines, session)
    if engines.tracker is not None:
        session.tracker_state = engines.tracker.start(frames, session.fps)
    session.points = {}
    session.object_names = dict(zip(masks.ids, masks.names))
    store_masks(session, masks)
    save_objects(session)
    return overlay_video(session)
