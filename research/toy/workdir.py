"""The toy's work folder: where each stage's outputs live and how a finished stage is marked.

Stages, evaluation and the report all read this bookkeeping; it imports none of them, so they do not import each
other in a circle.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_FILE = "toy_config.json"
DONE_FILE = "DONE.json"


class StageError(RuntimeError):
    """A stage cannot run (missing earlier stage, config changed under a resumed run); the message says what to do."""


def is_done(folder: Path) -> bool:
    return (folder / DONE_FILE).is_file()


def mark_done(folder: Path, figures: dict) -> dict:
    (folder / DONE_FILE).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def read_done(folder: Path) -> dict:
    if not is_done(folder):
        raise StageError(f"{folder} is not finished; run `python -m research.toy run --work {folder.parent}`")
    return json.loads((folder / DONE_FILE).read_text())


def base_model_dir(work: Path) -> Path:
    """The CogVideoX-layout folder of the toy base model (trained VAE; the transformer is replaced after stage base)."""
    return work / "base_model"


def mvideo_run_name(alpha: float) -> str:
    return "mvideo_a1" if alpha > 0 else "mvideo_a0"
