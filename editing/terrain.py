"""Terrain warp: carry a subject filmed on flat ground along another ground line (uphill, downhill, arc, stairs,
a user polyline), optionally tilting it with the slope. Each frame's mask is moved (not resized) so that its
ground contact (centroid x, lowest row) follows the path: the subject keeps its size and shape. The lowest point
of the line it passes is the ground it was filmed on: uphill starts there and climbs, downhill starts `rise` above
it and comes down to it (the same displacement, mirrored), so neither pushes the subject below its filmed ground.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from editing.transforms import AnchorOf, EditError, affine_matrix, array_anchors, mask_bbox, warp_masks

PROFILES = ("flat", "uphill", "downhill", "arc", "stairs", "polyline")
ALONG = ("time", "x")


def check_profile(profile: str, rise: float = 0.25, steps: int = 4, points: Sequence[Sequence[float]] | None = None):
    """Validate terrain parameters; raises EditError naming the bad one."""
    if profile not in PROFILES:
        raise EditError(f"terrain profile must be one of {list(PROFILES)}, got {profile!r}")
    if isinstance(rise, bool) or not isinstance(rise, int | float) or not np.isfinite(rise) or abs(rise) > 4:
        raise EditError(f"terrain rise is a fraction of the frame height (e.g. 0.25), got {rise!r}")
    if profile == "stairs" and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 2):
        raise EditError(f"stairs need an integer number of steps >= 2, got {steps!r}")
    if profile == "polyline":
        try:
            pts = np.asarray(points, dtype=np.float64)
        except (TypeError, ValueError):
            pts = None
        if pts is None or pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2 or not np.isfinite(pts).all():
            raise EditError(
                "a polyline terrain needs points [[p, h], ...] (at least 2): p = progress 0..1, h = height as a "
                f"fraction of the frame height (up is positive), got {points!r}"
            )
        if (pts[:, 0] < 0).any() or (pts[:, 0] > 1).any() or (np.diff(pts[:, 0]) <= 0).any():
            raise EditError(f"polyline progress values must increase within [0, 1], got {pts[:, 0].tolist()}")


def profile_height(
    p: np.ndarray, profile: str, rise: float = 0.25, steps: int = 4, points: Sequence[Sequence[float]] | None = None
) -> np.ndarray:
    """Ground height (fraction of frame height, up positive) at progress `p` in [0, 1]."""
    check_profile(profile, rise, steps, points)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    if profile == "flat":
        return np.zeros_like(p)
    if profile == "uphill":
        return rise * p
    if profile == "downhill":
        return -rise * p
    if profile == "arc":
        return rise * 4.0 * p * (1.0 - p)
    if profile == "stairs":
        return rise * np.minimum(np.floor(p * steps), steps - 1) / (steps - 1)
    pts = np.asarray(points, dtype=np.float64)
    return np.interp(p, pts[:, 0], pts[:, 1])


def terrain_matrices_from(
    anchor_of: AnchorOf,
    count: int,
    size: tuple[int, int],
    fps: float,
    profile: str = "uphill",
    *,
    rise: float = 0.25,
    steps: int = 4,
    points: Sequence[Sequence[float]] | None = None,
    along: str = "time",
    tilt: float = 0.0,
    start: float | None = None,
    end: float | None = None,
    time_offset: float = 0.0,
) -> np.ndarray:
    """[count, 2, 3] matrices that move each frame so its ground contact (`anchor_of(i, "bottom")` on an (H, W) =
    `size` canvas) follows `profile`; frames without a subject get identity.

    `along="time"`: progress runs from 0 at `start` to 1 at `end` seconds (default: the first and last frames
    where the subject is present);
    `along="x"`: progress is the contact's horizontal position, so the profile is a ground line drawn across the
    frame from left (0) to right (1), whichever way the subject crosses it.
    `tilt` in [-1, 1] rotates the subject about its contact by that fraction of the slope angle: > 0 turns it with
    the ground (a long body's front rises uphill: animals, vehicles), < 0 the other way (an upright runner leaning
    into the hill).
    Frame i is at time `time_offset + i / fps`.
    """
    check_profile(profile, rise, steps, points)
    if along not in ALONG:
        raise EditError(f"terrain 'along' must be one of {list(ALONG)}, got {along!r}")
    if isinstance(tilt, bool) or not isinstance(tilt, int | float) or not -1 <= tilt <= 1:
        raise EditError(f"terrain tilt is a fraction of the slope angle in [-1, 1], got {tilt!r}")
    h, w = size
    contacts = [anchor_of(i, "bottom") for i in range(count)]
    present = [i for i in range(count) if contacts[i] is not None]
    mats = np.tile(np.eye(2, 3), (count, 1, 1))
    if not present:
        return mats
    # 1. Progress of each frame along the path.
    if along == "time":
        times = time_offset + np.arange(count) / float(fps)
        t0 = times[present[0]] if start is None else start
        t1 = times[present[-1]] if end is None else end
        if (start is not None or end is not None) and t1 <= t0:
            raise EditError(f"terrain needs start < end seconds, got start={t0}, end={t1}")
        p = (times - t0) / (t1 - t0) if t1 > t0 else np.zeros(count)
    else:
        p = np.array([contacts[i][0] / max(w - 1, 1) if contacts[i] else 0.0 for i in range(count)])
    # In time mode the path climbs the way the subject travels; in x mode it is a fixed line across the frame.
    xs = [contacts[i][0] for i in present]
    direction = -1.0 if along == "time" and len(xs) > 1 and xs[-1] < xs[0] else 1.0
    # 2. Vertical offset (pixels, down positive) and slope angle (degrees) per frame. The lowest ground point the
    # subject passes is the ground it was filmed on, so no profile pushes it below (downhill mirrors uphill).
    height = profile_height(p, profile, rise, steps, points)
    dy = -(height - height[present].min()) * h
    if profile == "stairs":
        slope = np.full_like(p, rise)  # the mean slope of the flight, not its vertical risers
    else:
        e = 1e-3
        slope = profile_height(p + e, profile, rise, steps, points) - profile_height(
            p - e, profile, rise, steps, points
        )
        slope /= np.where((p + e <= 1) & (p - e >= 0), 2 * e, e)
    angle = direction * np.degrees(np.arctan(slope * h / max(w, 1))) * tilt
    # 3. One affine per frame about the ground contact.
    for i in present:
        mats[i] = affine_matrix(contacts[i], rotate=float(angle[i]), y=float(dy[i]))
    return mats


def terrain_matrices(masks: np.ndarray, fps: float, profile: str = "uphill", boxes: list | None = None, **params):
    """[T, 2, 3] matrices of `terrain_warp` for bool [T, H, W] (`boxes`: their `mask_bbox`, found when None)."""
    return terrain_matrices_from(array_anchors(masks, boxes), masks.shape[0], masks.shape[1:], fps, profile, **params)


def terrain_warp(masks: np.ndarray, fps: float, profile: str = "uphill", **params) -> np.ndarray:
    """Move each frame of bool [T, H, W] so the ground contact follows `profile` (parameters: see
    `terrain_matrices_from`)."""
    boxes = [mask_bbox(m) for m in masks]
    return warp_masks(masks, terrain_matrices(masks, fps, profile, boxes, **params), boxes)
