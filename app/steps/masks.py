"""Step 2, the masks: detect by text, click to add or refine objects, propagate, and manage the object list."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from app.engines import Engines
from app.sessions import Candidate, Session
from app.steps.common import StudioError, frame_index, match_length, require_tracker, require_video
from editing.preview import preview_video
from mvideo_core.extraction import ExtractionCancelled
from mvideo_core.masks import MaskSet, color_for_id, render_overlay
from mvideo_core.video_io import write_clip

logger = logging.getLogger(__name__)

MAX_CANDIDATES = 10  # boxes offered after a text query, best scores first


def detect(engines: Engines, session: Session, text: str, frame_idx: int) -> tuple[np.ndarray, list[str]]:
    """Text -> candidate boxes on one frame; returns the frame with numbered boxes and the choice labels."""
    idx = frame_index(session, frame_idx)
    phrases = [p.strip() for p in (text or "").replace(",", ".").split(".") if p.strip()]
    if not phrases:
        raise StudioError('type what to track, e.g. "person . dog" (phrases separated by dots)')
    if engines.grounder is None:
        raise StudioError(f"text detection is unavailable ({engines.grounder_status}); click on the object instead")
    frames = require_video(session)
    dets = engines.grounder.detect(frames[idx], phrases)
    best = np.argsort(-dets.scores, kind="stable")[:MAX_CANDIDATES]
    session.candidates = [
        Candidate(box=[float(v) for v in dets.boxes[i]], score=float(dets.scores[i]), label=dets.labels[i], frame=idx)
        for i in best
    ]
    if not session.candidates:
        raise StudioError(
            f"nothing matching {' . '.join(phrases)} was found on frame {idx}; try another frame or click"
        )
    return draw_candidates(frames[idx], session.candidates), candidate_choices(session)


def candidate_choices(session: Session) -> list[str]:
    return [f"{i + 1}: {c['label']} ({c['score']:.2f})" for i, c in enumerate(session.candidates)]


def draw_candidates(frame: np.ndarray, candidates: list[Candidate]) -> np.ndarray:
    """Numbered candidate boxes on a copy of the frame uint8 [H, W, 3]."""
    out = frame.copy()
    for i, cand in enumerate(candidates):
        x0, y0, x1, y1 = (int(round(v)) for v in cand["box"])
        color = color_for_id(i + 1)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, 2)
        cv2.putText(out, f"{i + 1}: {cand['label']}", (x0 + 2, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    color, 1, cv2.LINE_AA)  # fmt: skip
    return out


def add_candidates(engines: Engines, session: Session, chosen: list[str]) -> np.ndarray:
    """Turn the picked candidate boxes into tracked objects on their frame; returns that frame's overlay."""
    tracker, state = require_tracker(engines, session)
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
        tracker.add_prompt(state, obj_id, idx, box=cand["box"], name=cand["label"])
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
    tracker, state = require_tracker(engines, session)
    idx = frame_index(session, frame_idx)
    if obj_id is None:
        if not positive:
            raise StudioError("a new object starts with a positive click on it; switch the click type to '+'")
        obj_id = next_object_id(session)
        session.object_names[obj_id] = f"object {obj_id}"
    obj_id = int(obj_id)
    try:
        tracker.add_prompt(
            state,
            obj_id,
            idx,
            points=[[float(x), float(y)]],
            labels=[1 if positive else 0],
            name=session.object_names.get(obj_id),
        )
    except ValueError as err:
        if obj_id not in state.objects:
            session.object_names.pop(obj_id, None)
        raise StudioError(str(err)) from err
    session.points.setdefault(obj_id, []).append((idx, float(x), float(y), 1 if positive else 0))
    return preview_frame(engines, session, idx), obj_id


def preview_frame(engines: Engines, session: Session, frame_idx: int) -> np.ndarray:
    """One frame with every object's mask, its clicks and boxes drawn: uint8 [H, W, 3]."""
    idx = frame_index(session, frame_idx)
    frame = require_video(session)[idx]
    out = frame.copy()
    state = session.tracker_state
    if state is not None and state.objects:
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
        sub = _frame_slice(session.masks, idx)
        out = render_overlay(frame[None], sub, alpha=0.5, labels=True)[0]
    for pts in session.points.values():
        for f, x, y, lab in pts:
            if f == idx:
                color = (40, 220, 40) if lab else (230, 30, 30)
                cv2.circle(out, (int(x), int(y)), 6, (255, 255, 255), -1)
                cv2.circle(out, (int(x), int(y)), 4, color, -1)
    return out


def _frame_slice(maskset: MaskSet, idx: int) -> MaskSet:
    return MaskSet(maskset.masks[:, idx : idx + 1], maskset.fps, list(maskset.ids), list(maskset.names))


def _label(img: np.ndarray, mask: np.ndarray, text: str, color: tuple[int, int, int]) -> None:
    ys, xs = np.nonzero(mask)
    x, y = int(xs.min()), max(12, int(ys.min()) - 4)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, tuple(int(c) for c in color), 1, cv2.LINE_AA)


def propagate(engines: Engines, session: Session, progress: Callable[[int, int, str], None] | None = None) -> str:
    """Carry every prompt through the video (both ways), autosave the masks and write the overlay preview."""
    tracker, state = require_tracker(engines, session)
    if not state.objects:
        raise StudioError("add an object first: detect it by text or click on it")
    session.cancel.clear()
    try:
        masks = tracker.propagate(state, progress=progress, cancel=session.cancel, show_progress=False)
    except ExtractionCancelled as err:
        if err.partial is not None:
            store_masks(session, err.partial)
        raise StudioError(f"stopped: {err}") from err
    store_masks(session, masks)
    return overlay_video(session)


def store_masks(session: Session, masks: MaskSet) -> None:
    """Make `masks` the session's extracted masks (named as the user named them) and autosave them."""
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


def overlay_video(session: Session, masks: MaskSet | None = None, name: str = "masks_overlay.mp4") -> str:
    """Overlay preview video of the masks on the source, inside the project folder."""
    masks = masks if masks is not None else session.masks
    if masks is None or session.project is None:
        raise StudioError("no masks yet: propagate first")
    frames = match_length(require_video(session), masks.num_frames)
    return str(write_clip(session.project.output_path(name), preview_video(masks, frames), masks.fps))


def objects_table(session: Session) -> list[list[Any]]:
    """Rows [id, name, colour, frames tracked (or with a mask, for imported masks)] for the object list."""

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
    if engines.tracker is not None and state is not None and obj_id in state.objects:
        engines.tracker.remove_object(state, obj_id)
    elif session.masks is not None and obj_id in session.masks.ids:
        session.masks = session.masks.without_object(obj_id)
    else:
        raise StudioError(f"there is no object {obj_id}")
    session.object_names.pop(obj_id, None)
    session.points.pop(obj_id, None)
    if engines.tracker is not None and state is not None:
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
