"""Mask sequences: the motion condition of MVideo.

A `MaskSequence` is one subject's silhouette over time, bool `[T, H, W]` with its fps. A `MaskSet` holds several
named subjects with stable ids, bool `[K, T, H, W]`; the model receives its union, one binary sequence, as in the
paper. Import/export formats live beside the types so that every tool speaks the same files.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from mvideo_core.budget import Budget, resolve
from mvideo_core.outputs import atomic_path


class MaskError(ValueError):
    """A mask input is malformed; the message says what was wrong and what to do."""


def _check_fps(fps: float) -> float:
    try:
        fps = float(fps)
    except (TypeError, ValueError) as err:
        raise MaskError(f"fps must be a number, got {fps!r}") from err
    if not np.isfinite(fps) or fps <= 0:
        raise MaskError(f"fps must be a positive number, got {fps}")
    return fps


def as_bool_masks(array: Any, ndim: int, what: str = "masks") -> np.ndarray:
    """Validate and convert to a bool array of `ndim` dims; accepts bool, 0/1 integers or 0/255 uint8."""
    if not isinstance(array, np.ndarray):
        raise MaskError(f"{what} must be a numpy array, got {type(array).__name__}")
    if array.ndim != ndim:
        shape = "[T, H, W]" if ndim == 3 else "[K, T, H, W]"
        raise MaskError(f"{what} must have shape {shape} ({ndim} dims), got shape {tuple(array.shape)}")
    if array.dtype == bool:
        return array
    if array.dtype.kind in "iu":
        values = np.unique(array)
        if not np.isin(values, (0, 1, 255)).all():
            raise MaskError(
                f"{what} of dtype {array.dtype} must hold only 0/1 or 0/255 to be read as binary masks, "
                f"found values {values[:8].tolist()}; threshold them first"
            )
        return array > 0
    if array.dtype.kind == "f":
        raise MaskError(f"{what} are float ({array.dtype}); threshold them (e.g. masks > 0.5) to get binary masks")
    raise MaskError(f"{what} must be bool or integer, got dtype {array.dtype}")


# A palette of well separated colours; more objects than this get colours from a golden-ratio hue walk.
PALETTE: np.ndarray = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [255, 225, 25],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
        [170, 110, 40],
    ],
    dtype=np.uint8,
)


def color_for_id(obj_id: int) -> tuple[int, int, int]:
    """Display colour of object `obj_id` (stable across sessions); ids start at 1."""
    if obj_id < 1:
        raise MaskError(f"object ids start at 1, got {obj_id}")
    if obj_id <= len(PALETTE):
        return tuple(int(c) for c in PALETTE[obj_id - 1])
    hue = (obj_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


@dataclass
class MaskSequence:
    """One subject's mask over time. `masks`: bool [T, H, W]."""

    masks: np.ndarray
    fps: float
    name: str = "object"

    def __post_init__(self) -> None:
        self.masks = as_bool_masks(self.masks, 3)
        self.fps = _check_fps(self.fps)
        if self.masks.shape[0] == 0:
            raise MaskError("a mask sequence needs at least one frame, got 0")
        if 0 in self.masks.shape[1:]:
            raise MaskError(f"a mask sequence needs frames of at least 1x1 pixels, got shape {self.masks.shape}")

    @property
    def num_frames(self) -> int:
        return int(self.masks.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


@dataclass
class MaskSet:
    """Several named subjects with stable ids. `masks`: bool [K, T, H, W]; `ids[k]` and `names[k]` describe object k.

    `meta` carries provenance that must travel with the masks, e.g. `{"tracker": "classic (weight-free fallback)"}`.
    """

    masks: np.ndarray
    fps: float
    ids: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.masks = as_bool_masks(self.masks, 4)
        self.fps = _check_fps(self.fps)
        k = self.masks.shape[0]
        if self.masks.shape[1] == 0:
            raise MaskError("a mask set needs at least one frame, got 0")
        if 0 in self.masks.shape[2:]:
            raise MaskError(f"a mask set needs frames of at least 1x1 pixels, got shape {self.masks.shape}")
        if not self.ids:
            self.ids = list(range(1, k + 1))
        if not self.names:
            self.names = [f"object {i}" for i in self.ids]
        self.ids = [int(i) for i in self.ids]
        self.names = [str(n) for n in self.names]
        if len(self.ids) != k or len(self.names) != k:
            raise MaskError(
                f"a mask set of {k} objects needs {k} ids and names, got {len(self.ids)} and {len(self.names)}"
            )
        if len(set(self.ids)) != k:
            raise MaskError(f"object ids must be unique, got {self.ids}")
        if any(i < 1 for i in self.ids):
            raise MaskError(f"object ids start at 1 (0 is background), got {self.ids}")

    # -- shape -----------------------------------------------------------------------------------------------
    @property
    def num_objects(self) -> int:
        return int(self.masks.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.masks.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.masks.shape[2]), int(self.masks.shape[3])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    # -- views -----------------------------------------------------------------------------------------------
    def union(self) -> np.ndarray:
        """The model's condition: bool [T, H, W], any object present."""
        if self.num_objects == 0:
            return np.zeros((self.num_frames, *self.size), dtype=bool)
        return self.masks.any(axis=0)

    def colors(self) -> np.ndarray:
        """Display colours, uint8 [K, 3], one per object, stable per id."""
        return np.array([color_for_id(i) for i in self.ids], dtype=np.uint8).reshape(-1, 3)

    def index_of(self, obj_id: int) -> int:
        try:
            return self.ids.index(int(obj_id))
        except ValueError:
            raise MaskError(f"no object with id {obj_id}; ids present: {self.ids}") from None

    def sequence(self, obj_id: int) -> MaskSequence:
        k = self.index_of(obj_id)
        return MaskSequence(self.masks[k], self.fps, self.names[k])

    def label_map(self) -> np.ndarray:
        """uint16 [T, H, W]: the id of the top-most object at each pixel (later objects on top), 0 = background."""
        labels = np.zeros((self.num_frames, *self.size), dtype=np.uint16)
        for k, obj_id in enumerate(self.ids):
            labels[self.masks[k]] = obj_id
        return labels

    def empty_frames(self) -> list[int]:
        """Frames where no object is present (documented behaviour: allowed, the model sees an empty mask)."""
        return np.flatnonzero(~self.union().reshape(self.num_frames, -1).any(axis=1)).tolist()

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_sequences(cls, sequences: list[MaskSequence], ids: list[int] | None = None, **meta: Any) -> MaskSet:
        if not sequences:
            raise MaskError("cannot build a mask set from zero sequences")
        shapes = {s.masks.shape for s in sequences}
        if len(shapes) != 1:
            raise MaskError(f"all sequences must share [T, H, W], got {sorted(shapes)}; resample/resize them first")
        fps = {s.fps for s in sequences}
        if len(fps) != 1:
            raise MaskError(f"all sequences must share one fps, got {sorted(fps)}; resample them first")
        return cls(
            np.stack([s.masks for s in sequences]),
            sequences[0].fps,
            ids=list(ids) if ids else [],
            names=[s.name for s in sequences],
            meta=dict(meta),
        )

    @classmethod
    def from_label_map(
        cls, labels: np.ndarray, fps: float, names: dict[int, str] | None = None, **meta: Any
    ) -> MaskSet:
        """Inverse of `label_map` (overlaps are lost: each pixel keeps its top-most id)."""
        if not isinstance(labels, np.ndarray) or labels.ndim != 3:
            raise MaskError(f"a label map must be an integer array [T, H, W], got {getattr(labels, 'shape', labels)}")
        ids = [int(i) for i in np.unique(labels) if i != 0]
        names = names or {}
        masks = np.empty((len(ids), *labels.shape), dtype=bool)
        for k, obj_id in enumerate(ids):
            np.equal(labels, obj_id, out=masks[k])
        return cls(masks, fps, ids=ids, names=[names.get(i, f"object {i}") for i in ids], meta=dict(meta))

    def copy(self) -> MaskSet:
        return MaskSet(self.masks.copy(), self.fps, list(self.ids), list(self.names), dict(self.meta))

    def with_object(self, masks: np.ndarray, name: str, obj_id: int | None = None) -> MaskSet:
        """A new set with one more object (`masks` bool [T, H, W] matching this set)."""
        masks = as_bool_masks(masks, 3, "object masks")
        if masks.shape != (self.num_frames, *self.size):
            raise MaskError(
                f"object masks have shape {masks.shape} but the set is {(self.num_frames, *self.size)} [T, H, W]"
            )
        obj_id = obj_id if obj_id is not None else max(self.ids, default=0) + 1
        if obj_id in self.ids:
            raise MaskError(f"object id {obj_id} is already used")
        return MaskSet(
            np.concatenate([self.masks, masks[None]]),
            self.fps,
            [*self.ids, obj_id],
            [*self.names, name],
            dict(self.meta),
        )

    def without_object(self, obj_id: int) -> MaskSet:
        k = self.index_of(obj_id)
        keep = [i for i in range(self.num_objects) if i != k]
        return MaskSet(
            self.masks[keep], self.fps, [self.ids[i] for i in keep], [self.names[i] for i in keep], dict(self.meta)
        )

    def check_matches_video(self, num_frames: int, height: int, width: int) -> None:
        """Raise a clear error when these masks cannot condition a video of that shape."""
        if (self.num_frames, *self.size) != (num_frames, height, width):
            raise MaskError(
                f"masks are {self.num_frames} frames of {self.size[1]}x{self.size[0]} but the video is "
                f"{num_frames} frames of {width}x{height}; resample/resize the masks to the video first"
            )


# -- import / export -------------------------------------------------------------------------------------------
#
# One function pair, format by suffix (or `format=`):
#   .zip   one 1-bit PNG per object per frame (`obj_001/00000.png`) + `masks.json` (ids, names, fps, size).
#          On import a zip of indexed label PNGs (DAVIS style: pixel value = object id, one PNG per frame, sorted
#          by name) is accepted too; `format="zip-labels"` writes that layout (overlaps keep the top-most object).
#   .npz   `masks` bool [K, T, H, W], `ids`, `names`, `fps`, `meta` (JSON); also accepts `masks` [T, H, W].
#   .mp4   a label video: each combination of objects present at a pixel is one grey level, well separated in
#          16..235, encoded losslessly (x264 qp 0) with ids/names/fps/levels as JSON in the `comment` tag, so even a
#          lossy re-encode maps back to the nearest level. Overlaps survive (they are combinations). An mp4 without
#          that tag (a black/white mask video from another tool) imports as one object: luma >= 126.
#   .json  COCO-style RLE via pycocotools, YouTube-VIS layout (`videos`, `annotations[].segmentations` per frame,
#          `categories`), which dataset tools read; SA-V style (`masklet`: per frame a list of RLEs) is accepted.

MASK_FORMATS = {
    "zip": ".zip",
    "png": ".zip",
    "zip-labels": ".zip",
    "npz": ".npz",
    "mp4": ".mp4",
    "json": ".json",
    "coco": ".json",
}
# What a person picks from (the studio's export menu): label -> format key above, one per kind of file.
MASK_FORMAT_LABELS = {"PNG zip": "zip", "NumPy npz": "npz", "label video mp4": "mp4", "COCO RLE json": "json"}
_SUFFIX_FORMAT = {".zip": "zip", ".npz": "npz", ".mp4": "mp4", ".json": "json"}
_ZIP_INDEX = "masks.json"
_LABEL_VIDEO_TAG = "mvideo-label-video"
# Raised by a torn or crafted zip / npz (a bad header, a corrupt deflate stream).
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, struct.error)
DEFAULT_FPS = 8.0  # assumed for files that carry no frame rate (COCO from other tools, bare PNG zips)


