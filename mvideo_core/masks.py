"""Mask sequences: the motion condition of MVideo.

A `MaskSequence` is one subject's silhouette over time, bool `[T, H, W]` with its fps. A `MaskSet` holds several
named subjects with stable ids, bool `[K, T, H, W]`; the model receives its union, one binary sequence, as in the
paper. Import/export formats live beside the types so that every tool speaks the same files.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
