"""Step 3, the edit: a recipe over the extracted masks (keyframed zoom/pan, terrain, timing), with undo/redo.

Every accepted edit is rendered first (a failing edit leaves the history unchanged) and autosaved as recipe.json.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.engines import Engines
from app.sessions import Session
from app.steps.common import StudioError, match_length, require_project, require_video, to_json
from editing import commands
from editing.preview import draw_boxes, draw_path, preview_video
from editing.preview import preview_frame as render_preview_frame
from editing.recipe import RecipeError, UndoStack, load, recipe_from_maskset, render, save
from mvideo_core.masks import MaskSet, color_for_id
from mvideo_core.video_io import write_clip

Recipe = dict[str, Any]

MAIN_SOURCE = "video"
TERRAINS = commands.TERRAIN_PRESETS


def edit_sources(session: Session) -> dict[str, MaskSet]:
    """Recipe source name -> MaskSet: the extracted masks ("video") plus layers added from mask files/samples."""
    sources = dict(session.extra_sources)
    if session.masks is not None:
        sources[MAIN_SOURCE] = session.masks
    return sources


def start_edit(engines: Engines, session: Session, reset: bool = False) -> Recipe:
    """The current recipe; the first call (or `reset`) starts from one layer per extracted object."""
    if session.undo is not None and session.undo.current is not None and not reset:
        return session.undo.current
    if session.masks is None or session.masks.num_objects == 0:
        raise StudioError("no masks to edit yet: extract them in step 2 (Propagate) or import a mask file")
    recipe = recipe_from_maskset(MAIN_SOURCE, session.masks)
    if session.undo is None:
        session.undo = UndoStack(recipe)
    else:  # starting over is one more step: Undo brings the previous edit back
        session.undo.push(recipe)
    autosave_recipe(session)
    return session.undo.current


def history(session: Session) -> UndoStack:
    """The session's edit history (after `start_edit`)."""
    if session.undo is None:
        raise StudioError("no edit yet: press Start editing")
    return session.undo


def autosave_recipe(session: Session) -> None:
    """Write the current recipe and its undo/redo history to the project."""
    if session.project is not None and session.undo is not None and session.undo.current is not None:
        session.project.save_recipe(session.undo.current, session.undo.to_dict())


def push(session: Session, recipe: Recipe) -> Recipe:
    """Validate by rendering, then record the edit (a failing edit leaves the history unchanged)."""
    try:
        rendered = render_recipe(session, recipe)
    except (RecipeError, ValueError) as err:
        raise StudioError(f"that edit cannot be applied: {err}") from err
    current = history(session).push(recipe)
    session.edited, session.edited_key = rendered, to_json(current)
    autosave_recipe(session)
    return current


def render_recipe(session: Session, recipe: Recipe) -> MaskSet:
    return render(recipe, edit_sources(session))


def edited_masks(engines: Engines, session: Session) -> MaskSet:
    """The masks the recipe renders to (cached per recipe); the model's condition comes from these."""
    recipe = start_edit(engines, session)
    key = to_json(recipe)
    if session.edited is None or session.edited_key != key:
        try:
            session.edited = render_recipe(session, recipe)
        except ValueError as err:
            raise StudioError(f"the recipe cannot be rendered: {err}") from err
        session.edited_key = key
    return session.edited


def apply_command(engines: Engines, session: Session, command: Callable[..., Recipe], *args: Any) -> Recipe:
    """Run a recipe command of `editing.commands` on the current recipe and push its result."""
    try:
        recipe = command(start_edit(engines, session), *args)
    except RecipeError as err:
        raise StudioError(str(err)) from err
    return push(session, recipe)


def layer_choices(session: Session) -> list[tuple[str, str]]:
    return commands.layer_choices(session.undo.current if session.undo is not None else None)


recipe_summary = commands.summary
recipe_duration = commands.duration


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
) -> Recipe:
    """Add (or replace, at the same time) a zoom/pan/rotate keyframe on a layer; an identity key starts at 0 s."""
    return apply_command(engines, session, commands.add_keyframe, layer_id, t, scale, x, y, rotate, ease, anchor)


def clear_keyframes(engines: Engines, session: Session, layer_id: Any) -> Recipe:
    return apply_command(engines, session, commands.clear_keyframes, layer_id)


def set_terrain(
    engines: Engines, session: Session, layer_id: Any, profile: str, rise: float, tilt: float = 0.0
) -> Recipe:
    """Replace the layer's terrain warp (`flat` removes it); `rise` is the climb as a fraction of frame height."""
    return apply_command(engines, session, commands.set_terrain, layer_id, profile, rise, tilt)