def _format_for(path: Path, format: str | None) -> str:
    if format is not None:
        key = str(format).lower().lstrip(".")
        if key not in MASK_FORMATS:
            raise MaskError(f"unknown mask format {format!r}; use one of {sorted(set(MASK_FORMATS))}")
        return {"png": "zip", "coco": "json"}.get(key, key)
    fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise MaskError(
            f"cannot tell the mask format of {path.name!r} from its suffix; name it .zip (PNG sequence), .npz, "
            ".mp4 (label video) or .json (COCO RLE), or pass format="
        )
    return fmt


def _json_safe(meta: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(meta, default=str))


def save_masks(maskset: MaskSet, path: str | os.PathLike, format: str | None = None) -> Path:
    """Write a mask set; the format follows the suffix (.zip PNG, .npz, .mp4 label video, .json COCO RLE)."""
    if not isinstance(maskset, MaskSet):
        raise MaskError(f"save_masks needs a MaskSet, got {type(maskset).__name__}; wrap arrays with MaskSet(...)")
    path = Path(path)
    fmt = _format_for(path, format)
    writer = {
        "zip": _save_png_zip,
        "zip-labels": _save_label_png_zip,
        "npz": _save_npz,
        "mp4": _save_label_video,
        "json": _save_coco,
    }[fmt]
    try:
        with atomic_path(path) as tmp:  # a crash or a full disk never leaves a torn mask file under `path`
            writer(maskset, tmp)
    except OSError as err:
        raise MaskError(f"cannot write {path} ({err.strerror or err}); pick a folder you can write to") from None
    return path


