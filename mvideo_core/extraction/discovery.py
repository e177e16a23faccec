"""Where extraction weights are found: an explicit path or hub id, a models folder, the Hugging Face cache.

Nothing here downloads. A missing checkpoint gives a message that names it and the flag that points at it; the
tracker then falls back to the weight-free `ClassicTracker`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from mvideo_core.extraction.base import ExtractionError

logger = logging.getLogger(__name__)

SAM2_IDS = (
    "facebook/sam2.1-hiera-tiny",
    "facebook/sam2.1-hiera-small",
    "facebook/sam2.1-hiera-base-plus",
    "facebook/sam2.1-hiera-large",
)
GROUNDING_DINO_IDS = ("IDEA-Research/grounding-dino-tiny", "IDEA-Research/grounding-dino-base")
MODELS_DIR_ENV = "MVIDEO_MODELS_DIR"


class WeightsNotFound(ExtractionError):
    """No checkpoint was found; the message names the checkpoint and the flag to point at it."""


@dataclass
class Found:
    """A checkpoint folder and how it was found ('explicit', 'models dir', 'hf cache', 'hub id')."""

    path: str
    how: str


def is_checkpoint_folder(folder: str | os.PathLike) -> bool:
    """A transformers checkpoint: config.json beside safetensors weights."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def looks_like_hub_id(name: str) -> bool:
    parts = str(name).split("/")
    return len(parts) == 2 and all(parts) and not str(name).startswith((".", "/", "~"))


def in_models_dir(repo_id: str, models_dir: str | os.PathLike | None) -> str | None:
    """`models_dir/<name>`, `models_dir/<owner>--<name>` or `models_dir/<owner>/<name>` holding a checkpoint."""
    if models_dir is None:
        return None
    owner, name = repo_id.split("/")
    root = Path(models_dir).expanduser()
    for folder in (root / name, root / f"{owner}--{name}", root / owner / name):
        if is_checkpoint_folder(folder):
            return str(folder)
    return None


def in_hf_cache(repo_id: str, cache_dir: str | os.PathLike | None = None) -> str | None:
    """The cached snapshot folder of `repo_id` when it holds a full checkpoint (offline lookup)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    if not isinstance(config, str):
        return None
    folder = os.path.dirname(config)
    return folder if is_checkpoint_folder(folder) else None


def default_models_dir(models_dir: str | os.PathLike | None) -> str | None:
    return str(models_dir) if models_dir is not None else os.environ.get(MODELS_DIR_ENV) or None


def find_checkpoint(
    explicit: str | os.PathLike | None,
    candidates: tuple[str, ...],
    models_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    what: str = "weights",
    flag: str = "--weights",
) -> Found:
    """Resolve a checkpoint: an explicit folder or hub id, else the first candidate in the models dir or HF cache.

    An explicit hub id that is not on this machine is returned as such (`how='hub id'`): loading it downloads it
    where a network is available. Raises `WeightsNotFound` naming the checkpoints and the flags."""
    models_dir = default_models_dir(models_dir)
    if explicit is not None and str(explicit).strip():
        explicit = str(explicit)
        if Path(explicit).expanduser().is_dir():
            folder = str(Path(explicit).expanduser())
            if not is_checkpoint_folder(folder):
                raise WeightsNotFound(
                    f"{flag} {explicit}: the folder holds no transformers checkpoint (config.json + *.safetensors)"
                )
            return Found(folder, "explicit")
        if looks_like_hub_id(explicit):
            local = in_models_dir(explicit, models_dir) or in_hf_cache(explicit, cache_dir)
            return Found(local, "local copy") if local else Found(explicit, "hub id")
        raise WeightsNotFound(f"{flag} {explicit}: no such folder, and it is not a hub id like {candidates[0]}")
    for repo_id in candidates:
        local = in_models_dir(repo_id, models_dir)
        if local:
            return Found(local, "models dir")
    for repo_id in candidates:
        local = in_hf_cache(repo_id, cache_dir)
        if local:
            return Found(local, "hf cache")
    where = f"the models folder {models_dir} and " if models_dir else ""
    raise WeightsNotFound(
        f"no {what} found (looked for {', '.join(candidates)} in {where}the Hugging Face cache). Download one, "
        f"e.g. `hf download {candidates[0]}`, then pass {flag} PATH_OR_ID or --models-dir DIR"
    )
