"""Project folders: the one source of truth for a person's work; every write is atomic, reopening restores it all.

Layout of `<projects-dir>/<project-id>/`: `project.json` (the video's trim, the objects with their prompts, the
generation settings, the last generation, the owner's key hash), `source.<ext>` (the uploaded video), `masks.npz`
(extracted masks), `recipe.json` (the current edit) and `edit_history.json` (its undo/redo history),
`generations/<run>/` (each `clip_NNN.mp4`, `final.mp4` and `generation.json`; one folder per distinct setting, so a
stopped run resumes), `outputs/` (previews, exported files, `layer_<name>.npz` sources of added layers).

Every file is written to a temporary name beside it and renamed into place (`os.replace`), so a crash leaves the old
file or the new one, never half of one. `project.json` is read-modify-written under a per-folder lock (a generation
job and the page update it at the same time). Project ids are random tokens; each project also has a secret key
(kept by the browser that made it, shareable as a link) that `open_project` asks for on shared hosts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvideo_core.masks import MaskError, MaskSet, load_masks, save_masks

PROJECT_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{12}$")
PROJECT_FILE = "project.json"
MASKS_FILE = "masks.npz"
RECIPE_FILE = "recipe.json"
HISTORY_FILE = "edit_history.json"
LAYER_PREFIX = "layer_"

_locks: dict[Path, threading.RLock] = {}
_locks_guard = threading.Lock()


class ProjectError(ValueError):
    """A project cannot be opened or written; the message says why and what to do."""


class ProjectDamaged(ProjectError):
    """A file of the project cannot be read (torn by a crash, edited by hand); the file is left as it is."""


def new_project_id() -> str:
    """A timestamped, unguessable project id such as `20261125-190312-3fa4c1d2e5b6`."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(6)


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed onto `path` when the block succeeds, removed when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def _read_json(path: Path, what: str) -> Any:
    """A JSON file's content, or `ProjectDamaged` naming the file and the problem."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProjectDamaged(f"{what} ({path.name}) is damaged and cannot be read: {err}") from err


@dataclass
class Project:
    """One project folder on disk. `key` is the owner's secret when this process knows it (it made the project)."""

    root: Path
    key: str | None = None

    @property
    def project_id(self) -> str:
        return self.root.name

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def masks_path(self) -> Path:
        return self.root / MASKS_FILE

    @property
    def recipe_path(self) -> Path:
        return self.root / RECIPE_FILE

    @property
    def lock(self) -> threading.RLock:
        with _locks_guard:
            return _locks.setdefault(self.root.resolve(), threading.RLock())

    # -- metadata --------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """project.json as a dict ({} before the first write); `ProjectDamaged` when it cannot be read."""
        path = self.root / PROJECT_FILE
        if not path.exists():
            return {}
        meta = _read_json(path, "the project's record")
        if not isinstance(meta, dict):
            raise ProjectDamaged(f"the project's record ({PROJECT_FILE}) holds {type(meta).__name__}, not an object")
        return meta

    def update_meta(self, **values: Any) -> dict[str, Any]:
        """Set top-level fields of project.json (None removes one), atomically and under the folder's lock."""
        with self.lock:
            meta = self.meta()
            for name, value in values.items():
                if value is None:
                    meta.pop(name, None)
                else:
                    meta[name] = value
            meta["updated"] = _now()
            write_text_atomic(self.root / PROJECT_FILE, json.dumps(meta, indent=2, sort_keys=True))
            return meta

    def edit_meta(self, name: str, change: Callable[[Any], Any]) -> Any:
        """Read-modify-write one field of project.json under the lock: `change(old or None) -> new`."""
        with self.lock:
            value = change(self.meta().get(name))
            self.update_meta(**{name: value})
            return value

    def owned_by(self, key: str | None) -> bool:
        """True when `key` is this project's secret (projects made before keys existed have none: False)."""
        digest = self.meta().get("key_sha256")
        return bool(key) and isinstance(digest, str) and secrets.compare_digest(digest, _hash_key(key))

    # -- the video -------------------------------------------------------------------------------------------
    def save_source(self, path: str | Path) -> Path:
        """Copy the uploaded video into the project (the upload cache is temporary)."""
        src = Path(path)
        suffix = src.suffix.lower() or ".mp4"
        dst = self.root / f"source{suffix}"
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        for old in self.root.glob("source.*"):
            if old != dst:
                old.unlink()
        self.update_meta(source=dst.name, source_name=src.name)
        return dst

    def source_path(self) -> Path | None:
        name = self.meta().get("source")
        path = self.root / name if name else None
        return path if path is not None and path.exists() else None

    # -- masks -----------------------------------------------------------------------------------------------
    def save_masks(self, maskset: MaskSet) -> Path:
        with atomic_path(self.masks_path) as tmp:
            save_masks(maskset, tmp, format="npz")
        self.update_meta(masks=self.masks_path.name)
        return self.masks_path

    def delete_masks(self) -> None:
        """No masks any more (the last object was deleted): the file goes, so reopening shows none."""
        with contextlib.suppress(FileNotFoundError):
            self.masks_path.unlink()
        self.update_meta(masks=None)

    def load_masks(self) -> MaskSet | None:
        return _load_mask_file(self.masks_path, "the extracted masks") if self.masks_path.exists() else None

    def save_layer(self, source: str, maskset: MaskSet) -> Path:
        """An added layer's source masks as `outputs/layer_<source>.npz`."""
        path = self.output_path(f"{LAYER_PREFIX}{source}.npz")
        with atomic_path(path) as tmp:
            save_masks(maskset, tmp, format="npz")
        return path

    def layer_sources(self) -> dict[str, MaskSet]:
        """Source name -> masks of every added layer."""
        return {
            path.stem.removeprefix(LAYER_PREFIX): _load_mask_file(path, f"the masks of layer {path.stem}")
            for path in sorted(self.outputs_dir.glob(f"{LAYER_PREFIX}*.npz"))
        }

    # -- the edit --------------------------------------------------------------------------------------------
    def save_recipe(self, recipe: dict[str, Any], history: dict[str, Any] | None = None) -> Path:
        """The current recipe (recipe.json, what other tools read) and its undo/redo history beside it."""
        if history is not None:
            write_text_atomic(self.root / HISTORY_FILE, json.dumps(history, sort_keys=True))
        write_text_atomic(self.recipe_path, json.dumps(recipe, indent=2, sort_keys=True))
        return self.recipe_path

    def load_recipe(self) -> dict[str, Any] | None:
        if not self.recipe_path.exists():
            return None
        recipe = _read_json(self.recipe_path, "the edit")
        if not isinstance(recipe, dict):
            raise ProjectDamaged(f"the edit ({RECIPE_FILE}) holds {type(recipe).__name__}, not a recipe")
        return recipe

    def load_history(self) -> dict[str, Any] | None:
        """The saved undo/redo history, or None when absent or unreadable (the recipe alone still reopens)."""
        path = self.root / HISTORY_FILE
        if not path.exists():
            return None
        try:
            history = _read_json(path, "the edit history")
        except ProjectDamaged:
            return None
        return history if isinstance(history, dict) else None

    # -- generations and outputs ------------------------------------------------------------------------------
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


