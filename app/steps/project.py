"""The project: what the page says about it, and reopening an autosaved one with every step restored."""

from __future__ import annotations

import logging

from app.engines import Engines
from app.projects import ProjectError, open_project
from app.sessions import Session
from app.steps.common import StudioError
from app.steps.edit import render_recipe
from app.steps.video import load_video
from editing.recipe import UndoStack
from mvideo_core.masks import load_masks

logger = logging.getLogger(__name__)


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


def engines_banner(engines: Engines) -> str:
    """Which tracker, text detector and generator this studio runs on, and why."""
    return (
        f"**Tracker:** {engines.tracker_status}  \n**Text detection:** {engines.grounder_status}  \n"
        f"**Generator:** {engines.generation_status}"
    )


def reopen_project(engines: Engines, session: Session, project_id: str) -> str | None:
    """Reopen an autosaved project: source video, masks, extra layers and the edit come back.

    Returns the video step's info (None when the project has no video yet)."""
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
            render_recipe(session, recipe)
            session.undo = UndoStack(recipe)
        except ValueError as err:  # an edit that no longer renders is left on disk, not loaded
            logger.warning("project %s: saved recipe not restored: %s", project.project_id, err)
    return summary.info
