"""Where results go: the output folder is checked writable before long work starts, and files appear atomically.

A file is written under a temporary name beside its destination and renamed over it only once complete, so a
crash, a kill or a full disk never leaves a torn file where a finished one is expected.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


class OutputError(ValueError):
    """An output cannot be written; the message names the path and what to do."""


def _cannot_write(folder: Path) -> str | None:
    """Why no file can be created in `folder` (created if missing), or None when one can."""
    if folder.exists() and not folder.is_dir():
        return "it is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def check_writable_dir(folder: str | os.PathLike, flag: str = "--out") -> Path:
    """Create `folder` if needed and prove a file can be written in it; refuse naming `flag` otherwise."""
    folder = Path(folder)
    reason = _cannot_write(folder)
    if reason:
        raise OutputError(f"{flag} {folder} is not writable ({reason}); pick a folder you can write to")
    return folder


def check_writable_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """`path` can be created or replaced: its folder is writable and it is not a folder itself."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; pass a file name (e.g. {path / 'scores.json'})")
    reason = _cannot_write(path.parent)
    if reason:
        raise OutputError(
            f"{flag} {path} cannot be written: its folder {path.parent} is not writable ({reason}); "
            "pick a folder you can write to"
        )
    return path


def partial_path(path: str | os.PathLike) -> Path:
    """The temporary name a file is written under before it is renamed to `path` (same folder, same suffix)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` in one rename, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
