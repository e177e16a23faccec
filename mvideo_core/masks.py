"""Mask sequences: the motion condition of MVideo.

A `MaskSequence` is one subject's silhouette over time, bool `[T, H, W]` with its fps. A `MaskSet` holds several
named subjects with stable ids, bool `[K, T, H, W]`; the model receives its union, one binary sequence, as in the
paper. Import/export formats live beside the types so that every tool speaks the same files.
"""

from __future__ import annotations

import colorsys
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils


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
        masks = np.stack([labels == i for i in ids]) if ids else np.zeros((0, *labels.shape), dtype=bool)
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
_SUFFIX_FORMAT = {".zip": "zip", ".npz": "npz", ".mp4": "mp4", ".json": "json"}
_ZIP_INDEX = "masks.json"
_LABEL_VIDEO_TAG = "mvideo-label-video"
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
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = {
        "zip": _save_png_zip,
        "zip-labels": _save_label_png_zip,
        "npz": _save_npz,
        "mp4": _save_label_video,
        "json": _save_coco,
    }[fmt]
    writer(maskset, path)
    return path


def load_masks(path: str | os.PathLike, fps: float | None = None) -> MaskSet:
    """Read a mask file written by `save_masks` or by common tools (DAVIS label PNGs, SAM2/YouTube-VIS RLE JSON).

    `fps`: files without a frame rate are taken to be at this rate (default 8); files with another rate are
    resampled to it by time.
    """
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
        maskset = reader(path, fps)
    except MaskError:
        raise
    except (ValueError, KeyError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise MaskError(f"{path.name} is not a readable {fmt} mask file ({err}); export it again") from err
    if fps is not None and abs(maskset.fps - float(fps)) > 1e-6:
        maskset = resample_maskset(maskset, float(fps))
    return maskset


def _sniff_format(path: Path) -> str:
    head = path.read_bytes()[:64]
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
    except zipfile.BadZipFile:
        return False


def resample_maskset(maskset: MaskSet, fps: float) -> MaskSet:
    """The same objects at another frame rate (each output time takes the mask on screen then)."""
    from mvideo_core.video_io import resample_indices

    idx = resample_indices(maskset.num_frames, maskset.fps, fps)
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


def _read_png(data: bytes, name: str) -> np.ndarray:
    """A PNG as a 2-D integer array: palette indices for indexed PNGs, values for grey, ids by colour for RGB."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        raise MaskError(f"{name} is not a readable PNG ({err}); export the masks again") from err
    if image.mode in ("P", "L", "1", "I", "I;16"):
        return np.asarray(image).astype(np.int64)
    rgb = np.asarray(image.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0].astype(np.int64)
    raise MaskError(
        f"{name} is a colour PNG; save label PNGs as indexed (palette) or greyscale images where the pixel value "
        "is the object id (0 = background)"
    )


def _natural(name: str) -> list:
    """Sort key that puts frame_9.png before frame_10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _load_zip(path: Path, fps: float | None) -> MaskSet:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        index = None
        index_name = next((n for n in names if n.rsplit("/", 1)[-1] == _ZIP_INDEX), None)
        if index_name is not None:
            try:
                index = json.loads(archive.read(index_name))
            except json.JSONDecodeError as err:
                raise MaskError(
                    f"{path.name}: {index_name} is not valid JSON ({err}); export the masks again"
                ) from err
        pngs = sorted((n for n in names if n.lower().endswith(".png") and not n.startswith("__MACOSX")), key=_natural)
        if index is not None and index.get("layout") == "objects":
            return _load_object_pngs(path, archive, index, pngs)
        if not pngs:
            raise MaskError(f"{path.name} holds no PNG files; a mask zip has one PNG per frame (and per object)")
        frames = [_read_png(archive.read(n), n) for n in pngs]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise MaskError(f"{path.name}: the PNGs have different sizes {sorted(shapes)}; all frames must match")
    labels = np.stack(frames)
    if labels.max() == 255 and set(np.unique(labels).tolist()) <= {0, 255}:
        labels = (labels > 0).astype(np.int64)  # black/white masks: one object
    objects = {o["id"]: o["name"] for o in (index or {}).get("objects", [])}
    file_fps = (index or {}).get("fps") or fps or DEFAULT_FPS
    meta = (index or {}).get("meta", {})
    result = MaskSet.from_label_map(labels, file_fps, names=objects, **meta)
    if objects:  # keep objects that were saved but never visible
        for obj_id, name in objects.items():
            if obj_id not in result.ids:
                result = result.with_object(np.zeros(labels.shape, dtype=bool), name, obj_id)
        order = [result.index_of(i) for i in objects]
        order += [k for k in range(result.num_objects) if k not in order]  # ids the index did not list
        result = MaskSet(
            result.masks[order], result.fps, [result.ids[k] for k in order], [result.names[k] for k in order], meta
        )
    return result


def _load_object_pngs(path: Path, archive: zipfile.ZipFile, index: dict, pngs: list[str]) -> MaskSet:
    try:
        t, h, w = int(index["num_frames"]), int(index["height"]), int(index["width"])
        objects = index["objects"]
        ids, names = [int(o["id"]) for o in objects], [str(o["name"]) for o in objects]
    except (KeyError, TypeError, ValueError) as err:
        raise MaskError(f"{path.name}: {_ZIP_INDEX} lacks {err}; export the masks again") from err
    present = set(pngs)
    masks = np.zeros((len(ids), t, h, w), dtype=bool)
    for k, obj_id in enumerate(ids):
        for i in range(t):
            name = f"obj_{obj_id:03d}/{i:05d}.png"
            if name not in present:
                raise MaskError(f"{path.name} is missing obj_{obj_id:03d}/{i:05d}.png; the zip is incomplete")
            image = _read_png(archive.read(name), name)
            if image.shape != (h, w):
                raise MaskError(f"{path.name}: {name} is {image.shape[1]}x{image.shape[0]}, expected {w}x{h}")
            masks[k, i] = image > 0
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


def _load_npz(path: Path, fps: float | None) -> MaskSet:
    if not path.read_bytes()[:4].startswith(b"PK"):
        raise MaskError(f"{path.name} is not a readable npz file (no zip header); export the masks again")
    with np.load(path, allow_pickle=False) as data:
        if "masks" not in data.files:
            raise MaskError(f"{path.name} has no 'masks' array (found {data.files}); save bool [K, T, H, W] as masks=")
        try:
            masks = data["masks"]
            names = [str(n) for n in data["names"]] if "names" in data.files else []
        except ValueError as err:  # object arrays need pickle, which is never loaded
            raise MaskError(f"{path.name} holds pickled objects; only plain numeric/str arrays are loaded") from err
        if "shape" in data.files:  # packed by save_masks
            shape = tuple(int(s) for s in data["shape"])
            masks = np.unpackbits(masks, axis=-1, count=shape[-1]).astype(bool).reshape(shape)
        if masks.ndim == 3:
            masks = masks[None]
        ids = [int(i) for i in data["ids"]] if "ids" in data.files else []
        file_fps = float(data["fps"]) if "fps" in data.files else (fps or DEFAULT_FPS)
        meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    return MaskSet(masks, file_fps, ids, names, meta)


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
    with av.open(str(path), "w", format="mp4") as container:
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


def _load_label_video(path: Path, fps: float | None) -> MaskSet:
    try:
        container = av.open(str(path), "r")
    except av.error.FFmpegError as err:
        raise MaskError(f"{path.name} is not a readable video ({err}); export the label video again") from err
    with container:
        if not container.streams.video:
            raise MaskError(f"{path.name} has no video stream; a label video is an .mp4 of grey levels")
        stream = container.streams.video[0]
        try:
            tag = json.loads(container.metadata.get("comment", "") or "null")
        except json.JSONDecodeError:
            tag = None
        if not (isinstance(tag, dict) and tag.get("format") == _LABEL_VIDEO_TAG):
            tag = None
        lumas = []
        try:
            for frame in container.decode(stream):
                if frame.format.name in ("yuv420p", "yuv422p", "yuv444p"):
                    lumas.append(frame.to_ndarray()[: frame.height])  # the Y plane as stored (video range)
                else:
                    lumas.append(frame.to_ndarray(format="gray"))
        except av.error.FFmpegError as err:
            if not lumas:
                raise MaskError(
                    f"{path.name}: no frame decodes ({err}); the file is corrupt, export it again"
                ) from err
        if not lumas:
            raise MaskError(f"{path.name} has no frames; export the label video again")
        file_fps = float(stream.average_rate) if stream.average_rate else (fps or DEFAULT_FPS)
    luma = np.stack(lumas)  # uint8 [T, H, W]
    if tag is None:  # a plain black/white mask video from another tool: one object
        return MaskSet(luma[None] >= 126, file_fps, [1], ["object 1"])
    h, w = int(tag["height"]), int(tag["width"])
    levels = np.asarray(tag["levels"], dtype=np.int64)
    nearest = np.abs(np.arange(256)[:, None] - levels[None]).argmin(axis=1).astype(np.uint8)  # value -> code
    codes = nearest[luma[:, :h, :w]]  # nearest level: robust to a lossy re-encode
    ids = [int(i) for i in tag["ids"]]
    masks = np.zeros((len(ids), *codes.shape), dtype=bool)
    for code, combo in enumerate(tag["combos"]):
        hit = codes == code
        for obj_id in combo:
            masks[ids.index(int(obj_id))] |= hit
    return MaskSet(masks, float(tag.get("fps") or file_fps), ids, [str(n) for n in tag["names"]], tag.get("meta", {}))


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


def _decode_rle(rle: Any, h: int, w: int, where: str) -> np.ndarray:
    if rle is None:
        return np.zeros((h, w), dtype=bool)
    if not isinstance(rle, dict) or "counts" not in rle:
        raise MaskError(f"{where}: expected an RLE {{'size': [h, w], 'counts': ...}}, got {str(rle)[:60]}")
    size = [int(s) for s in rle.get("size", (h, w))]
    if size != [h, w]:
        raise MaskError(f"{where}: RLE size {size} does not match the video size {[h, w]}")
    if isinstance(rle["counts"], list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(rle, h, w)
    return mask_utils.decode(rle).astype(bool)


def _load_coco(path: Path, fps: float | None) -> MaskSet:
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MaskError(f"{path.name} is not valid JSON ({err}); export the masks again") from err
    if isinstance(doc, dict) and "masklet" in doc:
        return _load_sav(path, doc, fps)
    if not isinstance(doc, dict) or "annotations" not in doc or "videos" not in doc:
        raise MaskError(
            f"{path.name} is JSON but not COCO-style video masks: expected 'videos' and 'annotations' with per-frame "
            "RLE 'segmentations' (YouTube-VIS layout) or an SA-V 'masklet'"
        )
    if not doc["videos"]:
        raise MaskError(f"{path.name} lists no videos")
    video = doc["videos"][0]
    h, w = int(video["height"]), int(video["width"])
    extra = doc.get("mvideo", {})
    anns = [a for a in doc["annotations"] if a.get("video_id", video.get("id")) == video.get("id")]
    t = int(video.get("length") or max((len(a.get("segmentations", [])) for a in anns), default=0))
    if t == 0:
        raise MaskError(f"{path.name} has no frames (video length 0 and no segmentations)")
    categories = {c["id"]: c["name"] for c in doc.get("categories", [])}
    masks = np.zeros((len(anns), t, h, w), dtype=bool)
    ids, names = [], []
    for k, ann in enumerate(anns):
        segs = ann.get("segmentations")
        if segs is None:
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
    return MaskSet(masks, float(file_fps), ids, names, extra.get("meta", {}))


def _load_sav(path: Path, doc: dict, fps: float | None) -> MaskSet:
    """SA-V style: `masklet[t][k]` is the RLE of object k at annotated frame t."""
    frames = doc["masklet"]
    if not frames:
        raise MaskError(f"{path.name}: the masklet is empty")
    first = next((r for per in frames for r in per if r), None)
    h = int(doc.get("video_height") or (first or {}).get("size", [0, 0])[0])
    w = int(doc.get("video_width") or (first or {}).get("size", [0, 0])[1])
    k = max(len(per) for per in frames)
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


def render_overlay(frames: np.ndarray, maskset: MaskSet, alpha: float = 0.5, labels: bool = True) -> np.ndarray:
    """Frames uint8 [T, H, W, 3] with each object tinted in its colour, outlined, and (optionally) named."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MaskError(
            f"frames must be uint8 [T, H, W, 3], got {getattr(frames, 'dtype', type(frames).__name__)} "
            f"{tuple(getattr(frames, 'shape', ()))}"
        )
    if not isinstance(maskset, MaskSet):
        raise MaskError(f"render_overlay needs a MaskSet, got {type(maskset).__name__}")
    maskset.check_matches_video(*frames.shape[:3])
    if not 0.0 <= float(alpha) <= 1.0:
        raise MaskError(f"alpha must be in [0, 1], got {alpha}")
    out = frames.copy()
    colors = maskset.colors().astype(np.float32)
    h, w = frames.shape[1:3]
    scale = max(0.35, min(h, w) / 480)
    thickness = max(1, round(scale * 1.5))
    for t in range(frames.shape[0]):
        image = out[t]
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
                cv2.putText(
                    image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA
                )
                cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)
    return out


def write_overlay_video(
    path: str | os.PathLike, frames: np.ndarray, maskset: MaskSet, fps: float | None = None, **overlay: Any
) -> Path:
    """Render the overlay and write it as a fast H.264 preview clip (x264 ultrafast)."""
    from mvideo_core.video_io import write_clip

    return write_clip(path, render_overlay(frames, maskset, **overlay), fps or maskset.fps)
