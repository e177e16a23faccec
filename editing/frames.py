"""A layer's frames on the target canvas, kept as views of its source frames until an edit needs an array.

`LayerFrames` holds, per target frame, a view of one source frame (None where the layer is absent), the affine that
puts it on the canvas (its resize for `fit`; None when the source is already the target's size) and its bounding box.
Affine edits (transform, terrain, path) compose their matrices with that resize and warp each frame's bounding box
once, straight into their output: nothing is gathered, resized or scanned whole. Other edits get an array.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from editing.composite import fit_size
from editing.transforms import Box, anchor_point, check_anchor, mask_bbox, warp_into
from mvideo_core.video_io import _geometry  # the geometry `resize_masks` uses, so both put a source in one place


def fit_matrix(src: tuple[int, int], dst: tuple[int, int], fit: str) -> np.ndarray | None:
    """2x3 affine taking pixel (x, y) of an (h, w) = `src` frame onto a `dst` canvas as `resize_masks(fit)` places
    it; None when it is the identity (same size)."""
    if tuple(src) == tuple(dst):
        return None
    geo = _geometry(tuple(src), tuple(dst), fit)
    (h, w), (top, left), (pt, pl) = geo.scaled, geo.crop, geo.pad
    sx, sy = w / src[1], h / src[0]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5 - left + pl], [0.0, sy, 0.5 * sy - 0.5 - top + pt]])


def _visible(frame: np.ndarray, box: Box, m: np.ndarray, size: tuple[int, int]) -> Box | None:
    """`box` of a source frame cut to the source pixels whose centres land on the canvas under `m`, tightened."""
    (h, w), (sh, sw) = size, frame.shape
    lo_x, hi_x = int(np.ceil((-0.5 - m[0, 2]) / m[0, 0])), int(np.floor((w - 0.5 - m[0, 2]) / m[0, 0]))
    lo_y, hi_y = int(np.ceil((-0.5 - m[1, 2]) / m[1, 1])), int(np.floor((h - 0.5 - m[1, 2]) / m[1, 1]))
    y0, y1, x0, x1 = max(box[0], lo_y, 0), min(box[1], hi_y + 1, sh), max(box[2], lo_x, 0), min(box[3], hi_x + 1, sw)
    if (y0, y1, x0, x1) == tuple(box):
        return box
    if y0 >= y1 or x0 >= x1:
        return None
    inner = mask_bbox(frame[y0:y1, x0:x1])
    return None if inner is None else (y0 + inner[0], y0 + inner[1], x0 + inner[2], x0 + inner[3])


def _edge(m: np.ndarray, axis: int, edge: float) -> float:
    """Where pixel edge `edge` (x if axis 0, y if 1) of a source lands on the canvas, in edge coordinates."""
    return m[axis, axis] * (edge - 0.5) + m[axis, 2] + 0.5


def compose(outer: np.ndarray, inner: np.ndarray | None) -> np.ndarray:
    """The 2x3 affine `outer` after `inner` (None: identity)."""
    if inner is None:
        return outer
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


class LayerFrames:
    """Frames [T, H, W] of one layer on an (H, W) canvas: views of source frames placed by per-frame affines, or an
    array. `boxes` are per-frame bounding boxes in the frames' own pixels (found on demand, shared via `box_cache`)."""

    def __init__(
        self,
        size: tuple[int, int],
        frames: Sequence[np.ndarray | None],
        to_canvas: Sequence[np.ndarray | None] | None = None,
        keys: Sequence[Any] | None = None,
        box_cache: dict | None = None,
        fit: str = "crop",
        array: np.ndarray | None = None,
        boxes: list | None = None,
    ) -> None:
        self.size, self.frames, self.fit, self.array = tuple(size), list(frames), fit, array
        self.to_canvas = list(to_canvas) if to_canvas is not None else [None] * len(self.frames)
        self._keys, self._cache = keys, box_cache if box_cache is not None else {}
        self._boxes = list(boxes) if boxes is not None else [None if f is None else "find" for f in self.frames]

    @classmethod
    def from_array(cls, masks: np.ndarray, boxes: list | None = None) -> LayerFrames:
        """Frames that are already an array bool [T, H, W] on the canvas (`boxes`: their `mask_bbox`, if known)."""
        return cls(masks.shape[1:], list(masks), array=masks, boxes=boxes)

    def __len__(self) -> int:
        return len(self.frames)

    def box(self, i: int) -> Box | None:
        """Bounding box of frame i in its own pixels (None when absent or empty)."""
        box = self._boxes[i]
        if box == "find":
            key = self._keys[i] if self._keys is not None else None
            if key is not None and key in self._cache:
                box = self._cache[key]
            else:
                box = mask_bbox(self.frames[i])
                if key is not None:
                    self._cache[key] = box
            m = self.to_canvas[i]
            if box is not None and m is not None:  # keep what the fit keeps: a crop cuts the source's sides off
                box = _visible(self.frames[i], box, m, self.size)
            self._boxes[i] = box
        return box

    def anchor(self, i: int, anchor: Any) -> tuple[float, float] | None:
        """(x, y) of frame i's anchor on the canvas (see `transforms.anchor_point`); None when the frame is empty."""
        h, w = self.size
        anchor = check_anchor(anchor)
        if anchor == "center" or not isinstance(anchor, str):
            fx, fy = (0.5, 0.5) if anchor == "center" else anchor
            return fx * (w - 1), fy * (h - 1)
        if self.frames[i] is None:
            return None
        box, m = self.box(i), self.to_canvas[i]
        if m is None or box is None:
            return anchor_point(self.frames[i], anchor, box)
        cx, cy = anchor_point(self.frames[i], "centroid", box)
        x = m[0, 0] * cx + m[0, 2]
        if anchor == "centroid":
            return x, m[1, 1] * cy + m[1, 2]
        return x, _edge(m, 1, box[1]) - 1.0  # "bottom": the lowest canvas row the resized silhouette fills

    def inside(self) -> np.ndarray:
        """bool [T]: the frame holds a silhouette that does not touch the canvas edge (nothing of it is cut off)."""
        h, w = self.size
        out = np.zeros(len(self), dtype=bool)
        for i in range(len(self)):
            box = self.box(i) if self.frames[i] is not None else None
            if box is None:
                continue
            y0, y1, x0, x1 = box
            m = self.to_canvas[i]
            if m is not None:  # the placed box: the source box's pixel edges through the resize
                x0, x1, y0, y1 = _edge(m, 0, x0), _edge(m, 0, x1), _edge(m, 1, y0), _edge(m, 1, y1)
            out[i] = y0 > 0 and x0 > 0 and y1 < h and x1 < w
        return out

    def warp(self, matrices: np.ndarray, out: np.ndarray) -> list[Box | None]:
        """Warp each frame by its canvas matrix [T, 2, 3] (after its resize) into zeroed `out` [T, H, W]; returns
        the bounding box of each output frame."""
        boxes: list[Box | None] = []
        for i, frame in enumerate(self.frames):
            box = self.box(i) if frame is not None else None
            if box is None:
                boxes.append(None)
                continue
            m = self.to_canvas[i]
            if m is not None:  # sample as cv2.resize's nearest does (source pixel floor(X / scale)), not centred
                m = m + [[0, 0, 0.5 - 2**-9], [0, 0, 0.5 - 2**-9]]  # (less a hair for warpAffine's fixed point)
            boxes.append(warp_into(frame, compose(matrices[i], m), out[i], box))
        return boxes

    def materialize(self, out: np.ndarray | None = None) -> np.ndarray:
        """The frames as bool [T, H, W] (into zeroed `out` when given): resized sources go through `fit_size`, as
        placing them always has; same-size frames copy only their bounding box."""
        if self.array is not None and out is None:
            return self.array
        out = np.zeros((len(self), *self.size), dtype=bool) if out is None else out
        eye = np.eye(2, 3)
        for i, frame in enumerate(self.frames):
            box = self.box(i) if frame is not None else None
            if box is None:
                continue
            if self.to_canvas[i] is None:
                warp_into(frame, eye, out[i], box)
            else:
                out[i] = fit_size(frame[None], self.size, self.fit)[0]
        self.array = out
        return out
