"""The mask-to-video manifest: one JSON line per training clip, sharded, resumable, mergeable.

A dataset folder holds, per shard `i` of `n`:
  manifest-0000i-of-0000n.jsonl   one `ClipRecord` per kept clip
  status-0000i-of-0000n.jsonl     one line per finished source video: done (with its clip ids) or failed (reason)
  masks/<clip_id>.json            the clip's masks as COCO RLE (`mvideo_core.masks.save_masks`)
`read_manifest(folder)` reads every shard; a finished video is never processed twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_VERSION = 1


class ManifestError(ValueError):
    """A manifest file or record is malformed; the message names the file and line."""


@dataclass
class ObjectRecord:
    """One tracked subject: its mask id in the clip's mask file, COCO class name, detector score, first box."""

    id: int
    name: str
    score: float
    box: list[float]  # [x0, y0, x1, y1] in pixels of the clip's frames, frame 0


@dataclass
class ClipRecord:
    """One training clip: where its frames come from (source + offsets), how they were sampled, masks, caption."""

    clip_id: str
    source: str  # absolute path of the source video
    start: float  # seconds into the source
    end: float
    fps: float  # frames were sampled at this rate
    num_frames: int
    height: int  # frames and masks were read at this size, with `fit`
    width: int
    fit: str
    caption: str
    masks: str  # path of the mask file, relative to the dataset folder
    objects: list[ObjectRecord] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClipRecord:
        values = dict(values)
        values["objects"] = [ObjectRecord(**o) for o in values.get("objects", [])]
        return cls(**values)


def clip_id_for(source: str | Path, start_frame: int) -> str:
    """Stable id of a clip: the video's stem plus a hash of its path, and the segment's first source frame."""
    source = str(Path(source).resolve())
    digest = hashlib.sha1(source.encode("utf-8")).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(source).stem)[:40]
    return f"{stem}-{digest}-f{start_frame:07d}"


def shard_suffix(shard_index: int, num_shards: int) -> str:
    return f"{shard_index:05d}-of-{num_shards:05d}"


def shard_of(items: list[Any], shard_index: int, num_shards: int) -> list[Any]:
    """The items of shard `shard_index` (round robin over a sorted list: shards are disjoint and cover all)."""
    if num_shards < 1:
        raise ValueError(f"--num-shards must be >= 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard-index must lie in [0, {num_shards - 1}], got {shard_index}")
    return items[shard_index::num_shards]


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                if handle.read().strip() == "":
                    # A run killed mid-write leaves a partial last line: ignore it, the clip is redone.
                    return
                raise ManifestError(f"{path}:{number} is not valid JSON ({err}); fix or delete that line") from err
            if not isinstance(value, dict):
                raise ManifestError(f"{path}:{number} must be a JSON object, got {type(value).__name__}")
            yield value


def read_manifest(path: str | Path) -> list[ClipRecord]:
    """All clip records of a dataset folder (every shard) or of one .jsonl file, sorted by clip id."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("manifest-*.jsonl")) + sorted(path.glob("manifest.jsonl"))
        if not files:
            raise ManifestError(f"no manifest-*.jsonl in {path}; build one with `python -m mvideo_core.build_dataset`")
    elif path.is_file():
        files = [path]
    else:
        raise ManifestError(f"manifest {path} does not exist")
    records: dict[str, ClipRecord] = {}
    for file in files:
        for number, values in enumerate(_read_jsonl(file), 1):
            try:
                record = ClipRecord.from_dict(values)
            except TypeError as err:
                raise ManifestError(f"{file}: record {number} does not match the manifest format ({err})") from err
            records[record.clip_id] = record
    return [records[k] for k in sorted(records)]


def read_status(folder: str | Path) -> dict[str, dict[str, Any]]:
    """source path -> its last status line ({"status": "done"|"failed", ...}) over all shards."""
    status: dict[str, dict[str, Any]] = {}
    for file in sorted(Path(folder).glob("status-*.jsonl")):
        for values in _read_jsonl(file):
            status[values["source"]] = values
    return status


def _drop_torn_tail(path: Path) -> None:
    """Cut a partial last line (a run killed mid-write) so that the next append starts on a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class ShardWriter:
    """Appends clip records and per-video status lines of one shard; each line is flushed and fsynced."""

    def __init__(self, folder: str | Path, shard_index: int = 0, num_shards: int = 1):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "masks").mkdir(exist_ok=True)
        suffix = shard_suffix(shard_index, num_shards)
        self.manifest_path = self.folder / f"manifest-{suffix}.jsonl"
        self.status_path = self.folder / f"status-{suffix}.jsonl"
        for path in (self.manifest_path, self.status_path):
            _drop_torn_tail(path)
            path.touch()  # a shard that keeps no clip still has a (empty) manifest

    def _append(self, path: Path, line: str) -> None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def add_clip(self, record: ClipRecord) -> None:
        self._append(self.manifest_path, record.to_json())

    def video_done(self, source: str, clip_ids: list[str], skipped: dict[str, int] | None = None) -> None:
        line = {"source": source, "status": "done", "clips": clip_ids, "skipped": skipped or {}}
        self._append(self.status_path, json.dumps(line, ensure_ascii=False))

    def video_failed(self, source: str, reason: str) -> None:
        line = {"source": source, "status": "failed", "reason": reason}
        self._append(self.status_path, json.dumps(line, ensure_ascii=False))


def merge_manifests(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write all shards' records into one manifest.jsonl (sorted by clip id); shards stay in place."""
    folder = Path(folder)
    records = [r for r in read_manifest(folder)]
    out = Path(out) if out else folder / "manifest.jsonl"
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(r.to_json() + "\n" for r in records), encoding="utf-8")
    tmp.replace(out)
    return out
