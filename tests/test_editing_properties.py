"""Property-based tests of the mask editing library (small arrays, few examples: fast on 2 cores)."""

import json

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from editing import cleanup, timeline
from editing.composite import Layer, composite
from editing.recipe import dumps, loads, render, validate
from editing.terrain import terrain_warp
from editing.transforms import affine_matrix, keyframed_transform, warp_mask, warp_masks
from mvideo_core.masks import MaskSet

SETTINGS = settings(max_examples=40, deadline=None)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)


@st.composite
def mask_seqs(draw, max_t: int = 4, h: int = 24, w: int = 32) -> np.ndarray:
    """bool [T, H, W] of random blobs (rectangles and specks)."""
    t = draw(st.integers(1, max_t))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    masks = rng.random((t, h, w)) < draw(st.sampled_from([0.0, 0.05, 0.3]))
    for i in range(t):
        y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        masks[i, y0 : y0 + rng.integers(1, h - y0), x0 : x0 + rng.integers(1, w - x0)] = True
    return masks


@st.composite
def ellipses(draw, size: int = 160) -> np.ndarray:
    """bool [1, size, size]: a reasonable shape (an ellipse of radii 20..45 px, a subject at 480x720) that stays
    inside the frame when scaled by 1.25 about the centre or its centroid."""
    ry, rx = draw(st.integers(20, 45)), draw(st.integers(20, 45))
    cy, cx = draw(st.floats(70, 90)), draw(st.floats(70, 90))
    yy, xx = np.mgrid[:size, :size]
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)[None]


@SETTINGS
@given(mask_seqs(), st.sampled_from(["centroid", "bottom", "center", [0.2, 0.9]]))
def test_identity_transform_leaves_masks_unchanged(masks, anchor):
    keys = [{"t": 0, "scale": 1, "x": 0, "y": 0, "rotate": 0}, {"t": 1, "scale": 1.0, "ease": "ease_in_out"}]
    np.testing.assert_array_equal(keyframed_transform(masks, 8.0, keys, anchor), masks)


@SETTINGS
@given(mask_seqs())
def test_identity_cleanup_and_timeline_ops_leave_masks_unchanged(masks):
    np.testing.assert_array_equal(cleanup.dilate(masks, 0), masks)
    np.testing.assert_array_equal(cleanup.erode(masks, 0), masks)
    np.testing.assert_array_equal(cleanup.temporal_smooth(masks, 1), masks)
    np.testing.assert_array_equal(cleanup.remove_specks(masks, 0), masks)
    np.testing.assert_array_equal(timeline.loop(masks, times=1), masks)
    np.testing.assert_array_equal(timeline.change_speed(masks, 8.0, 1.0), masks)
    np.testing.assert_array_equal(timeline.trim(masks, 8.0, 0.0), masks)
    np.testing.assert_array_equal(timeline.retime(masks, 8.0, max(len(masks) - 1, 0.1) / 8.0), masks)
    np.testing.assert_array_equal(terrain_warp(masks, 8.0, "flat", tilt=1.0), masks)


@SETTINGS
@given(mask_seqs(max_t=6))
def test_reverse_twice_is_identity(masks):
    np.testing.assert_array_equal(timeline.reverse(timeline.reverse(masks)), masks)


@SETTINGS
@given(mask_seqs(), st.data())
def test_translation_inside_the_frame_preserves_area_exactly(masks, data):
    t, h, w = masks.shape
    ys, xs = np.nonzero(masks.any(axis=0))
    dx = data.draw(st.integers(-int(xs.min()), w - 1 - int(xs.max())))
    dy = data.draw(st.integers(-int(ys.min()), h - 1 - int(ys.max())))
    frac = data.draw(st.sampled_from([0.0, 0.3, -0.4]))  # sub-pixel moves round to whole pixels
    mats = np.stack([affine_matrix((0, 0), x=dx + frac, y=dy) for _ in range(t)])
    moved = warp_masks(masks, mats)
    np.testing.assert_array_equal(moved.sum(axis=(1, 2)), masks.sum(axis=(1, 2)))
    assert moved[:, ys.min() + dy, xs.min() + dx].sum() == masks[:, ys.min(), xs.min()].sum()


