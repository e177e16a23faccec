"""Boxes to silhouettes: a layer drawn as keyframed boxes becomes a mask sequence (issue 25.2).

Keys are `{"t": seconds, "box": [x0, y0, x1, y1]}` in target seconds and pixels (x1, y1 exclusive, as
`mask_bbox`); between keys the box moves and resizes linearly, outside them it holds, so one box and a `path` op
drag a fixed silhouette along a path. Each frame's box is filled with a shape that touches its four sides:
"ellipse" (default), "rounded" (a box
with corners rounded by a quarter of its shorter side), "box", or a chosen silhouette (one mask frame of a source,
cropped to its own bounding box) fitted into the box: "letterbox" keeps its aspect (centred), "stretch" fills it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from editing.transforms import EditError, mask_bbox

SHAPES = ("ellipse", "rounded", "box")
SILHOUETTE_FITS = ("letterbox", "stretch")


def check_boxes(keys: Any, where: str = "boxes") -> tuple[np.ndarray, np.ndarray]:
    """Validate box keys; returns (times [N], boxes [N, 4] as x0, y0, x1, y1) sorted by time."""
    if not isinstance(keys, Sequence) or isinstance(keys, str) or len(keys) == 0:
        raise EditError(f"{where} must be a non-empty list like [{{'t': 0, 'box': [x0, y0, x1, y1]}}], got {keys!r}")
    rows = []
    for i, key in enumerate(keys):
        if not isinstance(key, Mapping) or set(key) != {"t", "box"}:
            raise EditError(
                f"{where}[{i}] must be a dict with exactly 't' (seconds) and 'box' [x0, y0, x1, y1], got {key!r}"
            )
        t, box = key["t"], key["box"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not np.isfinite(t):
            raise EditError(f"{where}[{i}].t must be a time in seconds, got {t!r}")
        ok = isinstance(box, Sequence) and len(box) == 4
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in box)
        if not ok:
            raise EditError(f"{where}[{i}].box must be [x0, y0, x1, y1] (pixels), got {box!r}")
        if not (box[2] - box[0] >= 1 and box[3] - box[1] >= 1):
            raise EditError(f"{where}[{i}].box needs x1 - x0 >= 1 and y1 - y0 >= 1 pixel, got {list(box)}")
        rows.append((float(t), *map(float, box)))
    arr = np.array(sorted(rows))
    if (np.diff(arr[:, 0]) <= 0).any():
        raise EditError(f"{where}: two boxes share the time {arr[1:, 0][np.diff(arr[:, 0]) <= 0][0]:g} s")
    return arr[:, 0], arr[:, 1:]


def check_shape(shape: Any, where: str = "shape") -> None:
    """A named shape or {"source": name, "object": id | "all", "frame": i, "fit": letterbox | stretch}."""
    if isinstance(shape, str):
        if shape not in SHAPES:
            raise EditError(
                f"{where} must be one of {list(SHAPES)} or a silhouette {{'source', 'frame'}}, got {shape!r}"
            )
        return
    if not isinstance(shape, Mapping) or "source" not in shape:
        raise EditError(f"{where} must be one of {list(SHAPES)} or a silhouette {{'source', 'frame'}}, got {shape!r}")
    if extra := sorted(set(shape) - {"source", "object", "frame", "fit"}):
        raise EditError(f"{where} has unknown fields {extra}; known: ['fit', 'frame', 'object', 'source']")
    if not isinstance(shape["source"], str) or not shape["source"]:
        raise EditError(f"{where}.source must be the name of a source, got {shape['source']!r}")
    frame = shape.get("frame", 0)
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        raise EditError(f"{where}.frame must be a frame index >= 0 of that source, got {frame!r}")
    if shape.get("fit", "letterbox") not in SILHOUETTE_FITS:
        raise EditError(f"{where}.fit must be one of {list(SILHOUETTE_FITS)}, got {shape['fit']!r}")


def interpolate_boxes(keys: Any, times: np.ndarray) -> np.ndarray:
    """[T, 4] box (x0, y0, x1, y1) at each time: linear between keys, held outside them."""
    kt, boxes = check_boxes(keys)
    t = np.asarray(times, dtype=np.float64)
    return np.stack([np.interp(t, kt, boxes[:, k]) for k in range(4)], axis=1)


def shape_mask(shape: str, height: int, width: int) -> np.ndarray:
    """bool [height, width]: a named shape filling a box of that many pixels."""
    if shape == "box":
        return np.ones((height, width), dtype=bool)
    yy, xx = np.mgrid[:height, :width]
    if shape == "ellipse":  # pixel centres inside, and the pixels at the ends of its axes: it touches every side
        cy, cx, ry, rx = (height - 1) / 2, (width - 1) / 2, height / 2, width / 2
        out = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        out[[0, -1], (width - 1) // 2 : width // 2 + 1] = True
        out[(height - 1) // 2 : height // 2 + 1, [0, -1]] = True
        return out
    if shape == "rounded":
        r = 0.25 * min(height, width)
        dy = np.maximum(np.maximum(r - (yy + 0.5), (yy + 0.5) - (height - r)), 0)
        dx = np.maximum(np.maximum(r - (xx + 0.5), (xx + 0.5) - (width - r)), 0)
        return dx**2 + dy**2 <= r**2
    raise EditError(f"shape must be one of {list(SHAPES)}, got {shape!r}")


def fit_silhouette(mask: np.ndarray, height: int, width: int, fit: str = "letterbox") -> np.ndarray:
    """bool [height, width]: `mask` [h, w] cropped to its bounding box and fitted into the box (nearest neighbour)."""
    box = mask_bbox(mask)
    if box is None:
        raise EditError("the chosen silhouette frame is empty; pick a frame where the subject is visible")
    y0, y1, x0, x1 = box
    crop = np.ascontiguousarray(mask[y0:y1, x0:x1]).view(np.uint8)
    if fit == "stretch":
        return cv2.resize(crop, (width, height), interpolation=cv2.INTER_NEAREST).view(bool)
    s = min(height / crop.shape[0], width / crop.shape[1])
    h, w = max(1, round(crop.shape[0] * s)), max(1, round(crop.shape[1] * s))
    out = np.zeros((height, width), dtype=bool)
    top, left = (height - h) // 2, (width - w) // 2
    out[top : top + h, left : left + w] = cv2.resize(crop, (w, h), interpolation=cv2.INTER_NEAREST).view(bool)
    return out


def box_masks(
    keys: Any,
    times: np.ndarray,
    size: tuple[int, int],
    shape: str = "ellipse",
    silhouette: np.ndarray | None = None,
    fit: str = "letterbox",
) -> np.ndarray:
    """bool [T, H, W]: each frame's box (at `times` seconds) filled with `shape`, or with `silhouette` [h, w]."""
    h, w = size
    boxes = interpolate_boxes(keys, times)
    out = np.zeros((len(boxes), h, w), dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        bx0, by0, bx1, by1 = (int(np.floor(v + 0.5)) for v in (x0, y0, x1, y1))
        bw, bh = max(bx1 - bx0, 1), max(by1 - by0, 1)
        cx0, cy0, cx1, cy1 = max(bx0, 0), max(by0, 0), min(bx0 + bw, w), min(by0 + bh, h)
        if cx0 >= cx1 or cy0 >= cy1:
            continue  # the box is outside the canvas at this time
        fill = shape_mask(shape, bh, bw) if silhouette is None else fit_silhouette(silhouette, bh, bw, fit)
        out[i, cy0:cy1, cx0:cx1] = fill[cy0 - by0 : cy1 - by0, cx0 - bx0 : cx1 - bx0]
    return out
