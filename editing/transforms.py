"""Keyframed affine transforms of mask sequences: zoom (scale about an anchor), pan, rotate, flip.

Keyframes are plain dicts, `{"t": seconds, "scale": 1.0, "x": 0, "y": 0, "rotate": 0, "flip_x": False,
"flip_y": False, "ease": "linear"}`; a field left out keeps the previous keyframe's value. `ease` shapes the segment
that starts at that keyframe: "linear", "ease_in_out" (cosine) or "hold" (jump at the next keyframe). Before the
first keyframe and after the last the values hold. `x`, `y` are pixels, `rotate` degrees counter-clockwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

EASES = ("linear", "ease_in_out", "hold")
KEY_FIELDS = {"scale": 1.0, "x": 0.0, "y": 0.0, "rotate": 0.0, "flip_x": False, "flip_y": False}
NAMED_ANCHORS = ("centroid", "bottom", "center")


class EditError(ValueError):
    """An edit parameter is malformed; the message names the value and what is expected."""


# -- keyframes -----------------------------------------------------------------------------------------------------
def check_keyframes(keys: Sequence[Mapping[str, Any]], where: str = "keys") -> list[dict[str, Any]]:
    """Validate keyframes and return them sorted by time; raises EditError naming the bad field."""
    if not isinstance(keys, Sequence) or isinstance(keys, str) or len(keys) == 0:
        raise EditError(f"{where} must be a non-empty list of keyframes like {{'t': 0, 'scale': 1}}, got {keys!r}")
    out = []
    for i, key in enumerate(keys):
        if not isinstance(key, Mapping):
            raise EditError(f"{where}[{i}] must be a dict with 't' and fields {sorted(KEY_FIELDS)}, got {key!r}")
        unknown = set(key) - set(KEY_FIELDS) - {"t", "ease"}
        if unknown:
            raise EditError(f"{where}[{i}] has unknown fields {sorted(unknown)}; known: {['t', 'ease', *KEY_FIELDS]}")
        t = key.get("t")
        if isinstance(t, bool) or not isinstance(t, int | float) or not np.isfinite(t):
            raise EditError(f"{where}[{i}].t must be a time in seconds, got {t!r}")
        ease = key.get("ease", "linear")
        if ease not in EASES:
            raise EditError(f"{where}[{i}].ease must be one of {list(EASES)}, got {ease!r}")
        for name in ("scale", "x", "y", "rotate"):
            v = key.get(name, 0.0)
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
                raise EditError(f"{where}[{i}].{name} must be a finite number, got {v!r}")
        if "scale" in key and not key["scale"] > 0:
            raise EditError(f"{where}[{i}].scale must be > 0 (1 = unchanged, 2 = twice as large), got {key['scale']}")
        for name in ("flip_x", "flip_y"):
            if name in key and not isinstance(key[name], bool):
                raise EditError(f"{where}[{i}].{name} must be true or false, got {key[name]!r}")
        out.append(dict(key))
    out.sort(key=lambda k: k["t"])
    return out


def _eased(u: np.ndarray, ease: str) -> np.ndarray:
    if ease == "hold":
        return np.zeros_like(u)
    if ease == "ease_in_out":
        return 0.5 - 0.5 * np.cos(np.pi * u)
    return u


def interpolate_keyframes(keys: Sequence[Mapping[str, Any]], times: np.ndarray) -> dict[str, np.ndarray]:
    """Per-time values of every keyframe field: `times` [T] seconds -> {field: [T]}."""
    keys = check_keyframes(keys)
    times = np.asarray(times, dtype=np.float64)
    # Fill missing fields from the previous keyframe (or the identity default).
    filled, current = [], dict(KEY_FIELDS)
    for key in keys:
        current = {**current, **{k: v for k, v in key.items() if k in KEY_FIELDS}}
        filled.append(dict(current))
    kt = np.array([k["t"] for k in keys], dtype=np.float64)
    seg = np.clip(np.searchsorted(kt, times, side="right") - 1, 0, len(keys) - 1)  # keyframe starting each segment
    out: dict[str, np.ndarray] = {}
    for name in KEY_FIELDS:
        values = np.array([f[name] for f in filled], dtype=np.float64)
        if len(keys) == 1:
            out[name] = np.full(times.shape, values[0])
            continue
        nxt = np.minimum(seg + 1, len(keys) - 1)
        span = kt[nxt] - kt[seg]
        u = np.where(span > 0, (times - kt[seg]) / np.where(span > 0, span, 1.0), 0.0)
        u = np.clip(u, 0.0, 1.0)
        u[times < kt[0]] = 0.0
        eases = [keys[s].get("ease", "linear") for s in range(len(keys))]
        w = np.empty_like(u)
        for e in set(eases):
            sel = np.array([eases[s] == e for s in seg])
            w[sel] = _eased(u[sel], e)
        if name.startswith("flip"):  # discrete: a flip switches at the keyframe
            w = (u >= 1.0).astype(np.float64)
        out[name] = values[seg] + (values[nxt] - values[seg]) * w
    out["flip_x"] = out["flip_x"] > 0.5
    out["flip_y"] = out["flip_y"] > 0.5
    return out


# -- anchors and matrices ------------------------------------------------------------------------------------------
def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) half-open bounding box of a bool [H, W] mask, None when empty."""
    mask = np.ascontiguousarray(mask)
    if mask.shape[1] % 8 == 0:  # reduce 8 pixels at a time: ~2x faster than mask.any on 720-wide frames
        rows_on = np.bitwise_or.reduce(mask.view(np.uint64), axis=1)
    else:
        rows_on = mask.any(axis=1)
    rows = np.flatnonzero(rows_on)
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def anchor_point(
    mask: np.ndarray, anchor: str | Sequence[float], box: tuple[int, int, int, int] | None | str = "find"
) -> tuple[float, float] | None:
    """(x, y) pixel anchor of one frame: "centroid", "bottom" (centroid x, lowest row), "center" of the frame,
    or a fixed point [fx, fy] in fractions of width and height. None when the anchor needs a mask and it is empty.
    `box` is the mask's bounding box when the caller already has it."""
    h, w = mask.shape
    if isinstance(anchor, str):
        if anchor == "center":
            return (w - 1) / 2.0, (h - 1) / 2.0
        box = mask_bbox(mask) if box == "find" else box
        if box is None:
            return None
        y0, y1, x0, x1 = box
        m = cv2.moments(mask[y0:y1, x0:x1].view(np.uint8), binaryImage=True)
        cx = x0 + m["m10"] / m["m00"]
        if anchor == "centroid":
            return cx, y0 + m["m01"] / m["m00"]
        if anchor == "bottom":
            return cx, float(y1 - 1)
        raise EditError(f"anchor must be one of {list(NAMED_ANCHORS)} or [fx, fy] fractions, got {anchor!r}")
    fx, fy = check_anchor(anchor)
    return fx * (w - 1), fy * (h - 1)


