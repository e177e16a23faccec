"""Per-session project folders: everything a user makes is autosaved so that nothing is lost and work reopens.

Layout of `<projects-dir>/<project-id>/`: `project.json` (what the folder holds), `source.<ext>` (the uploaded
video), `masks.npz` (extracted masks), `recipe.json` (the edit), `generations/<run>/` (each generated
`clip_NNN.mp4`, `final.mp4` and `generation.json`; one folder per distinct setting, so a stopped run resumes),
`outputs/` (previews and exported files). Project ids are random tokens: knowing the id is
what lets a browser reopen a project, so two users never list or see each other's work.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvideo_core.masks import MaskSet, load_masks, save_masks

PROJECT_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{12}$")


class ProjectError(ValueError):
    """A project cannot be opened or written; the message says why and what to do."""


def new_project_id() -> str:
    """A timestamped, unguessable project id such as `20261125-190312-3fa4c1d2e5b6`."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(6)


@dataclass
class Project:
    """One project folder on disk."""

    root: Path

    @property
    def project_id(self) -> str:
        return self.root.name

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def masks_path(self) -> Path:
        return self.root / "masks.npz"

    @property
    def recipe_path(self) -> Path:
        return self.root / "recipe.json"

    # -- metadata --------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        path = self.root / "project.json"
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def update_meta(self, **values: Any) -> dict[str, Any]:
        meta = self.meta()
        meta.update(values)
        meta["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _write_text_atomic(self.root / "project.json", json.dumps(meta, indent=2, sort_keys=True))
        return meta

    # -- autosave --------------------------------------------------------------------------------------------
    def save_source(self, path: str | Path) -> Path:
        """Copy the uploaded video into the project (the upload cache is temporary)."""
        src = Path(path)
        suffix = src.suffix.lower() or ".mp4"
        for old in self.root.glob("source.*"):
            old.unlink()
        dst = self.root / f"source{suffix}"
        shutil.copyfile(src, dst)
        self.update_meta(source=dst.name, source_name=src.name)
        return dst

    def source_path(self) -> Path | None:
        name = self.meta().get("source")
        path = self.root / name if name else None
        return path if path is not None and path.exists() else None

    def save_masks(self, maskset: MaskSet) -> Path:
        tmp = self.root / "masks.tmp.npz"
        save_masks(maskset, tmp, format="npz")
        tmp.replace(self.masks_path)
        self.update_meta(masks=self.masks_path.name)
        return self.masks_path

    def load_masks(self) -> MaskSet | None:
        if not self.masks_path.exists():
            return None
        return load_masks(self.masks_path)

    def save_recipe(self, recipe: dict[str, Any]) -> Path:
        _write_text_atomic(self.recipe_path, json.dumps(recipe, indent=2, sort_keys=True))
        return self.recipe_path

    def load_recipe(self) -> dict[str, Any] | None:
        if not self.recipe_path.exists():
            return None
        return json.loads(self.recipe_path.read_text())

    def clip_paths(self) -> list[Path]:
        return sorted(self.root.glob("generations/*/clip_*.mp4"))

    def output_path(self, name: str) -> Path:
        """A path inside `outputs/` (created); `name` must be a plain file name."""
        if Path(name).name != name or name in ("", ".", ".."):
            raise ProjectError(f"output names must be plain file names, got {name!r}")
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        return self.outputs_dir / name

    def contains(self, path: str | Path) -> bool:
        """True when `path` lies inside this project folder (used before serving a file)."""
        try:
            Path(path).resolve().relative_to(self.root.resolve())
        except ValueError:
            return False
        return True


def create_project(projects_dir: str | Path) -> Project:
    """A fresh, empty project folder."""
    root = Path(projects_dir) / new_project_id()
    root.mkdir(parents=True, exist_ok=False)
    (root / "outputs").mkdir()
    project = Project(root)
    project.update_meta(created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return project


def open_project(projects_dir: str | Path, project_id: str) -> Project:
    """Reopen a project by its id (as shown in the studio); clear errors for malformed or unknown ids."""
    project_id = (project_id or "").strip()
    if not PROJECT_ID_RE.match(project_id):
        raise ProjectError(
            f"{project_id!r} is not a project id; ids look like 20261125-190312-3fa4c1d2e5b6 "
            "(shown under 'Project' in the studio)"
        )
    root = Path(projects_dir) / project_id
    if not root.is_dir():
        raise ProjectError(f"no project {project_id} in {projects_dir}; it may have been deleted")
    return Project(root)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
