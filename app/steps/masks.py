"""Step 2, the masks: detect by text, click to add or refine objects, propagate, and manage the object list."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from app.engines import Engines
from app.sessions import Candidate, Session
from app.steps.common import StudioError, frame_index, match_length, plural, require_tracker, require_video
from editing.preview import preview_frame as preview_frame_of
from mvideo_core.extraction import ExtractionCancelled, Tracker, TrackerSession
from mvideo_core.extraction.base import Prompt, state_counts, state_report
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


def add_candidates(
    engines: Engines, session: Session, chosen: list[str], notes: list[str] | None = None
) -> np.ndarray:
    """Turn the picked candidate boxes into tracked objects on their frame; returns that frame's overlay.

    A box whose phrase names an object already prompted on other frames refines that object on this frame (as the
    extract CLI does with one phrase on several frames), not a second object of the same name; `notes` receives a
    line per kept box saying which."""
    tracker, state = require_tracker(engines, session)
    if not chosen:
        raise StudioError("tick at least one candidate box to keep")
    picked = []
    for choice in chosen:
        try:
            picked.append(session.candidates[int(str(choice).split(":")[0]) - 1])
        except (ValueError, IndexError) as err:
            raise StudioError(f"candidate {choice!r} is no longer available; run Detect again") from err
    idx, taken = 0, set()
    for cand in picked:
        idx = cand["frame"]
        obj_id = _object_to_refine(session, state, cand["label"], idx, cand["box"], taken)
        refines = obj_id is not None
        obj_id = next_object_id(session) if obj_id is None else obj_id
        taken.add(obj_id)
        tracker.add_prompt(state, obj_id, idx, box=cand["box"], name=cand["label"])
        session.object_names[obj_id] = cand["label"]
        if notes is not None:
            what = "refines object" if refines else "starts object"
            notes.append(f"The {cand['label']} box on frame {idx} {what} {obj_id} ({cand['label']}).")
    save_objects(session)
    return preview_frame(engines, session, idx)


def _object_to_refine(
    session: Session, state: TrackerSession, label: str, frame: int, box: list[float], taken: set[int]
) -> int | None:
    """The object a kept box of phrase `label` on `frame` refines (None: a new object), among those of that name not
    already given a box from this pick: the one whose mask on that frame lies mostly inside the box; else the only
    one of that name (the phrase names it: the box corrects where its mask went); else the first with no mask there
    (lost, or not tracked yet) and no prompt on that frame (a re-detection of a lost subject)."""
    same = [
        (obj_id, obj)
        for obj_id, obj in sorted(state.objects.items())
        if obj_id not in taken and session.object_names.get(obj_id, obj.name) == label
    ]
    masks = {obj_id: obj.masks[frame] for obj_id, obj in same if obj.done[frame]}
    overlap = {obj_id: _box_overlap(box, mask) for obj_id, mask in masks.items()}
    if overlap and max(overlap.values()) >= 0.5:
        return max(overlap, key=overlap.__getitem__)
    if len(same) == 1:
        return same[0][0]
    for obj_id, obj in same:
        if frame not in obj.prompts and (obj_id not in masks or not masks[obj_id].any()):
            return obj_id
    return None


def _box_overlap(box: list[float], mask: np.ndarray) -> float:
    """The share of `mask` inside `box` [x0, y0, x1, y1] (0 for an empty mask)."""
    area = int(mask.sum())
    if area == 0:
        return 0.0
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return float(mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)].sum()) / area


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
    save_objects(session)
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


class PropagationStopped(StudioError):
    """Stop was pressed: the frames finished so far are kept (and saved); Propagate again finishes the job."""


def propagate(engines: Engines, session: Session, progress: Callable[[int, int, str], None] | None = None) -> str:
    """Carry every prompt through the video (both ways), autosave the masks and write the overlay preview."""
    tracker, state = require_tracker(engines, session)
    if not state.objects:
        raise StudioError("add an object first: detect it by text or click on it")
    session.cancel.clear()
    session.propagating = True
    try:
        masks = tracker.propagate(state, progress=progress, cancel=session.cancel, show_progress=False)
    except ExtractionCancelled as err:
        if err.partial is not None:
            store_masks(session, err.partial)
        save_objects(session)
        raise PropagationStopped(f"stopped: {err}") from err
    finally:
        session.propagating = False
    store_masks(session, masks)
    save_objects(session)
    return overlay_video(session)


def propagated_status(engines: Engines, session: Session) -> str:
    """After propagation: how many objects over how many frames, with which tracker, and where each object was lost
    or is doubtful ("person: lost on frames 8-42: add a click there")."""
    masks = session.masks
    if masks is None:
        return "No masks: add an object first."
    tracker = getattr(engines.tracker, "name", None) or "mask"
    lines = [
        f"Propagated {plural(masks.num_objects, 'object')} over {masks.num_frames} frames with the {tracker} "
        "tracker; masks autosaved."
    ]
    for obj in object_states(session):
        name = session.object_names.get(obj["id"], obj["name"])
        lines += [f"- **{line}**" for line in state_report(name, obj["frames"])]
    return lines[0] + ("\n\n" + "\n".join(lines[1:]) if len(lines) > 1 else "")


def object_states(session: Session) -> list[dict[str, Any]]:
    """`[{"id", "name", "frames": [{"frame", "state", "score"}]}]`: from the tracker, else from the masks' file."""
    state = session.tracker_state
    if state is not None and state.objects:
        return [{"id": i, "name": o.name, "frames": o.frame_states()} for i, o in sorted(state.objects.items())]
    if session.masks is not None:
        return list(session.masks.meta.get("frame_states") or [])
    return []