def check_anchor(anchor: Any) -> Any:
    """Validate an anchor value (named or [fx, fy] in [0, 1])."""
    if isinstance(anchor, str):
        if anchor not in NAMED_ANCHORS:
            raise EditError(f"anchor must be one of {list(NAMED_ANCHORS)} or [fx, fy] fractions, got {anchor!r}")
        return anchor
    ok = (
        isinstance(anchor, Sequence)
        and len(anchor) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in anchor)
    )
    if not ok:
        raise EditError(f"a fixed anchor must be [fx, fy] with fractions of the frame in [0, 1], got {anchor!r}")
    return float(anchor[0]), float(anchor[1])


def affine_matrix(
    anchor: tuple[float, float],
    scale: float = 1.0,
    rotate: float = 0.0,
    x: float = 0.0,
    y: float = 0.0,
    flip_x: bool = False,
    flip_y: bool = False,
) -> np.ndarray:
    """2x3 matrix: flip and scale about `anchor`, rotate (degrees, counter-clockwise) about it, then move by (x, y)."""
    ax, ay = float(anchor[0]), float(anchor[1])
    a, b = (1.0, 0.0) if rotate == 0 else (math.cos(math.radians(rotate)), math.sin(math.radians(rotate)))
    sx, sy = (-scale if flip_x else scale), (-scale if flip_y else scale)
    m00, m01, m10, m11 = a * sx, b * sy, -b * sx, a * sy  # [[a, b], [-b, a]] @ diag(sx, sy)
    return np.array(
        [[m00, m01, ax + x - (m00 * ax + m01 * ay)], [m10, m11, ay + y - (m10 * ax + m11 * ay)]], dtype=np.float64
    )