def load_masks(path: str | os.PathLike, fps: float | None = None, budget: Budget | None = None) -> MaskSet:
    """Read a mask file written by `save_masks` or by common tools (DAVIS label PNGs, SAM2/YouTube-VIS RLE JSON).

    `fps`: files without a frame rate are taken to be at this rate (default 8); files with another rate are
    resampled to it by time. The sizes a file declares are checked against `budget` before anything is allocated.
    """
    fps = None if fps is None else _check_fps(fps)
    budget = resolve(budget)
    path = Path(path)
    if not path.exists():
        raise MaskError(f"no such mask file: {path}")
    if path.is_dir():
        raise MaskError(f"{path} is a folder; zip the PNGs (one per frame) and load the .zip")
    if path.stat().st_size == 0:
        raise MaskError(f"{path.name} is empty (0 bytes); the upload or export did not finish, try again")
    fmt = _SUFFIX_FORMAT.get(path.suffix.lower()) or _sniff_format(path)
    if fmt == "zip" and _is_npz(path):
        fmt = "npz"
    reader = {"zip": _load_zip, "npz": _load_npz, "mp4": _load_label_video, "json": _load_coco}[fmt]
    try:
        maskset = reader(path, fps, budget)
        if fps is not None and abs(maskset.fps - float(fps)) > 1e-6:
            maskset = resample_maskset(maskset, float(fps), budget)
    except MaskError as err:
        if path.name in str(err):
            raise
        raise MaskError(f"{path.name}: {err}") from None
    except MemoryError:
        raise MaskError(
            f"{path.name} ran out of memory while loading; lower --max-memory-gb so such files are refused first"
        ) from None
    except (
        ValueError,
        TypeError,
        LookupError,
        ArithmeticError,
        OSError,
        EOFError,
        RuntimeError,
        *_ARCHIVE_ERRORS,
    ) as err:
        raise MaskError(f"{path.name} is not a readable {fmt} mask file ({err}); export it again") from None
    return maskset


def _check_load(
    budget: Budget, path: Path, *, frames: object, height: object, width: object, count: object = 1, per_pixel: int = 1
) -> None:
    """Refuse, before allocating, a mask load of `count` x `frames` x `height` x `width` x `per_pixel` bytes."""
    budget.check(
        path.name,
        frames=frames,
        height=height,
        width=width,
        count=count,
        itemsize=per_pixel,
        hint="the file declares more than this studio loads at once; export fewer frames or a smaller size",
        error=MaskError,
    )


def _sniff_format(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(b"PK"):
        return "zip"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    if head[4:8] == b"ftyp":
        return "mp4"
    raise MaskError(
        f"{path.name} is not a mask file this studio reads; use .zip (PNG sequence), .npz, .mp4 or .json (COCO RLE)"
    )


def _is_npz(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(".npy") for name in archive.namelist())
    except (OSError, ValueError, RuntimeError, *_ARCHIVE_ERRORS):  # a torn zip: the zip reader names the problem
        return False


def resample_maskset(maskset: MaskSet, fps: float, budget: Budget | None = None) -> MaskSet:
    """The same objects at another frame rate (each output time takes the mask on screen then).

    The resampled length and size are checked against the budget before anything is allocated.
    """
    from mvideo_core.video_io import resample_indices

    fps = _check_fps(fps)
    budget = resolve(budget)
    wanted = maskset.num_frames * (fps / maskset.fps)
    budget.check(
        f"resampling {maskset.num_frames} mask frames from {maskset.fps:g} to {fps:g} fps",
        frames=math.ceil(wanted) if math.isfinite(wanted) else 10**30,
        height=maskset.size[0],
        width=maskset.size[1],
        count=max(1, maskset.num_objects),
        hint="check the frame rates (the file's and the one asked for)",
        error=MaskError,
    )
    idx = resample_indices(maskset.num_frames, maskset.fps, fps, budget)
    return MaskSet(maskset.masks[:, idx], fps, list(maskset.ids), list(maskset.names), dict(maskset.meta))


# .zip: PNG sequence ---------------------------------------------------------------------------------------------


def _index_json(maskset: MaskSet, layout: str) -> str:
    return json.dumps(
        {
            "format": "mvideo-masks",
            "version": 1,
            "layout": layout,
            "fps": maskset.fps,
            "num_frames": maskset.num_frames,
            "height": maskset.size[0],
            "width": maskset.size[1],
            "objects": [
                {"id": i, "name": n, "color": list(c)}
                for i, n, c in zip(maskset.ids, maskset.names, maskset.colors().tolist())
            ],
            "meta": _json_safe(maskset.meta),
        },
        indent=1,
    )


def _png_bytes(image: np.ndarray, bilevel: bool) -> bytes:
    params = [cv2.IMWRITE_PNG_BILEVEL, 1] if bilevel else [cv2.IMWRITE_PNG_COMPRESSION, 6]
    ok, data = cv2.imencode(".png", image, params)
    if not ok:
        raise MaskError("PNG encoding failed")
    return data.tobytes()


def _save_png_zip(maskset: MaskSet, path: Path) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_ZIP_INDEX, _index_json(maskset, "objects"))
        for k, obj_id in enumerate(maskset.ids):
            for t in range(maskset.num_frames):
                image = maskset.masks[k, t].astype(np.uint8) * 255
                archive.writestr(f"obj_{obj_id:03d}/{t:05d}.png", _png_bytes(image, bilevel=True))