# state -> RGB in the strip; frames no prompt reached yet are dark grey
STATE_COLOURS = {"prompted": (60, 120, 240), "tracked": (40, 170, 70), "uncertain": (240, 170, 30),
                 "lost": (220, 40, 40)}  # fmt: skip
STRIP_WIDTH, STRIP_ROW = 640, 14


def state_strip(session: Session) -> np.ndarray | None:
    """One row per object: a chip in its colour, then every frame coloured by its state (blue prompted, green
    tracked, amber uncertain, red lost, grey not reached). uint8 [rows * 16, 640 + 20, 3]; None without objects."""
    objects = object_states(session)
    frames = session.frames
    if not objects or frames is None:
        return None
    num = len(frames)
    rows = []
    for obj in objects:
        row = np.full((1, num, 3), 70, np.uint8)
        for f in obj["frames"]:
            if 0 <= f["frame"] < num:
                row[0, f["frame"]] = STATE_COLOURS.get(f["state"], (70, 70, 70))
        row = cv2.resize(row, (STRIP_WIDTH, STRIP_ROW), interpolation=cv2.INTER_NEAREST)
        chip = np.empty((STRIP_ROW, 16, 3), np.uint8)
        chip[:] = color_for_id(obj["id"])
        gap = np.full((STRIP_ROW, 4, 3), 255, np.uint8)
        rows.append(np.concatenate([chip, gap, row], axis=1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


def store_masks(session: Session, masks: MaskSet) -> None:
    """Make `masks` the session's extracted masks (named as the user named them) and autosave them."""
    names = [session.object_names.get(i, n) for i, n in zip(masks.ids, masks.names)]
    masks.names = names
    session.masks = masks
    session.edited = None
    session.edited_key = None
    autosave_masks(session)


def autosave_masks(session: Session) -> None:
    """Write the masks to the project (none left: the file goes); a failed write is logged, the masks are kept."""
    if session.project is None:
        return
    try:
        if session.masks is None or session.masks.num_objects == 0:
            session.project.delete_masks()
        else:
            session.project.save_masks(session.masks)
    except (OSError, ValueError) as err:
        logger.warning("autosave of masks failed: %s", err)


def save_objects(session: Session) -> None:
    """Record every tracked object (name, prompts per frame, frames done) in project.json, so refinement resumes."""
    if session.project is None:
        return
    state = session.tracker_state
    objects = {}
    if state is not None:
        for obj_id, obj in sorted(state.objects.items()):
            objects[str(obj_id)] = {
                "name": session.object_names.get(obj_id, obj.name),
                "prompts": {str(f): _prompt_dict(p) for f, p in sorted(obj.prompts.items())},
                "done": _runs(obj.done),
            }
    try:
        session.project.update_meta(objects=objects)
    except (OSError, ValueError) as err:
        logger.warning("autosave of the objects failed: %s", err)


def restore_objects(tracker: Tracker, state: TrackerSession, objects: dict, masks: MaskSet | None) -> list[str]:
    """Rebuild the tracked objects saved by `save_objects`: their prompts, and their masks from the saved masks.

    Objects come back as propagated (nothing pending), so a new click re-propagates only around itself. Returns
    notes on what could not come back."""
    notes = []
    for key, spec in sorted(objects.items(), key=lambda kv: int(kv[0])):
        obj_id = int(key)
        try:
            for frame, p in sorted(spec["prompts"].items(), key=lambda kv: int(kv[0])):
                tracker.add_prompt(state, obj_id, int(frame), box=p.get("box"), points=p.get("points"),
                                   labels=p.get("labels"), name=spec["name"])  # fmt: skip
        except (KeyError, TypeError, ValueError) as err:
            notes.append(f"object {obj_id}'s prompts could not be restored ({err})")
            if obj_id in state.objects:
                tracker.remove_object(state, obj_id)
            continue
        obj = state.objects[obj_id]
        if masks is not None and obj_id in masks.ids and masks.num_frames == state.num_frames:
            k = masks.ids.index(obj_id)
            done = _from_runs(spec.get("done", []), state.num_frames)
            scores = _saved_scores(masks, obj_id)
            for t in range(state.num_frames):
                obj.set_mask(t, masks.masks[k, t], scores.get(t, 1.0))
            obj.done[:] = done
            obj.pending.clear()
    return notes


def _saved_scores(masks: MaskSet, obj_id: int) -> dict[int, float]:
    """frame -> score of one object, from the frame states saved with the masks (empty for older files)."""
    for obj in masks.meta.get("frame_states") or []:
        if isinstance(obj, dict) and obj.get("id") == obj_id:
            try:
                return {int(f["frame"]): float(f["score"]) for f in obj.get("frames", [])}
            except (KeyError, TypeError, ValueError):
                return {}
    return {}


def points_from_prompts(state: TrackerSession) -> dict[int, list[tuple[int, float, float, int]]]:
    """The clicks to draw, from the tracker's prompts: id -> [(frame, x, y, 1 = include / 0 = exclude)]."""
    points: dict[int, list[tuple[int, float, float, int]]] = {}
    for obj_id, obj in state.objects.items():
        for f, p in sorted(obj.prompts.items()):
            if p.points is not None and p.labels is not None:
                for (x, y), lab in zip(p.points.tolist(), p.labels.tolist()):
                    points.setdefault(obj_id, []).append((f, float(x), float(y), int(lab)))
    return points


def _prompt_dict(prompt: Prompt) -> dict[str, list]:
    out = {}
    if prompt.box is not None:
        out["box"] = [float(v) for v in np.asarray(prompt.box).ravel()]
    if prompt.points is not None and prompt.labels is not None:
        out["points"] = np.asarray(prompt.points, float).tolist()
        out["labels"] = [int(v) for v in np.asarray(prompt.labels).ravel()]
    return out


def _runs(flags: np.ndarray) -> list[list[int]]:
    """bool [T] -> [[start, stop), ...] runs of True."""
    padded = np.concatenate([[False], np.asarray(flags, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def _from_runs(runs: list, num_frames: int) -> np.ndarray:
    flags = np.zeros(num_frames, bool)
    for start, stop in runs:
        flags[max(0, int(start)) : min(num_frames, int(stop))] = True
    return flags


def overlay_video(
    session: Session, masks: MaskSet | None = None, name: str = "masks_overlay.mp4", reuse: bool = False
) -> str:
    """Overlay preview video of the masks on the source, inside the project folder (`reuse`: the one already
    written, when it is newer than the saved masks, as when a project is reopened)."""
    masks = masks if masks is not None else session.masks
    if masks is None or session.project is None:
        raise StudioError("no masks yet: propagate first")
    path = session.project.output_path(name)
    saved = session.project.masks_path
    if reuse and path.is_file() and saved.is_file() and path.stat().st_mtime >= saved.stat().st_mtime:
        return str(path)
    frames = match_length(require_video(session), masks.num_frames)
    # drawn and encoded a frame at a time: the preview of a long video never sits in memory whole
    previews = (preview_frame_of(masks, t, frames) for t in range(masks.num_frames))
    return str(write_clip(session.project.output_path(name), previews, masks.fps))


def objects_table(session: Session) -> list[list[Any]]:
    """Rows [id, name, colour, frames tracked (prompted or tracked, not uncertain or lost; for imported masks: with a
    mask)] for the object list."""

    def hexcolor(obj_id: int) -> str:
        return "#{:02x}{:02x}{:02x}".format(*color_for_id(obj_id))

    rows = []
    state = session.tracker_state
    if state is not None and state.objects:
        for obj_id, obj in sorted(state.objects.items()):
            name = session.object_names.get(obj_id, obj.name)
            counts = state_counts(obj.frame_states())  # given or followed with confidence; not doubtful or lost
            rows.append([obj_id, name, hexcolor(obj_id), counts["prompted"] + counts["tracked"]])
    elif session.masks is not None:
        for k, obj_id in enumerate(session.masks.ids):
            present = int(session.masks.masks[k].any(axis=(1, 2)).sum())
            rows.append([obj_id, session.masks.names[k], hexcolor(obj_id), present])
    return rows


def object_choices(session: Session) -> list[tuple[str, str]]:
    """Dropdown choices (label, value) for 'which object a click refines'; 'new' starts a new object."""
    return [("new object", "new")] + [(f"{r[0]}: {r[1]}", str(r[0])) for r in objects_table(session)]


def delete_object(engines: Engines, session: Session, obj_id: Any) -> None:
    """Forget an object: its prompts, its masks (on disk too), its name; it stays deleted after a reopen."""
    if obj_id in (None, "", "new"):
        raise StudioError("choose the object to delete in the object list")
    obj_id = int(obj_id)
    state = session.tracker_state
    tracked = engines.tracker is not None and state is not None and obj_id in state.objects
    in_masks = session.masks is not None and obj_id in session.masks.ids
    if not tracked and not in_masks:
        raise StudioError(f"there is no object {obj_id}")
    if tracked:
        engines.tracker.remove_object(state, obj_id)
    if session.masks is not None and in_masks:
        session.masks = session.masks.without_object(obj_id) if session.masks.num_objects > 1 else None
    if tracked and state.objects:
        session.masks = engines.tracker.result(state)
    session.object_names.pop(obj_id, None)
    session.points.pop(obj_id, None)
    session.edited = session.edited_key = None
    autosave_masks(session)
    save_objects(session)


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
    if session.masks is not None and int(obj_id) in session.masks.ids:
        session.masks.names[session.masks.ids.index(int(obj_id))] = name
        autosave_masks(session)
    save_objects(session)