# -- warping -------------------------------------------------------------------------------------------------------
Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open, as `mask_bbox`


def _tight(out: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> Box | None:
    """The bounding box of `out` within the window [y0:y1, x0:x1] (scans the window only)."""
    if y0 >= y1 or x0 >= x1:
        return None
    box = mask_bbox(out[y0:y1, x0:x1])
    return None if box is None else (y0 + box[0], y0 + box[1], x0 + box[2], x0 + box[3])


def warp_into(mask: np.ndarray, matrix: np.ndarray, out: np.ndarray, box: Box | None | str = "find") -> Box | None:
    """OR one bool [h, w] mask warped by a 2x3 matrix (nearest neighbour) into `out` [H, W], working on its bounding
    box only; returns the bounding box of what was written (None when nothing landed in `out`).

    Pure translations shift by whole pixels (rounded), so area is preserved exactly inside the frame.
    """
    h, w = out.shape
    box = mask_bbox(mask) if box == "find" else box
    if box is None:
        return None
    y0, y1, x0, x1 = box
    lin, t = matrix[:, :2], matrix[:, 2]
    if lin[0, 0] == 1 and lin[1, 1] == 1 and lin[0, 1] == 0 and lin[1, 0] == 0:
        dx, dy = int(np.floor(t[0] + 0.5)), int(np.floor(t[1] + 0.5))  # half up, as cv2's nearest does
        sy0, sy1, sx0, sx1 = max(y0, -dy), min(y1, h - dy), max(x0, -dx), min(x1, w - dx)
        if sy0 >= sy1 or sx0 >= sx1:
            return None
        out[sy0 + dy : sy1 + dy, sx0 + dx : sx1 + dx] |= mask[sy0:sy1, sx0:sx1]
        if (sy0, sy1, sx0, sx1) == (y0, y1, x0, x1):  # nothing cut off: the box moves with the mask
            return y0 + dy, y1 + dy, x0 + dx, x1 + dx
        return _tight(out, sy0 + dy, sy1 + dy, sx0 + dx, sx1 + dx)
    corners = np.array([[x0, y0], [x1 - 1, y0], [x0, y1 - 1], [x1 - 1, y1 - 1]], dtype=np.float64)
    dst = corners @ lin.T + t
    dx0, dy0 = max(int(np.floor(dst[:, 0].min())) - 1, 0), max(int(np.floor(dst[:, 1].min())) - 1, 0)
    dx1, dy1 = min(int(np.ceil(dst[:, 0].max())) + 2, w), min(int(np.ceil(dst[:, 1].max())) + 2, h)
    if dx0 >= dx1 or dy0 >= dy1:
        return None
    # The same map expressed between the crop's and the destination window's local coordinates.
    local = np.hstack([lin, (lin @ np.array([x0, y0]) + t - np.array([dx0, dy0]))[:, None]])
    crop = np.ascontiguousarray(mask[y0:y1, x0:x1]).view(np.uint8)
    warped = cv2.warpAffine(crop, local, (dx1 - dx0, dy1 - dy0), flags=cv2.INTER_NEAREST, borderValue=0)
    out[dy0:dy1, dx0:dx1] |= warped.view(bool)
    return _tight(out, dy0, dy1, dx0, dx1)


def warp_mask(
    mask: np.ndarray, matrix: np.ndarray, out: np.ndarray | None = None, box: Box | None | str = "find"
) -> np.ndarray:
    """Warp one bool [H, W] mask by a 2x3 matrix (nearest neighbour) into `out` (new when None); see `warp_into`."""
    out = np.zeros(mask.shape, dtype=bool) if out is None else out
    warp_into(mask, matrix, out, box)
    return out


def warp_masks(masks: np.ndarray, matrices: np.ndarray, boxes: list | None = None) -> np.ndarray:
    """Warp each frame of bool [T, H, W] by its own 2x3 matrix, `matrices` [T, 2, 3]; identity frames are copied.
    `boxes` (per-frame `mask_bbox` results) saves recomputing them."""
    out = np.zeros(masks.shape, dtype=bool)  # calloc: untouched pages cost nothing
    eye = np.eye(2, 3)
    for i in range(masks.shape[0]):
        box = boxes[i] if boxes is not None else "find"
        if box is None:
            continue
        if np.array_equal(matrices[i], eye):
            out[i] = masks[i]
        else:
            warp_into(masks[i], matrices[i], out[i], box)
    return out


AnchorOf = Callable[[int, Any], "tuple[float, float] | None"]  # (frame, anchor) -> (x, y) on the canvas, or None


def array_anchors(masks: np.ndarray, boxes: list | None = None) -> AnchorOf:
    """Anchors of the frames of bool [T, H, W] (`boxes`: their `mask_bbox`, found when None)."""
    return lambda i, anchor: anchor_point(masks[i], anchor, boxes[i] if boxes is not None else "find")


def keyframed_matrices_from(
    anchor_of: AnchorOf, count: int, times: np.ndarray, keys: Sequence[Mapping[str, Any]], anchor: Any = "centroid"
) -> np.ndarray:
    """Per-frame matrices [count, 2, 3] of keyed values at `times` about each frame's anchor (identity if empty)."""
    anchor = check_anchor(anchor)
    values = interpolate_keyframes(keys, times)
    mats = np.tile(np.eye(2, 3), (count, 1, 1))
    for i in range(count):
        p = anchor_of(i, anchor)
        if p is not None:
            mats[i] = affine_matrix(p, **{k: values[k][i] for k in KEY_FIELDS})
    return mats


def keyframed_matrices(
    masks: np.ndarray,
    times: np.ndarray,
    keys: Sequence[Mapping[str, Any]],
    anchor: Any = "centroid",
    boxes: list | None = None,
) -> np.ndarray:
    """Per-frame matrices [T, 2, 3] for bool masks [T, H, W] at `times` [T] seconds; empty frames get identity."""
    return keyframed_matrices_from(array_anchors(masks, boxes), masks.shape[0], times, keys, anchor)


def keyframed_transform(
    masks: np.ndarray, fps: float, keys: Sequence[Mapping[str, Any]], anchor: Any = "centroid", start: float = 0.0
) -> np.ndarray:
    """Apply keyframed scale/rotate/translate/flip to bool [T, H, W]; frame i sits at time start + i / fps seconds."""
    times = start + np.arange(masks.shape[0]) / float(fps)
    boxes = [mask_bbox(m) for m in masks]
    return warp_masks(masks, keyframed_matrices(masks, times, keys, anchor, boxes), boxes)


def zoom(masks: np.ndarray, fps: float, factor: float, duration: float, anchor: Any = "centroid") -> np.ndarray:
    """Camera zoom: scale linearly from 1 to `factor` over `duration` seconds (area grows by factor**2)."""
    return keyframed_transform(masks, fps, [{"t": 0.0, "scale": 1.0}, {"t": duration, "scale": factor}], anchor)