def _save_label_png_zip(maskset: MaskSet, path: Path) -> None:
    if max(maskset.ids, default=0) > 255:
        raise MaskError(f"indexed label PNGs hold ids up to 255, got {max(maskset.ids)}; use .npz or the PNG zip")
    palette = np.zeros((256, 3), dtype=np.uint8)
    for obj_id, color in zip(maskset.ids, maskset.colors()):
        palette[obj_id] = color
    labels = maskset.label_map().astype(np.uint8)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_ZIP_INDEX, _index_json(maskset, "labels"))
        for t in range(maskset.num_frames):
            image = Image.fromarray(labels[t])
            image.putpalette(palette.ravel().tolist())  # L -> P: pixel values are the object ids
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=True)
            archive.writestr(f"{t:05d}.png", buffer.getvalue())


# PNG modes whose pixel values fit one byte (palette indices, grey, bilevel, grey-looking RGB).
_BYTE_MODES = ("P", "L", "1", "LA", "PA", "RGB", "RGBA")


def _open_png(data: bytes, name: str) -> Image.Image:
    """A PNG opened lazily: its header is read (size, mode), its pixels are not decoded yet."""
    try:
        return Image.open(io.BytesIO(data))
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        raise MaskError(f"{name} is not a readable PNG ({err}); export the masks again") from None


def _read_png(image: Image.Image, name: str) -> np.ndarray:
    """A PNG as a 2-D integer array: palette indices for indexed PNGs, values for grey, grey levels of grey RGB."""
    try:
        image.load()
        if image.mode in ("P", "L", "1", "I", "I;16"):
            return np.asarray(image)
        rgb = np.asarray(image.convert("RGB"))
    except MaskError:
        raise
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        raise MaskError(f"{name} is not a readable PNG ({err}); export the masks again") from None
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0]
    raise MaskError(
        f"{name} is a colour PNG; save label PNGs as indexed (palette) or greyscale images where the pixel value "
        "is the object id (0 = background)"
    )


def _read_member(archive: zipfile.ZipFile, name: str, budget: Budget, zip_name: str) -> bytes:
    """One zip member's bytes, refused before reading when it declares more than the budget (a zip bomb)."""
    size = archive.getinfo(name).file_size
    budget.check_bytes(f"{zip_name}: {name}", size, hint="the zip member is too large to read", error=MaskError)
    return archive.read(name)


def _natural(name: str) -> list:
    """Sort key that puts frame_9.png before frame_10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _load_zip(path: Path, fps: float | None, budget: Budget) -> MaskSet:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        index = None
        index_name = next((n for n in names if n.rsplit("/", 1)[-1] == _ZIP_INDEX), None)
        if index_name is not None:
            try:
                index = json.loads(_read_member(archive, index_name, budget, path.name))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise MaskError(
                    f"{path.name}: {index_name} is not valid JSON ({err}); export the masks again"
                ) from None
            if not isinstance(index, dict):
                raise MaskError(f"{path.name}: {index_name} is not a JSON object; export the masks again")
        pngs = sorted((n for n in names if n.lower().endswith(".png") and not n.startswith("__MACOSX")), key=_natural)
        if index is not None and index.get("layout") == "objects":
            return _load_object_pngs(path, archive, index, pngs, budget)
        if not pngs:
            raise MaskError(f"{path.name} holds no PNG files; a mask zip has one PNG per frame (and per object)")
        budget.check_frames(path.name, len(pngs), hint="the zip holds one PNG per frame", error=MaskError)
        images = [_open_png(_read_member(archive, name, budget, path.name), name) for name in pngs]  # headers only
    width, height = images[0].size
    for name, image in zip(pngs, images):
        if image.size != (width, height):
            raise MaskError(
                f"{path.name}: the PNGs have different sizes ({pngs[0]} is {width}x{height}, {name} is "
                f"{image.size[0]}x{image.size[1]}); all frames must match"
            )
    # labels [T, H, W] (one byte a pixel unless a PNG holds 16/32-bit values) and the sorted copy np.unique makes
    dtype = np.int32 if any(image.mode not in _BYTE_MODES for image in images) else np.uint8
    itemsize = np.dtype(dtype).itemsize
    _check_load(budget, path, frames=len(pngs), height=height, width=width, per_pixel=2 * itemsize)
    labels = np.empty((len(pngs), height, width), dtype=dtype)
    for t, (name, image) in enumerate(zip(pngs, images)):
        labels[t] = _read_png(image, name)
        images[t] = None  # its decoded pixels go with it
    values = np.unique(labels)
    if values[-1] == 255 and set(values.tolist()) <= {0, 255}:
        np.minimum(labels, 1, out=labels)  # black/white masks: one object
        values = np.array([0, 1])
    objects_found = int((values != 0).sum())  # the labels stay while each object's bool masks are made
    _check_load(budget, path, frames=len(pngs), height=height, width=width, per_pixel=itemsize + objects_found)
    index = index or {}
    try:
        objects = {int(o["id"]): str(o["name"]) for o in index.get("objects", [])}
    except (KeyError, TypeError, ValueError) as err:
        raise MaskError(
            f"{path.name}: {_ZIP_INDEX} has a malformed object list ({err}); export the masks again"
        ) from None
    file_fps = index.get("fps") or fps or DEFAULT_FPS
    meta = index.get("meta", {})
    meta = meta if isinstance(meta, dict) else {}
    if not objects:
        return MaskSet.from_label_map(labels, file_fps, **meta)
    # the index's objects in its order (kept even when never visible), then ids it did not list
    found = [int(i) for i in values if i != 0]
    order = list(objects) + [i for i in found if i not in objects]
    _check_load(budget, path, frames=len(pngs), height=height, width=width, count=len(order), per_pixel=1)
    masks = np.zeros((len(order), *labels.shape), dtype=bool)
    for k, obj_id in enumerate(order):
        if obj_id in found:
            np.equal(labels, obj_id, out=masks[k])
    names = [objects.get(i, f"object {i}") for i in order]
    return MaskSet(masks, file_fps, order, names, meta)


def _load_object_pngs(path: Path, archive: zipfile.ZipFile, index: dict, pngs: list[str], budget: Budget) -> MaskSet:
    try:
        t, h, w = index["num_frames"], index["height"], index["width"]
        objects = index["objects"]
        ids, names = [int(o["id"]) for o in objects], [str(o["name"]) for o in objects]
    except (KeyError, TypeError, ValueError) as err:
        raise MaskError(f"{path.name}: {_ZIP_INDEX} lacks {err}; export the masks again") from None
    _check_load(budget, path, frames=t, height=h, width=w, count=len(ids))
    t, h, w = int(t), int(h), int(w)
    present = set(pngs)
    masks = np.zeros((len(ids), t, h, w), dtype=bool)
    for k, obj_id in enumerate(ids):
        for i in range(t):
            name = f"obj_{obj_id:03d}/{i:05d}.png"
            if name not in present:
                raise MaskError(f"{path.name} is missing obj_{obj_id:03d}/{i:05d}.png; the zip is incomplete")
            image = _open_png(_read_member(archive, name, budget, path.name), name)
            if image.size != (w, h):
                raise MaskError(f"{path.name}: {name} is {image.size[0]}x{image.size[1]}, expected {w}x{h}")
            masks[k, i] = _read_png(image, name) > 0
    return MaskSet(masks, float(index.get("fps") or DEFAULT_FPS), ids, names, index.get("meta", {}))


# .npz ------------------------------------------------------------------------------------------------------------


def _save_npz(maskset: MaskSet, path: Path) -> None:
    with open(path, "wb") as handle:  # a file handle keeps numpy from appending .npz to other suffixes
        np.savez_compressed(
            handle,
            masks=np.packbits(maskset.masks, axis=-1),
            shape=np.array(maskset.masks.shape, dtype=np.int64),
            ids=np.array(maskset.ids, dtype=np.int64),
            names=np.array(maskset.names, dtype=np.str_),
            fps=np.array(maskset.fps, dtype=np.float64),
            meta=np.array(json.dumps(_json_safe(maskset.meta))),
        )


def _npy_headers(path: Path, budget: Budget) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an npz, read from the .npy headers without loading any data."""
    headers = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
                else:
                    raise MaskError(
                        f"{path.name}: {info.filename} has npy format {version}, save it with numpy >= 1.17"
                    )
            if dtype.hasobject:
                raise MaskError(f"{path.name} holds pickled objects; only plain numeric/str arrays are loaded")
            nbytes = math.prod(shape) * dtype.itemsize
            budget.check_bytes(
                f"{path.name}: {info.filename}", nbytes, hint="export fewer frames or a smaller size", error=MaskError
            )
            headers[info.filename[: -len(".npy")]] = (tuple(shape), dtype)
    return headers