@SETTINGS
@given(
    mask_seqs(max_t=1),
    st.floats(0, 32),
    st.floats(0, 24),
    st.one_of(st.just(1.0), st.floats(0.3, 3.0)),
    st.one_of(st.just(0.0), st.floats(-180, 180)),
    st.tuples(st.integers(-40, 40), st.integers(-20, 20), st.sampled_from([0.0, 0.3, 0.7, -0.2])),
    st.booleans(),
)
def test_bounding_box_warp_equals_a_full_frame_warp(masks, ax, ay, scale, rotate, move, flip):
    # Whole-pixel or clearly sub-pixel moves: exact half-pixel ties are rounded differently by cv2's fixed point.
    dx, dy, frac = move
    matrix = affine_matrix((ax, ay), scale=scale, rotate=rotate, x=dx + frac, y=dy - frac, flip_x=flip)
    full = cv2.warpAffine(masks[0].view(np.uint8), matrix, (32, 24), flags=cv2.INTER_NEAREST).view(bool)
    np.testing.assert_array_equal(warp_mask(masks[0], matrix), full)


@SETTINGS
@given(ellipses(), st.floats(0.8, 1.25), st.floats(-30, 30), st.sampled_from(["center", "centroid"]))
def test_scale_then_inverse_scale_keeps_iou(masks, scale, rotate, anchor):
    there = keyframed_transform(masks, 8.0, [{"t": 0, "scale": scale, "rotate": rotate}], anchor)
    back = keyframed_transform(there, 8.0, [{"t": 0, "scale": 1 / scale, "rotate": -rotate}], anchor)
    assert iou(back, masks) >= 0.95


def _recipe_for(masks: np.ndarray, fps: float = 8.0, **layer) -> dict:
    t, h, w = masks.shape
    return {
        "version": 1,
        "target": {"width": w, "height": h, "fps": fps, "num_frames": t},
        "layers": [{"source": "s", "object": 1, **layer}],
    }


@SETTINGS
@given(mask_seqs())
def test_composite_of_one_layer_equals_that_layer(masks):
    out = composite([Layer(masks, 3, "solo")], occlusion="visible")
    np.testing.assert_array_equal(out.masks[0], masks)
    assert out.ids == [3]
    rendered = render(_recipe_for(masks), {"s": MaskSet(masks[None], 8.0)})
    np.testing.assert_array_equal(rendered.masks, masks[None])
    np.testing.assert_array_equal(rendered.union(), masks)


# Random but valid recipes for the determinism and round-trip properties.
keyframe = st.fixed_dictionaries(
    {"t": st.floats(0, 0.5)},
    optional={
        "scale": st.floats(0.5, 2.0),
        "x": st.integers(-10, 10),
        "y": st.floats(-5, 5),
        "rotate": st.floats(-45, 45),
        "flip_x": st.booleans(),
        "ease": st.sampled_from(["linear", "ease_in_out", "hold"]),
    },
)
spatial_op = st.one_of(
    st.fixed_dictionaries(
        {"op": st.just("transform"), "keys": st.lists(keyframe, min_size=1, max_size=3)},
        optional={"anchor": st.sampled_from(["centroid", "bottom", "center", [0.5, 1.0]])},
    ),
    st.fixed_dictionaries(
        {"op": st.just("terrain"), "profile": st.sampled_from(["flat", "uphill", "downhill", "arc", "stairs"])},
        optional={"rise": st.floats(-0.5, 0.5), "tilt": st.floats(-1, 1), "along": st.sampled_from(["time", "x"])},
    ),
    st.fixed_dictionaries({"op": st.sampled_from(["dilate", "erode"]), "radius": st.integers(0, 2)}),
    st.fixed_dictionaries({"op": st.just("smooth"), "window": st.sampled_from([1, 3])}),
    st.fixed_dictionaries({"op": st.sampled_from(["fill_holes"])}),
    st.fixed_dictionaries({"op": st.just("flip"), "axis": st.sampled_from(["x", "y"])}),
    st.fixed_dictionaries({"op": st.just("remove_specks"), "min_area": st.integers(0, 5)}),
)
timeline_op = st.one_of(
    st.fixed_dictionaries({"op": st.just("reverse")}),
    st.fixed_dictionaries({"op": st.sampled_from(["loop", "pingpong"]), "times": st.integers(1, 3)}),
    st.fixed_dictionaries({"op": st.just("speed"), "factor": st.sampled_from([0.5, 1.0, 1.5])}),
)
layers = st.lists(
    st.fixed_dictionaries(
        {"source": st.sampled_from(["a", "b"]), "timeline": st.lists(timeline_op, max_size=2)},
        optional={
            "ops": st.lists(spatial_op, max_size=3),
            "z": st.integers(-2, 2),
            "start": st.sampled_from([0.0, 0.125, -0.25]),
            "extend": st.sampled_from(["none", "hold", "loop"]),
            "fit": st.sampled_from(["crop", "letterbox", "stretch"]),
        },
    ),
    min_size=1,
    max_size=3,
)
recipes = st.builds(
    lambda ls, occ: {
        "version": 1,
        "target": {"width": 32, "height": 24, "fps": 8.0, "num_frames": 5},
        "occlusion": occ,
        "layers": ls,
    },
    layers,
    st.sampled_from(["full", "visible"]),
)
SOURCES = {
    "a": MaskSet(np.random.default_rng(0).random((1, 6, 24, 32)) < 0.3, 8.0),
    "b": MaskSet(np.pad(np.ones((1, 9, 10, 12), bool), ((0, 0), (0, 0), (4, 6), (8, 20))), 12.0),
}


