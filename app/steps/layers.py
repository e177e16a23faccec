"""More layers for the edit: subjects with their own motion from a mask file, another project or a sample."""

from __future__ import annotations

from pathlib import Path

from app.engines import Engines
from app.projects import ProjectError, open_project
from app.sessions import Session
from app.steps.common import StudioError, safe_name
from app.steps.edit import MAIN_SOURCE, Recipe, edit_sources, push, start_edit
from app.steps.mask_files import fit_masks, read_mask_file
from editing import commands
from mvideo_core import samples
from mvideo_core.masks import MaskSet


def add_layer_from_masks(engines: Engines, session: Session, masks: MaskSet, name: str) -> Recipe:
    """A new layer (all objects of `masks` as one subject) from another source; it keeps its own motion."""
    recipe = start_edit(engines, session)
    source = f"{safe_name(name)}"
    n = 2
    while source in edit_sources(session) or source == MAIN_SOURCE:
        source = f"{safe_name(name)}_{n}"
        n += 1
    session.extra_sources[source] = masks
    save_extra_source(session, source, masks)
    recipe = commands.add_layer(recipe, source, name)
    try:
        return push(session, recipe)
    except StudioError:
        session.extra_sources.pop(source, None)
        raise


def add_layer_from_file(engines: Engines, session: Session, path: str | Path | None) -> Recipe:
    masks = read_mask_file(engines, path)
    return add_layer_from_masks(engines, session, masks, Path(str(path)).stem)


def add_layer_from_project(engines: Engines, session: Session, project_id: str) -> Recipe:
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


def add_layer_from_sample(engines: Engines, session: Session, name: str) -> Recipe:
    """A layer from a sample's ground-truth masks (a second subject with its own motion)."""
    if not name:
        raise StudioError("pick a sample first")
    _video, masks = samples.load_sample(name)
    masks = fit_masks(engines, masks)
    return add_layer_from_masks(engines, session, masks, name)


def save_extra_source(session: Session, source: str, masks: MaskSet) -> None:
    """Autosave a layer's source masks as `outputs/layer_<source>.npz` (reopened with the project)."""
    if session.project is None:
        return
    session.project.save_layer(source, masks)