def _load_npz(path: Path, fps: float | None, budget: Budget) -> MaskSet:
    with path.open("rb") as handle:
        if not handle.read(4).startswith(b"PK"):
            raise MaskError(f"{path.name} is not a readable npz file (no zip header); export the masks again")
    headers = _npy_headers(path, budget)
    if "masks" not in headers:
        raise MaskError(
            f"{path.name} has no 'masks' array (found {sorted(headers)}); save bool [K, T, H, W] as masks="
        )
    stored, dtype = headers["masks"]
    with np.load(path, allow_pickle=False) as data:
        if "shape" in data.files:  # packed by save_masks: bits along the last axis
            if len(headers["shape"][0]) != 1 or headers["shape"][0][0] not in (3, 4):
                raise MaskError(
                    f"{path.name}: 'shape' must list 3 or 4 sizes ([K,] T, H, W), got {headers['shape'][0]}"
                )
            shape = tuple(int(s) for s in data["shape"])
            if min(shape) < 0:
                raise MaskError(f"{path.name}: 'shape' {list(shape)} has a negative size; export the masks again")
            k, (t, h, w) = (shape[0] if len(shape) == 4 else 1), shape[-3:]
            _check_load(budget, path, frames=t, height=h, width=w, count=k)
            packed = (*shape[:-1], (shape[-1] + 7) // 8)
            if stored != packed or dtype != np.uint8:
                raise MaskError(
                    f"{path.name}: 'shape' says {list(shape)}, which packs to {list(packed)} uint8, but 'masks' holds "
                    f"{list(stored)} {dtype}; the file is inconsistent, export the masks again"
                )
            masks = np.unpackbits(data["masks"], axis=-1, count=shape[-1]).view(bool).reshape(shape)
        else:
            if len(stored) not in (3, 4):
                raise MaskError(f"{path.name}: 'masks' must be [K, T, H, W] or [T, H, W], got shape {list(stored)}")
            k, (t, h, w) = (stored[0] if len(stored) == 4 else 1), stored[-3:]
            # integer masks are checked by np.unique, which sorts a copy, and converted to bool
            per_pixel = 1 if dtype.kind == "b" else 2 * dtype.itemsize + 1
            _check_load(budget, path, frames=t, height=h, width=w, count=k, per_pixel=per_pixel)
            masks = data["masks"]
        names = [str(n) for n in data["names"]] if "names" in data.files else []
        if masks.ndim == 3:
            masks = masks[None]
        ids = [int(i) for i in np.atleast_1d(data["ids"])] if "ids" in data.files else []
        file_fps = float(data["fps"]) if "fps" in data.files else (fps or DEFAULT_FPS)
        try:
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
        except json.JSONDecodeError as err:
            raise MaskError(f"{path.name}: 'meta' is not valid JSON ({err}); export the masks again") from None
    return MaskSet(masks, file_fps, ids, names, meta if isinstance(meta, dict) else {})


# .mp4: label video -----------------------------------------------------------------------------------------------


def _combinations(maskset: MaskSet) -> tuple[np.ndarray, list[list[int]]]:
    """Per-pixel code of which objects are present, int [T, H, W] (0 = none), and each code's object ids."""
    k = maskset.num_objects
    if k == 0:
        return np.zeros((maskset.num_frames, *maskset.size), dtype=np.int64), [[]]
    bits = np.zeros((maskset.num_frames, *maskset.size), dtype=np.int64)  # [T, H, W] bit set of objects
    for j in range(k):
        bits[maskset.masks[j]] |= 1 << j
    present, codes = np.unique(bits, return_inverse=True)
    if present[0] != 0:  # keep code 0 for the background even when every pixel is covered
        present = np.concatenate([[0], present])
        codes = codes + 1
    combos = [[maskset.ids[j] for j in range(k) if (int(b) >> j) & 1] for b in present]
    return codes.reshape(bits.shape), combos


def _levels(count: int) -> np.ndarray:
    """`count` well separated luma levels in 16..235 (video range); 16 is the background."""
    return np.round(16 + np.arange(count) * (219 / max(1, count - 1))).astype(np.int64)


def _save_label_video(maskset: MaskSet, path: Path) -> None:
    codes, combos = _combinations(maskset)
    if len(combos) > 64:
        raise MaskError(
            f"{len(combos)} different object overlaps are too many for a label video (at most 64, so grey levels "
            "stay apart); save as .npz or .zip instead"
        )
    levels = _levels(len(combos))
    t, h, w = codes.shape
    ph, pw = h + h % 2, w + w % 2  # yuv420p needs even sizes; the size is stored and cropped back on load
    tag = {
        "format": _LABEL_VIDEO_TAG,
        "version": 1,
        "fps": maskset.fps,
        "height": h,
        "width": w,
        "ids": maskset.ids,
        "names": maskset.names,
        "levels": levels.tolist(),
        "combos": combos,
        "meta": _json_safe(maskset.meta),
    }
    rate = Fraction(maskset.fps).limit_denominator(1001)
    # faststart: the index and the tag lead the file, so a truncated copy loses frames (detected), not the tag
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        container.metadata["comment"] = json.dumps(tag)
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"qp": "0", "preset": "veryfast"}  # lossless luma
        yuv = np.full((ph * 3 // 2, pw), 128, dtype=np.uint8)  # planar Y then U, V (neutral chroma)
        for i in range(t):
            yuv[:ph] = 16
            yuv[:h, :w] = levels[codes[i]]
            if ph > h:
                yuv[h:ph, :w] = yuv[h - 1, :w]
            if pw > w:
                yuv[:ph, w:pw] = yuv[:ph, w - 1 : w]
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _label_tag(path: Path, container: av.container.InputContainer) -> dict | None:
    """The label video's JSON tag (ids, names, levels, combos), validated; None for a plain mask video."""
    comment = container.metadata.get("comment", "") or "null"
    try:
        tag = json.loads(comment)
    except json.JSONDecodeError:
        if _LABEL_VIDEO_TAG in comment:  # our tag, damaged: the objects cannot be told apart
            raise MaskError(
                f"{path.name}: the label tag is damaged (not valid JSON); export the label video again"
            ) from None
        return None
    if not (isinstance(tag, dict) and tag.get("format") == _LABEL_VIDEO_TAG):
        return None
    try:
        ids = [int(i) for i in tag["ids"]]
        names = [str(n) for n in tag["names"]]
        levels = [int(v) for v in tag["levels"]]
        combos = [[int(i) for i in combo] for combo in tag["combos"]]
        height, width = int(tag["height"]), int(tag["width"])
        fps = float(tag.get("fps") or 0) or None
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise MaskError(f"{path.name}: the label tag is malformed ({err!r}); export the label video again") from None
    problems = [
        (len(ids) != len(names), "ids and names differ in length"),
        (len(levels) != len(combos) or not 1 <= len(levels) <= 256, "levels and combos differ in length"),
        (any(not 0 <= v <= 255 for v in levels), "a level outside 0..255"),
        (any(i not in ids for combo in combos for i in combo), "a combo names an unknown id"),
        (height < 1 or width < 1, f"size {width}x{height}"),
    ]
    for bad, what in problems:
        if bad:
            raise MaskError(f"{path.name}: the label tag is malformed ({what}); export the label video again")
    return {
        **tag,
        "ids": ids,
        "names": names,
        "levels": levels,
        "combos": combos,
        "height": height,
        "width": width,
        "fps": fps,
    }


def _load_label_video(path: Path, fps: float | None, budget: Budget) -> MaskSet:
    try:
        container = av.open(str(path), "r", metadata_errors="replace")
    except av.error.FFmpegError as err:
        raise MaskError(f"{path.name} is not a readable video ({err}); export the label video again") from None
    with container:
        if not container.streams.video:
            raise MaskError(f"{path.name} has no video stream; a label video is an .mp4 of grey levels")
        stream = container.streams.video[0]
        tag = _label_tag(path, container)
        if stream.codec_context is None:
            raise MaskError(f"{path.name}: its video codec is unknown; export the label video again")
        coded_h, coded_w = stream.codec_context.height, stream.codec_context.width
        h, w = (tag["height"], tag["width"]) if tag else (coded_h, coded_w)
        if tag and (h > coded_h or w > coded_w):
            raise MaskError(f"{path.name}: the tag says {w}x{h} but the video is {coded_w}x{coded_h}; export it again")
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        declared = max(int(stream.frames or 0), math.ceil(duration * rate) if math.isfinite(duration * rate) else 0, 1)
        ids = tag["ids"] if tag else [1]
        _check_load(budget, path, frames=declared, height=h, width=w, count=len(ids))
        if tag is not None:
            levels = np.asarray(tag["levels"], dtype=np.int64)
            nearest = np.abs(np.arange(256)[:, None] - levels[None]).argmin(axis=1).astype(np.uint8)  # value -> code
            # per code, the object indices present there (code 0 is the background)
            members = [[ids.index(i) for i in combo] for combo in tag["combos"]]
        masks = np.zeros((len(ids), declared, h, w), dtype=bool)  # [K, T, H, W], filled frame by frame
        count = 0
        try:
            for frame in container.decode(stream):
                if count == masks.shape[1]:  # more frames than the container declared: grow within the budget
                    grow = max(8, count // 4)
                    _check_load(budget, path, frames=count + grow, height=h, width=w, count=2 * len(ids))
                    masks = np.concatenate([masks, np.zeros_like(masks[:, :grow])], axis=1)
                if (frame.height, frame.width) != (coded_h, coded_w):
                    raise MaskError(f"{path.name}: frame {count} changes size; export the label video again")
                if frame.format.name in ("yuv420p", "yuv422p", "yuv444p"):
                    luma = frame.to_ndarray()[: frame.height]  # the Y plane as stored (video range)
                else:
                    luma = frame.to_ndarray(format="gray")
                if tag is None:  # a plain black/white mask video from another tool: one object
                    masks[0, count] = luma >= 126
                else:
                    codes = nearest[luma[:h, :w]]  # nearest level: robust to a lossy re-encode
                    for code, objects in enumerate(members):
                        if objects:
                            hit = codes == code
                            for k in objects:
                                masks[k, count] |= hit
                count += 1
        except av.error.FFmpegError as err:
            if not count:
                raise MaskError(
                    f"{path.name}: no frame decodes ({err}); the file is corrupt, export it again"
                ) from None
        if not count:
            raise MaskError(f"{path.name} has no frames; export the label video again")
        if stream.frames and count < stream.frames:
            raise MaskError(
                f"{path.name} is truncated or corrupt: {count} of its {stream.frames} frames decode; "
                "export the label video again"
            )
        file_fps = rate or (fps or DEFAULT_FPS)
    masks = masks[:, :count] if count == masks.shape[1] else masks[:, :count].copy()
    if tag is None:
        return MaskSet(masks, file_fps, [1], ["object 1"])
    meta = tag.get("meta", {})
    return MaskSet(masks, tag["fps"] or file_fps, ids, tag["names"], meta if isinstance(meta, dict) else {})


# .json: COCO RLE -------------------------------------------------------------------------------------------------


def _save_coco(maskset: MaskSet, path: Path) -> None:
    t, (h, w) = maskset.num_frames, maskset.size
    categories = sorted(set(maskset.names))
    annotations = []
    for k, obj_id in enumerate(maskset.ids):
        stack = np.asfortranarray(maskset.masks[k].transpose(1, 2, 0).astype(np.uint8))  # [H, W, T] for pycocotools
        rles = mask_utils.encode(stack)
        areas = maskset.masks[k].reshape(t, -1).sum(axis=1)
        segmentations, bboxes = [], []
        for i, rle in enumerate(rles):
            if areas[i] == 0:
                segmentations.append(None)
                bboxes.append(None)
                continue
            segmentations.append({"size": [h, w], "counts": rle["counts"].decode("ascii")})
            bboxes.append([float(v) for v in mask_utils.toBbox(rle)])
        annotations.append(
            {
                "id": obj_id,
                "video_id": 1,
                "category_id": categories.index(maskset.names[k]) + 1,
                "name": maskset.names[k],
                "iscrowd": 0,
                "segmentations": segmentations,
                "areas": [int(a) if a else None for a in areas],
                "bboxes": bboxes,
            }
        )
    doc = {
        "info": {"description": "MVideo Studio masks", "format": "youtube-vis / COCO RLE", "version": 1},
        "videos": [{"id": 1, "width": w, "height": h, "length": t, "fps": maskset.fps}],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(categories)],
        "annotations": annotations,
        "mvideo": {"fps": maskset.fps, "ids": maskset.ids, "names": maskset.names, "meta": _json_safe(maskset.meta)},
    }
    path.write_text(json.dumps(doc))


def _rle_string_counts(counts: str) -> list[int] | None:
    """The run lengths of a COCO compressed RLE string (pycocotools' rleFrString), or None when it is malformed."""
    runs: list[int] = []
    value, shift = 0, 0
    for char in counts:
        c = ord(char) - 48
        if not 0 <= c < 64:
            return None
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:
            continue
        if c & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value, shift = 0, 0
    return None if shift else runs


def _decode_rle(rle: Any, h: int, w: int, where: str) -> np.ndarray:
    """One frame's RLE as bool [H, W]; its runs must be non-negative and cover exactly H x W pixels."""
    if rle is None:
        return np.zeros((h, w), dtype=bool)
    if not isinstance(rle, dict) or "counts" not in rle:
        raise MaskError(f"{where}: expected an RLE {{'size': [h, w], 'counts': ...}}, got {str(rle)[:60]}")
    try:
        size = [int(s) for s in rle.get("size", (h, w))]
    except (TypeError, ValueError):
        size = None
    if size != [h, w]:
        raise MaskError(f"{where}: RLE size {str(rle.get('size'))[:40]} does not match the video size {[h, w]}")
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        runs = counts if all(isinstance(c, int) and not isinstance(c, bool) for c in counts) else None
    elif isinstance(counts, str):
        runs = _rle_string_counts(counts)
    else:
        runs = None
    if runs is None or any(r < 0 for r in runs) or sum(runs) != h * w:
        raise MaskError(
            f"{where}: the RLE counts are malformed (they must be non-negative runs covering {h}x{w} pixels); "
            "export the masks again"
        )
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def _video_field(doc: dict, video: dict, key: str, path: Path) -> object:
    if key not in video:
        raise MaskError(f"{path.name}: the video entry lacks '{key}'; export the masks again")
    return video[key]


def _load_coco(path: Path, fps: float | None, budget: Budget) -> MaskSet:
    budget.check_bytes(path.name, 8 * path.stat().st_size, hint="the JSON text is too large", error=MaskError)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MaskError(f"{path.name} is not valid JSON ({err}); export the masks again") from None
    if isinstance(doc, dict) and "masklet" in doc:
        return _load_sav(path, doc, fps, budget)
    if not isinstance(doc, dict) or "annotations" not in doc or "videos" not in doc:
        raise MaskError(
            f"{path.name} is JSON but not COCO-style video masks: expected 'videos' and 'annotations' with per-frame "
            "RLE 'segmentations' (YouTube-VIS layout) or an SA-V 'masklet'"
        )
    if not isinstance(doc["videos"], list) or not isinstance(doc["annotations"], list):
        raise MaskError(f"{path.name}: 'videos' and 'annotations' must be lists; export the masks again")
    if not doc["videos"]:
        raise MaskError(f"{path.name} lists no videos")
    video = doc["videos"][0]
    if not isinstance(video, dict):
        raise MaskError(f"{path.name}: the video entry is not an object; export the masks again")
    h, w = _video_field(doc, video, "height", path), _video_field(doc, video, "width", path)
    extra = doc.get("mvideo") if isinstance(doc.get("mvideo"), dict) else {}
    anns = [
        a for a in doc["annotations"] if isinstance(a, dict) and a.get("video_id", video.get("id")) == video.get("id")
    ]
    segments = [a.get("segmentations") for a in anns]
    t = video.get("length") or max((len(s) for s in segments if isinstance(s, list)), default=0)
    if t == 0:
        raise MaskError(f"{path.name} has no frames (video length 0 and no segmentations)")
    _check_load(budget, path, frames=t, height=h, width=w, count=len(anns))
    t, h, w = int(t), int(h), int(w)
    categories = {c.get("id"): c.get("name") for c in doc.get("categories", []) if isinstance(c, dict)}
    masks = np.zeros((len(anns), t, h, w), dtype=bool)
    ids, names = [], []
    for k, (ann, segs) in enumerate(zip(anns, segments)):
        if not isinstance(segs, list):
            raise MaskError(f"{path.name}: annotation {ann.get('id')} has no 'segmentations' list")
        if len(segs) != t:
            raise MaskError(f"{path.name}: annotation {ann.get('id')} has {len(segs)} frames, the video has {t}")
        for i, rle in enumerate(segs):
            masks[k, i] = _decode_rle(rle, h, w, f"{path.name} annotation {ann.get('id')} frame {i}")
        ids.append(int(ann.get("id", k + 1)))
        names.append(str(ann.get("name") or categories.get(ann.get("category_id"), f"object {ids[-1]}")))
    if len(set(ids)) != len(ids) or min(ids, default=1) < 1:
        ids = list(range(1, len(anns) + 1))
    file_fps = extra.get("fps") or video.get("fps") or fps or DEFAULT_FPS
    meta = extra.get("meta", {})
    return MaskSet(masks, float(file_fps), ids, names, meta if isinstance(meta, dict) else {})


def _load_sav(path: Path, doc: dict, fps: float | None, budget: Budget) -> MaskSet:
    """SA-V style: `masklet[t][k]` is the RLE of object k at annotated frame t."""
    frames = doc["masklet"]
    if not isinstance(frames, list) or not all(isinstance(per, list) for per in frames):
        raise MaskError(f"{path.name}: the masklet must be a list (frames) of lists (objects) of RLEs")
    if not frames:
        raise MaskError(f"{path.name}: the masklet is empty")
    first = next((r for per in frames for r in per if isinstance(r, dict)), None) or {}
    size = first.get("size") if isinstance(first.get("size"), list) and len(first["size"]) == 2 else [0, 0]
    h = doc.get("video_height") or size[0]
    w = doc.get("video_width") or size[1]
    k = max(len(per) for per in frames)
    _check_load(budget, path, frames=len(frames), height=h, width=w, count=k)
    h, w = int(h), int(w)
    masks = np.zeros((k, len(frames), h, w), dtype=bool)
    for i, per in enumerate(frames):
        for j, rle in enumerate(per):
            masks[j, i] = _decode_rle(rle, h, w, f"{path.name} masklet frame {i} object {j}")
    ids = [int(i) + 1 for i in doc.get("masklet_id", range(k))]
    file_fps = fps or (float(doc["video_frame_rate"]) / 4 if doc.get("video_frame_rate") else DEFAULT_FPS)
    return MaskSet(masks, file_fps, ids if len(set(ids)) == k else [])


# -- overlay rendering -----------------------------------------------------------------------------------------


def _label_anchor(mask: np.ndarray) -> tuple[int, int] | None:
    """(x, y) just above the object's top-centre, for its name; None when the object is absent."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]])
    return int(cols.mean()), int(rows[0])


def _check_overlay(maskset: MaskSet, alpha: float) -> None:
    if not isinstance(maskset, MaskSet):
        raise MaskError(f"render_overlay needs a MaskSet, got {type(maskset).__name__}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise MaskError(f"alpha must be in [0, 1], got {alpha}")


def _overlay_frame(image: np.ndarray, maskset: MaskSet, t: int, alpha: float, labels: bool) -> np.ndarray:
    """Frame t (uint8 [H, W, 3], changed in place) with each object tinted in its colour, outlined and named."""
    colors = maskset.colors().astype(np.float32)
    h, w = image.shape[:2]
    scale = max(0.35, min(h, w) / 480)
    thickness = max(1, round(scale * 1.5))
    for k in range(maskset.num_objects):
        mask = maskset.masks[k, t]
        if not mask.any():
            continue
        image[mask] = (image[mask] * (1 - alpha) + colors[k] * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(image, contours, -1, tuple(int(c) for c in colors[k]), thickness)
    if labels:
        for k in range(maskset.num_objects):
            anchor = _label_anchor(maskset.masks[k, t])
            if anchor is None:
                continue
            text = maskset.names[k]
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
            x = int(np.clip(anchor[0] - tw // 2, 0, max(0, w - tw)))
            y = int(np.clip(anchor[1] - 4, th + 2, h - base))
            color = tuple(int(c) for c in colors[k])
            cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
            cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)
    return image


def render_overlay(frames: np.ndarray, maskset: MaskSet, alpha: float = 0.5, labels: bool = True) -> np.ndarray:
    """Frames uint8 [T, H, W, 3] with each object tinted in its colour, outlined, and (optionally) named."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MaskError(
            f"frames must be uint8 [T, H, W, 3], got {getattr(frames, 'dtype', type(frames).__name__)} "
            f"{tuple(getattr(frames, 'shape', ()))}"
        )
    _check_overlay(maskset, alpha)
    maskset.check_matches_video(*frames.shape[:3])
    out = frames.copy()
    for t in range(frames.shape[0]):
        _overlay_frame(out[t], maskset, t, alpha, labels)
    return out


def overlay_frames(
    frames: Iterable[np.ndarray], maskset: MaskSet, alpha: float = 0.5, labels: bool = True
) -> Iterator[np.ndarray]:
    """The overlay one frame at a time (frames uint8 [H, W, 3] at the masks' size, as a decoder yields them): a long
    video's overlay never sits in memory whole."""
    _check_overlay(maskset, alpha)
    size = maskset.size
    for t, frame in enumerate(frames):
        if t >= maskset.num_frames:
            raise MaskError(f"the video has more frames than the masks ({maskset.num_frames})")
        if frame.shape[:2] != size or frame.dtype != np.uint8:
            raise MaskError(f"frame {t} is {frame.dtype} {frame.shape}; the masks are {size[0]}x{size[1]}")
        yield _overlay_frame(frame.copy(), maskset, t, alpha, labels)


def write_overlay_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    maskset: MaskSet,
    fps: float | None = None,
    **overlay: Any,
) -> Path:
    """Render the overlay and write it as a fast H.264 preview clip (x264 ultrafast). `frames`: uint8 [T, H, W, 3],
    or an iterable of [H, W, 3] frames (e.g. `video_io.iter_frames`): rendered and encoded one at a time."""
    from mvideo_core.video_io import write_clip

    if isinstance(frames, np.ndarray):
        return write_clip(path, render_overlay(frames, maskset, **overlay), fps or maskset.fps)
    return write_clip(path, overlay_frames(frames, maskset, **overlay), fps or maskset.fps)
