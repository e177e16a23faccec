"""The project: what the page says about it, and reopening an autosaved one with every step restored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from app.engines import Engines, generator_lines
from app.projects import ProjectDamaged, ProjectError, open_project
from app.sessions import Session
from app.steps.common import StudioError, plural
from app.steps.edit import render_recipe
from app.steps.masks import points_from_prompts, restore_objects
from app.steps.video import decode_video, set_frames, summarize
from editing.recipe import UndoStack

T = TypeVar("T")


def project_summary(session: Session) -> str:
    if session.project is None:
        return "No project yet: upload a video or pick a sample to start one (it autosaves)."
    try:
        meta = session.project.meta()
    except ProjectDamaged:
        meta = {}
    parts = [f"Project `{session.project.project_id}` (autosaved)"]
    if meta.get("source_name"):
        parts.append(f"source: {meta['source_name']}")
    clips = len(session.project.clip_paths())
    if clips:
        parts.append(plural(clips, "clip"))
    return " · ".join(parts)


def engines_banner(engines: Engines) -> str:
    """Which tracker, text detector and generator this studio runs on, and why."""
    return (
        f"**Tracker:** {engines.tracker_status}  \n**Text detection:** {engines.grounder_status}  \n"
        f"{generator_lines(engines)}"
    )


@dataclass
class Reopened:
    """What reopening brought back: the video step's info (None: no video yet) and notes on what could not."""

    info: str | None
    notes: list[str] = field(default_factory=list)


def reopen_project(engines: Engines, session: Session, project_id: str, key: str | None = None) -> Reopened:
    """Reopen an autosaved project as it was: video and trim, objects with their prompts, masks, added layers, the
    edit with its undo/redo history. Reads only; a damaged file is named in the notes and left as it is.

    On a shared host (`settings.shared`) the project's key is required. The session changes only on success."""
    try:
        project = open_project(engines.settings.projects_dir, project_id, key, require_key=engines.settings.shared)
        meta = project.meta()
    except ProjectDamaged as err:
        raise StudioError(
            f"project {project_id} cannot be reopened: {err}. Its files are left untouched; start a new project, "
            "or repair that file"
        ) from err
    except ProjectError as err:
        raise StudioError(str(err)) from err
    fresh = Session(session.session_id)
    fresh.project = project
    src = project.source_path()
    if src is None:
        session.adopt(fresh)
        return Reopened(None)
    trim = meta.get("trim") or [0.0, None]
    try:
        video, info, _ = decode_video(engines, src, trim[0], trim[1])
    except StudioError as err:
        raise StudioError(f"project {project.project_id}'s video cannot be read: {err}") from err
    set_frames(engines, fresh, video.frames, video.fps)
    fresh.source_path, fresh.video_info = str(src), info
    summary = summarize(engines, video, info, trim[0], trim[1])
    notes = list(summary.warnings)

    masks = _restore(notes, project.load_masks, "; propagate again to rebuild them")
    if masks is not None and masks.masks.shape[1:] != video.frames.shape[:3]:
        notes.append(f"the saved masks ({masks.num_frames} frames) do not fit the video ({len(video.frames)} frames)")
        masks = None
    objects = meta.get("objects") or {}
    if engines.tracker is not None and fresh.tracker_state is not None and isinstance(objects, dict):
        notes += restore_objects(engines.tracker, fresh.tracker_state, objects, masks)
        fresh.object_names = {int(k): str(v.get("name", f"object {k}")) for k, v in objects.items()}
        fresh.points = points_from_prompts(fresh.tracker_state)
    if masks is not None:
        masks.names = [fresh.object_names.get(i, n) for i, n in zip(masks.ids, masks.names)]
        fresh.object_names = {**dict(zip(masks.ids, masks.names)), **fresh.object_names}
        fresh.masks = masks
    fresh.extra_sources = _restore(notes, project.layer_sources, "; add that layer again") or {}

    recipe = _restore(notes, project.load_recipe, "")
    if recipe is not None:
        try:
            history = project.load_history()
            undo = UndoStack.from_dict(history) if history and history.get("current") == recipe else UndoStack(recipe)
            render_recipe(fresh, recipe)
            fresh.undo = undo
        except ValueError as err:  # an edit that no longer renders is left on disk, not loaded
            notes.append(f"the edit (recipe.json) could not be restored: {err}; the file is left as it is")
    session.adopt(fresh)
    return Reopened(summary.info, notes)


def _restore(notes: list[str], load: Callable[[], T], hint: str) -> T | None:
    """`load()`, or None with a note when the file it reads is damaged (the file is left as it is)."""
    try:
        return load()
    except ProjectDamaged as err:
        notes.append(f"{err}{hint} (the file is left as it is)")
        return None
