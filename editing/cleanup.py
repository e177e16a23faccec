"""Cleanup of extracted masks: fill holes, drop specks, dilate/erode, and temporal smoothing of flicker."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from editing.transforms import EditError, mask_bbox


def _check_int(value: int, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise EditError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def fill_holes(masks: np.ndarray) -> np.ndarray:
    """Fill regions of bool [T, H, W] enclosed by the mask in each frame."""
    out = masks.copy()
    for i in range(len(masks)):
        box = mask_bbox(masks[i])
        if box is not None:
            y0, y1, x0, x1 = box
            out[i, y0:y1, x0:x1] = ndimage.binary_fill_holes(masks[i, y0:y1, x0:x1])
    return out


def remove_specks(masks: np.ndarray, min_area: int) -> np.ndarray:
    """Drop connected components (8-connected) smaller than `min_area` pixels in each frame."""
    min_area = _check_int(min_area, "min_area", 0)
    out = masks.copy()
    for i in range(len(masks)):
        box = mask_bbox(masks[i])
        if box is None:
            continue
        y0, y1, x0, x1 = box
        crop = np.ascontiguousarray(masks[i, y0:y1, x0:x1]).view(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_area
        keep[0] = False  # background
        out[i, y0:y1, x0:x1] = keep[labels]
    return out


def _morph(masks: np.ndarray, radius: int, op: int) -> np.ndarray:
    radius = _check_int(radius, "radius", 0)
    if radius == 0:
        return masks.copy()
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    kernel = (yy**2 + xx**2 <= radius**2).astype(np.uint8)  # a true disc (cv2's MORPH_ELLIPSE is boxier)
    out = np.zeros(masks.shape, dtype=bool)  # calloc: untouched pages cost nothing
    h, w = masks.shape[1:]
    for i in range(len(masks)):
        box = mask_bbox(masks[i])
        if box is None:
            continue
        y0, y1, x0, x1 = box  # work on the box grown by the radius (dilation can reach that far)
        y0, y1, x0, x1 = max(y0 - radius, 0), min(y1 + radius, h), max(x0 - radius, 0), min(x1 + radius, w)
        crop = np.ascontiguousarray(masks[i, y0:y1, x0:x1]).view(np.uint8)
        res = cv2.morphologyEx(crop, op, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        out[i, y0:y1, x0:x1] = res.view(bool)
    return out


def dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    """Grow each frame by a disc of `radius` pixels."""
    return _morph(masks, radius, cv2.MORPH_DILATE)


def erode(masks: np.ndarray, radius: int) -> np.ndarray:
    """Shrink each frame by a disc of `radius` pixels (pixels past the frame edge count as background)."""
    return _morph(masks, radius, cv2.MORPH_ERODE)


def temporal_smooth(masks: np.ndarray, window: int = 3) -> np.ndarray:
    """Majority vote over `window` (odd) neighbouring frames per pixel; removes one-frame flicker.

    The sequence's end frames are repeated to fill windows that run past either end.
    """
    window = _check_int(window, "window", 1)
    if window % 2 == 0:
        raise EditError(f"temporal smoothing window must be odd (3, 5, ...), got {window}")
    if window == 1 or len(masks) == 1:
        return masks.copy()
    r, t_count = window // 2, len(masks)
    votes = np.zeros(masks.shape, dtype=np.uint8)
    for k in range(-r, r + 1):
        votes += masks[np.clip(np.arange(t_count) + k, 0, t_count - 1)]
    return votes > r