def _load_mask_file(path: Path, what: str) -> MaskSet:
    try:
        return load_masks(path)
    except (MaskError, ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ProjectDamaged(f"{what} ({path.name}) is damaged and cannot be read: {err}") from err


def create_project(projects_dir: str | Path) -> Project:
    """A fresh project folder with a new secret key (returned in `project.key`, only its hash is stored)."""
    root = Path(projects_dir) / new_project_id()
    root.mkdir(parents=True, exist_ok=False)
    (root / "outputs").mkdir()
    project = Project(root, key=secrets.token_urlsafe(16))
    project.update_meta(created=_now(), key_sha256=_hash_key(project.key))
    return project


def open_project(
    projects_dir: str | Path, project_id: str, key: str | None = None, require_key: bool = False
) -> Project:
    """Reopen a project by its id; with `require_key` (a shared host) only with its secret key."""
    project_id = (project_id or "").strip()
    if not PROJECT_ID_RE.match(project_id):
        shown = repr(project_id) if len(project_id) <= 60 else repr(project_id[:60]) + "…"
        raise ProjectError(
            f"{shown} is not a project id; ids look like 20261125-190312-3fa4c1d2e5b6 (shown under 'Project' in the "
            "studio)"
        )
    root = Path(projects_dir) / project_id
    if require_key:
        project = Project(root, key=key)
        if not root.is_dir() or not project.owned_by(key):
            raise ProjectError(
                f"project {project_id} cannot be opened from this browser: on a shared studio a project opens only "
                "in the browser that made it, or with its share link (Project > Share link)"
            )
        return project
    if not root.is_dir():
        raise ProjectError(f"no project {project_id} in {projects_dir}; it may have been deleted")
    return Project(root, key=key)


def list_projects(projects_dir: str | Path) -> list[tuple[str, str]]:
    """(label, id) of every project folder, newest first: for the local host's project list."""
    rows = []
    for root in sorted(Path(projects_dir).glob("*"), reverse=True):
        if not root.is_dir() or not PROJECT_ID_RE.match(root.name):
            continue
        try:
            name = Project(root).meta().get("source_name") or "no video yet"
        except ProjectDamaged:
            name = "damaged project.json"
        rows.append((f"{root.name} · {name}", root.name))
    return rows