@settings(max_examples=30, deadline=None)
@given(recipes)
def test_render_is_deterministic(recipe):
    first, second = render(recipe, SOURCES), render(json.loads(json.dumps(recipe)), SOURCES)
    np.testing.assert_array_equal(first.masks, second.masks)
    assert first.ids == second.ids and first.masks.shape == (len(recipe["layers"]), 5, 24, 32)


@settings(max_examples=40, deadline=None)
@given(recipes)
def test_recipes_survive_a_json_round_trip(recipe):
    text = dumps(recipe)
    assert loads(text) == validate(recipe)
    assert dumps(loads(text)) == text


# The render warps source frames straight into its output (the resize of a source folded into an affine op's
# matrix); the array path (fit_size, then each op on whole arrays) is the reference it must agree with.
affine_op = st.one_of(
    st.fixed_dictionaries(
        {"op": st.just("transform"), "keys": st.lists(keyframe, min_size=1, max_size=2)},
        optional={"anchor": st.sampled_from(["centroid", "bottom", "center", [0.2, 0.7]])},
    ),
    st.fixed_dictionaries(
        {"op": st.just("terrain"), "profile": st.sampled_from(["uphill", "downhill", "arc"])},
        optional={"rise": st.floats(-0.3, 0.3), "tilt": st.floats(-1, 1), "along": st.sampled_from(["time", "x"])},
    ),
    st.fixed_dictionaries(
        {
            "op": st.just("path"),
            "points": st.just([{"t": 0.0, "x": 10.0, "y": 8.0}, {"t": 0.5, "x": 22.0, "y": 16.0}]),
        },
        optional={"smooth": st.booleans(), "anchor": st.sampled_from(["centroid", "bottom"])},
    ),
)


def reference_render(recipe: dict, source: MaskSet) -> np.ndarray:
    """One layer through the array path: gather, fit_size, each op's `apply` on whole arrays."""
    from editing.composite import fit_size, placement_indices
    from editing.ops import OPS, RenderContext

    target, lay = recipe["target"], recipe["layers"][0]
    n, size = target["num_frames"], (target["height"], target["width"])
    seq = timeline.resample_indices(source.num_frames, source.fps, target["fps"])
    frames = seq[placement_indices(len(seq), n, 0, "loop")]
    masks = fit_size(source.masks[0][frames], size, lay.get("fit", "crop"))
    ctx = RenderContext(target["fps"], size, n, {})
    for op in lay["ops"]:
        masks = OPS[op["op"]].apply(masks, op, ctx)
    return masks


@settings(max_examples=30, deadline=None)
@given(
    affine_op,
    st.sampled_from([(24, 32), (12, 16), (18, 40), (30, 20)]),
    st.sampled_from(["crop", "letterbox", "stretch"]),
    st.integers(0, 2**31 - 1),
    st.booleans(),
)
def test_render_agrees_with_the_array_path(op, source_size, fit, seed, then_flip):
    rng = np.random.default_rng(seed)
    h, w = source_size
    masks = np.zeros((1, 5, h, w), dtype=bool)
    for i in range(5):
        y0, x0 = rng.integers(1, h // 2), rng.integers(1, w // 2)
        masks[0, i, y0 : y0 + h // 3, x0 : x0 + w // 3] = True
    source = MaskSet(masks, 8.0)
    recipe = {
        "version": 1,
        "target": {"width": 32, "height": 24, "fps": 8.0, "num_frames": 5},
        "layers": [
            {"source": "s", "extend": "loop", "fit": fit, "ops": [op] + [{"op": "flip", "axis": "x"}] * then_flip}
        ],
    }
    fast, reference = render(recipe, {"s": source}).masks[0], reference_render(recipe, source)
    if source_size == (24, 32):  # the same size: no resize to fold, so exactly the array path
        np.testing.assert_array_equal(fast, reference)
    else:  # one nearest-neighbour resampling instead of two: the same silhouettes within a pixel (two at zoom 2)
        band = np.ones((5, 5), np.uint8)
        for a, b in zip(fast, reference):
            grown = cv2.dilate(b.astype(np.uint8), band).astype(bool)
            shrunk = cv2.erode(b.astype(np.uint8), band, borderValue=0).astype(bool)
            assert (a <= grown).all() and (shrunk <= a).all()
