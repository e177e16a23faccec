"""The `path` op (issue 25): the anchor follows the drawn path at every frame, and composes with transform/terrain
in recipe order as documented in editing/path.py (after them it replaces their movement; before them their offsets
add to it). Small frames and few examples: fast on 2 cores."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from editing.path import path_headings, path_matrices_from, path_positions
from editing.recipe import RecipeError, render, validate
from editing.transforms import array_anchors
from mvideo_core.masks import MaskSet

H, W, FPS = 48, 64, 8.0
SETTINGS = settings(max_examples=25, deadline=None)


def centroids(masks: np.ndarray) -> np.ndarray:
    """[T, 2] (x, y) centroid of each frame of bool [T, H, W]."""
    out = []
    for m in masks:
        mo = cv2.moments(m.astype(np.uint8), binaryImage=True)
        out.append((mo["m10"] / mo["m00"], mo["m01"] / mo["m00"]))
    return np.array(out)


@st.composite
def subjects(draw, max_t: int = 9) -> np.ndarray:
    """bool [T, H, W]: a small ellipse (radii 2..5 px) wandering to a random place in each frame."""
    t = draw(st.integers(2, max_t))
    ry, rx = draw(st.integers(2, 5)), draw(st.integers(2, 5))
    yy, xx = np.mgrid[:H, :W]
    frames = []
    for _ in range(t):
        cy, cx = draw(st.floats(6, H - 7)), draw(st.floats(6, W - 7))
        frames.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
    return np.stack(frames)


@st.composite
def paths(draw, duration: float, margin: float = 7.0) -> list[dict]:
    """1..4 points inside the frame (kept `margin` px from its edges, so the subject stays whole), distinct times."""
    times = draw(st.lists(st.floats(0, duration), min_size=1, max_size=4, unique_by=lambda v: round(v, 3)))
    return [
        {"t": round(t, 3), "x": draw(st.floats(margin, W - 1 - margin)), "y": draw(st.floats(margin, H - 1 - margin))}
        for t in times
    ]


def recipe(num_frames: int, *ops: dict) -> dict:
    target = {"width": W, "height": H, "fps": FPS, "num_frames": num_frames}
    return {"version": 1, "target": target, "layers": [{"source": "s", "ops": list(ops)}]}


def render_ops(masks: np.ndarray, *ops: dict) -> np.ndarray:
    return render(recipe(len(masks), *ops), {"s": MaskSet(masks[None], FPS)}).masks[0]


def inside(points: np.ndarray, margin: float) -> np.ndarray:
    return (
        (points[:, 0] >= margin)
        & (points[:, 0] <= W - 1 - margin)
        & (points[:, 1] >= margin)
        & (points[:, 1] <= H - 1 - margin)
    )


@SETTINGS
@given(st.data(), subjects(), st.booleans())
def test_the_anchor_is_within_one_pixel_of_the_path_at_every_frame(data, masks, smooth):
    points = data.draw(paths((len(masks) - 1) / FPS))
    out = render_ops(masks, {"op": "path", "points": points, "smooth": smooth})
    expected = path_positions(points, np.arange(len(masks)) / FPS, smooth)
    # A smooth curve may swing past the outer points; frames where it takes the subject to the edge are cut off
    # (and reported by render), so they are left out here. Straight lines stay between the points: every frame.
    keep = inside(expected, 6.0) if smooth else np.ones(len(masks), bool)
    assert smooth or keep.all()
    err = np.hypot(*(centroids(out[keep]) - expected[keep]).T)
    assert (err <= 1.0).all(), err


@SETTINGS
@given(st.data(), subjects(max_t=6), st.booleans())
def test_orient_and_scale_keep_the_anchor_on_the_path(data, masks, smooth):
    points = data.draw(paths((len(masks) - 1) / FPS, margin=11.0))
    scale = data.draw(st.lists(st.floats(0.6, 1.4), min_size=len(points), max_size=len(points)))
    op = {"op": "path", "points": points, "smooth": smooth, "orient": True, "scale": scale}
    out = render_ops(masks, op)
    expected = path_positions(points, np.arange(len(masks)) / FPS, smooth)
    keep = inside(expected, 10.0)
    err = np.hypot(*(centroids(out[keep]) - expected[keep]).T)
    assert (err <= 1.0).all(), err


@SETTINGS
@given(st.data(), subjects(max_t=4), st.sampled_from(["center", [0.0, 1.0], [0.25, 0.5]]))
def test_a_fixed_anchor_point_of_the_frame_is_carried_onto_the_path(data, masks, anchor):
    points = data.draw(paths((len(masks) - 1) / FPS))
    times = np.arange(len(masks)) / FPS
    mats = path_matrices_from(array_anchors(masks), len(masks), times, points, anchor)
    fx, fy = (0.5, 0.5) if anchor == "center" else anchor
    a = np.array([fx * (W - 1), fy * (H - 1), 1.0])
    np.testing.assert_allclose(mats @ a, path_positions(points, times), atol=1e-9)


@SETTINGS
@given(st.data(), subjects(max_t=6), st.floats(0.6, 1.5), st.integers(-4, 4), st.integers(-4, 4))
def test_path_composes_with_transform_in_both_orders(data, masks, scale, dx, dy):
    points = data.draw(paths((len(masks) - 1) / FPS, margin=13.0))
    expected = path_positions(points, np.arange(len(masks)) / FPS)
    path = {"op": "path", "points": points}
    zoom = {"op": "transform", "keys": [{"t": 0.0, "scale": scale}]}
    pan = {"op": "transform", "keys": [{"t": 0.0, "x": dx, "y": dy}]}
    # transform, then path: the anchor is put on the path, the zoom is kept (the path only moves it).
    zoomed_then_moved = render_ops(masks, zoom, path)
    assert (np.hypot(*(centroids(zoomed_then_moved) - expected).T) <= 1.0).all()
    np.testing.assert_array_equal(zoomed_then_moved.sum(axis=(1, 2)), render_ops(masks, zoom).sum(axis=(1, 2)))
    # path, then transform: the pan is added to the path.
    moved_then_panned = render_ops(masks, path, pan)
    assert (np.hypot(*(centroids(moved_then_panned) - expected - [dx, dy]).T) <= 1.0).all()


@SETTINGS
@given(st.data(), subjects(max_t=7), st.sampled_from(["uphill", "downhill", "arc"]))
def test_path_composes_with_terrain_in_both_orders(data, masks, profile):
    rise = 0.1  # up to 4.8 px on this 48-px frame
    points = data.draw(paths((len(masks) - 1) / FPS, margin=12.0))
    times = np.arange(len(masks)) / FPS
    expected = path_positions(points, times)
    path = {"op": "path", "points": points}
    terrain = {"op": "terrain", "profile": profile, "rise": rise}
    # terrain, then path: the path replaces the terrain's movement.
    assert (np.hypot(*(centroids(render_ops(masks, terrain, path)) - expected).T) <= 1.0).all()
    # path, then terrain: the terrain's climb is added to the path (progress 0..1 over the clip, lowest point = 0).
    p = times / times[-1]
    height = {"uphill": rise * p, "downhill": -rise * p, "arc": rise * 4 * p * (1 - p)}[profile]
    climb = -(height - height.min()) * H
    err = centroids(render_ops(masks, path, terrain)) - expected - np.stack([np.zeros_like(climb), climb], axis=1)
    assert (np.abs(err) <= 1.0).all(), err  # one rounding to whole pixels in each op: <= 0.5 px each


def test_linear_and_smooth_paths_pass_through_every_point_and_hold_outside():
    points = [{"t": 0.5, "x": 10, "y": 40}, {"t": 1.0, "x": 30, "y": 10}, {"t": 2.0, "x": 60, "y": 30}]
    times = np.array([0.0, 0.5, 0.75, 1.0, 2.0, 3.0])
    for smooth in (False, True):
        xy = path_positions(points, times, smooth)
        np.testing.assert_allclose(xy[[0, 1, 3, 4, 5]], [[10, 40], [10, 40], [30, 10], [60, 30], [60, 30]])
    np.testing.assert_allclose(path_positions(points, times[2:3]), [[20, 25]])  # half way, linear
    smooth_mid = path_positions(points, np.array([0.75]), True)[0]
    assert not np.allclose(smooth_mid, [20, 25])  # the curve bends through the middle point


def test_orient_turns_with_the_heading_and_starts_as_filmed():
    # Right, then straight up, then left: heading turns +90 then +180 degrees (counter-clockwise on screen).
    points = [
        {"t": 0, "x": 10, "y": 40},
        {"t": 1, "x": 40, "y": 40},
        {"t": 2, "x": 40, "y": 10},
        {"t": 3, "x": 10, "y": 10},
    ]
    np.testing.assert_allclose(path_headings(points, np.array([0.5, 1.5, 2.5, 4.0])), [0, 90, 180, 180])
    masks = np.zeros((25, H, W), bool)
    masks[:, 20:24, 10:30] = True  # a long bar, lying along the first heading
    out = render_ops(masks, {"op": "path", "points": points, "orient": True})
    ys, xs = np.nonzero(out[12])  # t = 1.5 s: heading up, so the bar stands upright
    assert np.ptp(ys) > 3 * np.ptp(xs)
    ys, xs = np.nonzero(out[0])
    assert np.ptp(xs) > 3 * np.ptp(ys)


@pytest.mark.parametrize(
    ("op", "message"),
    [
        ({"points": []}, r"points must be a non-empty list"),
        ({"points": [{"t": 0, "x": 1}]}, r"points\[0\] must be a dict with exactly 't'"),
        ({"points": [{"t": 0, "x": 1, "y": float("nan")}]}, r"points\[0\]\.y must be a finite number"),
        ({"points": [{"t": 0.5, "x": 1, "y": 1}, {"t": 0.5, "x": 2, "y": 2}]}, "two points share the time 0.5 s"),
        ({"points": [{"t": 9, "x": 1, "y": 1}]}, r"times 9\.\.9 s must lie in the target's 0\.\.1 s"),
        ({"points": [{"t": 0, "x": 500, "y": 1}]}, "within one frame's size of the 64x48 canvas"),
        ({"points": [{"t": 0, "x": 1, "y": 1}], "scale": [1, 2]}, r"scale needs one factor per point \(1\), got 2"),
        ({"points": [{"t": 0, "x": 1, "y": 1}], "scale": 0}, r"scale factors must be numbers in \(0, 100\]"),
        ({"points": [{"t": 0, "x": 1, "y": 1}], "smooth": "yes"}, "smooth must be true or false"),
        ({"points": [{"t": 0, "x": 1, "y": 1}], "anchor": "feet"}, "anchor must be one of"),
        ({"points": [{"t": 0, "x": 1, "y": 1}], "speed": 2}, r"unknown parameters \['speed'\]"),
    ],
)
def test_bad_paths_are_refused_with_where_and_why(op, message):
    with pytest.raises(RecipeError, match=message):
        validate(recipe(8, {"op": "path", **op}))