def set_timing(
    engines: Engines, session: Session, layer_id: Any, start: float, speed: float, retime_seconds: float = 0.0
) -> Recipe:
    """Layer time offset (s), playback speed, and optionally retime its motion to a duration (loops to fill)."""
    return apply_command(engines, session, commands.set_timing, layer_id, start, speed, retime_seconds)


def set_length(engines: Engines, session: Session, seconds: float) -> Recipe:
    """Length of the edited motion in seconds (frames = seconds * fps + 1; layers loop to fill it)."""
    return apply_command(engines, session, commands.set_length, seconds, engines.settings.max_seconds * 4)


def undo(engines: Engines, session: Session) -> Recipe:
    start_edit(engines, session)
    if not history(session).can_undo:
        raise StudioError("nothing to undo")
    recipe = history(session).undo()
    autosave_recipe(session)
    return recipe


def redo(engines: Engines, session: Session) -> Recipe:
    start_edit(engines, session)
    if not history(session).can_redo:
        raise StudioError("nothing to redo")
    recipe = history(session).redo()
    autosave_recipe(session)
    return recipe


def edit_preview_frame(engines: Engines, session: Session, frame_idx: Any) -> np.ndarray:
    """One frame of the edited masks over the source video, with the layers' paths drawn over it: uint8 [H, W, 3]
    (live preview while scrubbing)."""
    masks = edited_masks(engines, session)
    idx = min(max(int(frame_idx or 0), 0), masks.num_frames - 1)
    background = match_length(require_video(session), masks.num_frames)
    frame = render_preview_frame(masks, idx, background[idx])
    for lay in start_edit(engines, session)["layers"]:
        for op in lay.get("ops", []):
            if op["op"] == "path":
                color = color_for_id(int(lay.get("id", 1)))
                frame = draw_path(
                    frame, op["points"], smooth=op.get("smooth", False), now=idx / masks.fps, color=color
                )
    return frame


def drawing_preview(
    engines: Engines,
    session: Session,
    frame_idx: Any,
    points: list[dict[str, Any]],
    boxes: list[dict[str, Any]],
    corner: list[float] | None,
    smooth: bool = True,
) -> np.ndarray:
    """The live preview with the path and boxes being drawn over it."""
    frame = edit_preview_frame(engines, session, frame_idx)
    now = int(frame_idx or 0) / edited_masks(engines, session).fps
    frame = draw_boxes(frame, boxes or [], corner=tuple(corner) if corner else None, now=now)
    return draw_path(frame, points or [], smooth=bool(smooth), now=now)


def click_time(engines: Engines, session: Session, frame_idx: Any) -> float:
    """Seconds of the preview frame a click was made on (the time of a drawn point or box)."""
    masks = edited_masks(engines, session)
    return min(max(int(frame_idx or 0), 0), masks.num_frames - 1) / masks.fps


def set_path(
    engines: Engines, session: Session, layer_id: Any, points: list[dict[str, Any]], smooth: bool, orient: bool
) -> Recipe:
    """Drag the layer along the drawn path (its centroid through each point at its time); no points removes it."""
    return apply_command(engines, session, commands.set_path, layer_id, points or [], bool(smooth), bool(orient))


def add_box_layer(engines: Engines, session: Session, boxes: list[dict[str, Any]], shape: str) -> Recipe:
    """A new layer drawn as the boxes (one or more times), filled with `shape`."""
    count = sum("boxes" in lay for lay in start_edit(engines, session)["layers"])
    return apply_command(engines, session, commands.add_box_layer, boxes or [], f"boxes {count + 1}", shape)


def edit_preview_video(engines: Engines, session: Session) -> str:
    """The whole edited motion as an overlay video in the project folder."""
    masks = edited_masks(engines, session)
    frames = preview_video(masks, match_length(require_video(session), masks.num_frames))
    return str(write_clip(require_project(session).output_path("edit_preview.mp4"), frames, masks.fps))


def recipe_file(engines: Engines, session: Session) -> str:
    """The current recipe as a JSON file to download."""
    recipe = start_edit(engines, session)
    return str(save(recipe, require_project(session).output_path("recipe.json")))


def load_recipe_file(engines: Engines, session: Session, path: str | Path | None) -> Recipe:
    """Replace the edit with an uploaded recipe (validated against this session's sources first)."""
    if path is None or str(path) == "":
        raise StudioError("choose a recipe .json file")
    start_edit(engines, session)
    try:
        recipe = load(path)
    except RecipeError as err:
        raise StudioError(f"{Path(path).name} is not a usable recipe: {err}") from err
    return push(session, recipe)
