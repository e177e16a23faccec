"""Drag a silhouette along a drawn path: the layer's anchor passes through each point at its time.

A path is a list of points `{"t": seconds, "x": px, "y": px}` on the target canvas and timeline. Between points the
anchor moves linearly, or along a smooth curve (a natural cubic spline in time, so speed changes smoothly too);
before the first point and after the last it holds. `orient` turns the silhouette with the path's direction (by
the change of heading since the path's start, so it starts as filmed); `scale` (one factor, or one per point,
interpolated linearly in time) scales it about the anchor. The anchor is "centroid", "bottom", "center" or a fixed
[fx, fy] point of the frame, as for `transform`.

In a recipe the path composes with the other ops in order: after a transform or terrain it replaces their
translation (the anchor is put on the path, their scale and rotation stay); before them, their offsets are added
to the path (a transform's pan or a terrain's climb moves the anchor off the path by exactly that).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.interpolate import CubicSpline

from editing.transforms import (
    AnchorOf,
    EditError,
    affine_matrix,
    array_anchors,
    check_anchor,
    mask_bbox,
    warp_masks,
)

MAX_SCALE = 100.0


def check_points(points: Any, where: str = "points") -> tuple[np.ndarray, np.ndarray]:
    """Validate path points; returns (times [N], xy [N, 2]) sorted by time. Raises EditError naming the bad one."""
    if not isinstance(points, Sequence) or isinstance(points, str) or len(points) == 0:
        raise EditError(
            f"{where} must be a non-empty list of points like {{'t': 0, 'x': 100, 'y': 200}}, got {points!r}"
        )
    rows = []
    for i, p in enumerate(points):
        if not isinstance(p, Mapping) or set(p) != {"t", "x", "y"}:
            raise EditError(f"{where}[{i}] must be a dict with exactly 't' (seconds), 'x' and 'y' (pixels), got {p!r}")
        for k in ("t", "x", "y"):
            v = p[k]
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
                raise EditError(f"{where}[{i}].{k} must be a finite number, got {v!r}")
        rows.append((float(p["t"]), float(p["x"]), float(p["y"])))
    arr = np.array(sorted(rows))
    if (np.diff(arr[:, 0]) <= 0).any():
        dup = arr[1:, 0][np.diff(arr[:, 0]) <= 0][0]
        raise EditError(f"{where}: two points share the time {dup:g} s; each point needs its own time")
    return arr[:, 0], arr[:, 1:]


def check_scale(scale: Any, count: int, where: str = "scale") -> np.ndarray:
    """One factor per point [N] from a number or a list of N numbers (each in (0, 100])."""
    values = [scale] * count if not isinstance(scale, Sequence) or isinstance(scale, str) else list(scale)
    if len(values) != count:
        raise EditError(f"{where} needs one factor per point ({count}), got {len(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= MAX_SCALE:
            raise EditError(f"{where} factors must be numbers in (0, {MAX_SCALE:g}], got {scale!r}")
    return np.asarray(values, dtype=np.float64)


def path_positions(points: Any, times: np.ndarray, smooth: bool = False) -> np.ndarray:
    """[T, 2] (x, y) of the path at `times` seconds: linear or a natural cubic spline, held outside the points."""
    kt, xy = check_points(points)
    t = np.clip(np.asarray(times, dtype=np.float64), kt[0], kt[-1])
    if smooth and len(kt) > 2:
        return CubicSpline(kt, xy, bc_type="natural")(t)
    return np.stack([np.interp(t, kt, xy[:, 0]), np.interp(t, kt, xy[:, 1])], axis=1)


def path_headings(points: Any, times: np.ndarray, smooth: bool = False) -> np.ndarray:
    """[T] degrees counter-clockwise the path has turned since its start (0 for a one-point path)."""
    kt, xy = check_points(points)
    if len(kt) < 2:
        return np.zeros(len(times))
    t = np.clip(np.asarray(times, dtype=np.float64), kt[0], kt[-1])
    if smooth and len(kt) > 2:
        spline = CubicSpline(kt, xy, bc_type="natural").derivative()
        velocity, start = spline(t), spline(kt[:1])[0]
    else:
        seg = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, len(kt) - 2)
        steps = np.diff(xy, axis=0) / np.diff(kt)[:, None]
        velocity, start = steps[seg], steps[0]
    angle = np.degrees(np.arctan2(-velocity[:, 1], velocity[:, 0]))  # image y points down
    moving = np.hypot(velocity[:, 0], velocity[:, 1]) > 1e-9
    for i in range(len(angle)):  # where the path stands still (a repeated point), keep the last heading
        if not moving[i]:
            angle[i] = angle[i - 1] if i else np.degrees(np.arctan2(-start[1], start[0]))
    start_angle = np.degrees(np.arctan2(-start[1], start[0]))
    return np.unwrap(np.radians(np.r_[start_angle, angle]))[1:] * 180 / np.pi - start_angle


def path_matrices_from(
    anchor_of: AnchorOf,
    count: int,
    times: np.ndarray,
    points: Any,
    anchor: Any = "centroid",
    smooth: bool = False,
    orient: bool = False,
    scale: Any = 1.0,
) -> np.ndarray:
    """[count, 2, 3] matrices that put each frame's anchor (`anchor_of(i, anchor)`) on the path at `times`."""
    anchor = check_anchor(anchor)
    kt, _ = check_points(points)
    target = path_positions(points, times, smooth)
    turn = path_headings(points, times, smooth) if orient else np.zeros(len(times))
    factors = np.interp(np.asarray(times, dtype=np.float64), kt, check_scale(scale, len(kt)))
    mats = np.tile(np.eye(2, 3), (count, 1, 1))
    for i in range(count):
        a = anchor_of(i, anchor)
        if a is None:
            continue
        dx, dy = target[i, 0] - a[0], target[i, 1] - a[1]
        mats[i] = affine_matrix(a, scale=float(factors[i]), rotate=float(turn[i]), x=float(dx), y=float(dy))
    return mats


def follow_path(
    masks: np.ndarray,
    fps: float,
    points: Any,
    anchor: Any = "centroid",
    smooth: bool = False,
    orient: bool = False,
    scale: Any = 1.0,
    start: float = 0.0,
) -> np.ndarray:
    """Move bool [T, H, W] so its anchor follows the path; frame i sits at time start + i / fps seconds."""
    times = start + np.arange(masks.shape[0]) / float(fps)
    boxes = [mask_bbox(m) for m in masks]
    mats = path_matrices_from(array_anchors(masks, boxes), len(masks), times, points, anchor, smooth, orient, scale)
    return warp_masks(masks, mats, boxes)
