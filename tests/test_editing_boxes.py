"""Boxes to silhouettes (issue 25.2): keyframed boxes, or one box and a path, become a mask sequence."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from editing import commands
from editing.boxes import box_masks, fit_silhouette, interpolate_boxes
from editing.path import path_positions
from editing.recipe import RecipeError, render, validate
from editing.transforms import mask_bbox
from mvideo_core.masks import MaskSet

H, W, FPS = 48, 64, 8.0


def recipe(*layers: dict, num_frames: int = 9) -> dict:
    target = {"width": W, "height": H, "fps": FPS, "num_frames": num_frames}
    return {"version": 1, "target": target, "layers": list(layers)}


def dancer() -> MaskSet:
    """A tall thin silhouette (20 x 6 px with a 'head') in frame 2 of 3; frame 0 is empty."""
    m = np.zeros((1, 3, 40, 40), dtype=bool)
    m[0, 1:, 10:30, 17:23] = True
    m[0, 1:, 6:10, 18:22] = True
    return MaskSet(m, FPS, names=["dancer"])


@st.composite
def keyed_boxes(draw) -> list[dict]:
    times = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=3, unique=True))
    keys = []
    for t in times:
        x0, y0 = draw(st.integers(0, W - 8)), draw(st.integers(0, H - 8))
        keys.append({"t": t, "box": [x0, y0, draw(st.integers(x0 + 4, W)), draw(st.integers(y0 + 4, H))]})
    return keys


@settings(max_examples=30, deadline=None)
@given(keyed_boxes(), st.sampled_from(["ellipse", "rounded", "box", "silhouette"]))
def test_each_frame_fills_its_interpolated_box_and_nothing_outside_it(keys, shape):
    layer = {"boxes": keys, "shape": shape if shape != "silhouette" else {"source": "d", "frame": 2, "fit": "stretch"}}
    out = render(recipe(layer), {"d": dancer()}).masks[0]
    expected = interpolate_boxes(keys, np.arange(9) / FPS)
    for i in range(9):
        x0, y0, x1, y1 = (int(np.floor(v + 0.5)) for v in expected[i])
        if shape == "silhouette":  # nearest-neighbour resizing may skip a sparse edge row of the silhouette
            by0, by1, bx0, bx1 = mask_bbox(out[i])
            assert y0 <= by0 < by1 <= y1 and x0 <= bx0 < bx1 <= x1
        else:  # a named shape touches all four sides of its box
            assert mask_bbox(out[i]) == (y0, y1, x0, x1)


def test_shapes_are_an_ellipse_a_rounded_box_and_a_box():
    keys = [{"t": 0.0, "box": [10, 8, 50, 40]}]
    ellipse, rounded, box = (box_masks(keys, np.zeros(1), (H, W), s)[0] for s in ("ellipse", "rounded", "box"))
    assert ellipse.sum() == pytest.approx(np.pi / 4 * 40 * 32, rel=0.02)
    assert box.sum() == 40 * 32 and box[8:40, 10:50].all()
    assert ellipse.sum() < rounded.sum() < box.sum()
    assert not rounded[8, 10] and not rounded[39, 49] and rounded[8, 30] and rounded[24, 10]  # corners cut, sides full


def test_boxes_move_and_resize_linearly_between_keys_and_hold_outside():
    keys = [{"t": 0.25, "box": [0, 0, 10, 10]}, {"t": 0.75, "box": [20, 10, 40, 30]}]
    out = render(recipe({"boxes": keys, "shape": "box"}), {}).masks[0]
    assert mask_bbox(out[0]) == mask_bbox(out[2]) == (0, 10, 0, 10)  # held before the first key
    assert mask_bbox(out[4]) == (5, 20, 10, 25)  # half way: [10, 5, 25, 20]
    assert mask_bbox(out[6]) == mask_bbox(out[8]) == (10, 30, 20, 40)


def test_a_chosen_silhouette_is_fitted_into_the_box():
    box = [{"t": 0.0, "box": [10, 4, 40, 44]}]  # 30 wide, 40 tall
    sources = {"d": dancer()}
    kept = render(recipe({"boxes": box, "shape": {"source": "d", "frame": 2}}), sources).masks[0, 0]
    y0, y1, x0, x1 = mask_bbox(kept)
    assert (y0, y1) == (4, 44) and x1 - x0 == 10 and (x0 + x1) / 2 == pytest.approx(25, abs=1)  # aspect 24:6 kept
    stretched = render(recipe({"boxes": box, "shape": {"source": "d", "frame": 2, "fit": "stretch"}}), sources)
    assert mask_bbox(stretched.masks[0, 0]) == (4, 44, 10, 40)
    np.testing.assert_array_equal(
        fit_silhouette(dancer().masks[0, 2], 24, 6, "stretch"), dancer().masks[0, 2, 6:30, 17:23]
    )


def test_one_box_and_a_path_drag_the_shape_along_the_path():
    points = [{"t": 0.0, "x": 12, "y": 12}, {"t": 1.0, "x": 50, "y": 36}]
    layer = {"boxes": [{"t": 0.0, "box": [0, 0, 9, 13]}], "ops": [{"op": "path", "points": points}]}
    out = render(recipe(layer), {}).masks[0]
    expected = path_positions(points, np.arange(9) / FPS)
    for i in range(9):
        ys, xs = np.nonzero(out[i])
        assert abs(xs.mean() - expected[i, 0]) <= 0.5 and abs(ys.mean() - expected[i, 1]) <= 0.5
    assert len(set(out.sum(axis=(1, 2)).tolist())) == 1  # the same silhouette in every frame


def test_add_box_layer_command_makes_a_renderable_layer_on_top():
    base = recipe({"id": 1, "source": "d", "object": 1})
    new = commands.add_box_layer(base, [{"t": 0.5, "box": [1, 2, 9, 12]}, {"t": 0.0, "box": [0, 0, 8, 8]}], "car")
    assert [k["t"] for k in new["layers"][1]["boxes"]] == [0.0, 0.5] and new["layers"][1]["z"] == 1
    out = render(new, {"d": dancer()})
    assert out.names == ["dancer", "car"] and out.masks[1].any(axis=(1, 2)).all()
    assert "- layer 2 (car): 2 boxes drawn as ellipse" in commands.summary(new)  # drawn, not "as extracted"
    assert "- layer 1 (d): as extracted" in commands.summary(new)
    silhouette = commands.add_box_layer(base, [{"t": 0.0, "box": [0, 0, 8, 8]}], "cut", {"source": "d", "frame": 0})
    assert "- layer 2 (cut): 1 box drawn as the silhouette of d" in commands.summary(silhouette)
    with pytest.raises(RecipeError, match="draw at least one box"):
        commands.add_box_layer(base, [])


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"source": "d", "boxes": [{"t": 0, "box": [0, 0, 4, 4]}]}, "has both 'source' and 'boxes'"),
        ({"name": "x"}, "has no 'source' and 'boxes'"),
        ({"source": "d", "shape": "ellipse"}, "shape fills drawn boxes"),
        ({"boxes": []}, "boxes must be a non-empty list"),
        ({"boxes": [{"t": 0, "box": [5, 0, 5, 4]}]}, r"boxes\[0\]\.box needs x1 - x0 >= 1"),
        ({"boxes": [{"t": 0, "box": [0, 0, 4]}]}, r"boxes\[0\]\.box must be \[x0, y0, x1, y1\]"),
        ({"boxes": [{"t": 0, "box": [0, 0, 4, 4], "z": 1}]}, r"boxes\[0\] must be a dict with exactly"),
        ({"boxes": [{"t": 0, "box": [0, 0, 4, 4]}, {"t": 0, "box": [1, 1, 4, 4]}]}, "two boxes share the time 0 s"),
        ({"boxes": [{"t": 5, "box": [0, 0, 4, 4]}]}, r"times 5\.\.5 s must lie in the target's 0\.\.1\.125 s"),
        ({"boxes": [{"t": 0, "box": [0, 0, 4000, 4]}]}, "within one frame's size of the 64x48 canvas"),
        ({"boxes": [{"t": 0, "box": [0, 0, 4, 4]}], "shape": "star"}, r"shape must be one of \['ellipse'"),
        ({"boxes": [{"t": 0, "box": [0, 0, 4, 4]}], "shape": {"source": "d", "frame": -1}}, "frame index >= 0"),
        ({"boxes": [{"t": 0, "box": [0, 0, 4, 4]}], "shape": {"source": "d", "fit": "crop"}}, "fit must be one of"),
    ],
)
def test_bad_box_layers_are_refused_with_where_and_why(layer, message):
    with pytest.raises(RecipeError, match=message):
        validate(recipe(layer))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ({"source": "d", "frame": 0}, r"shape: frame 0 of 'd': the chosen silhouette frame is empty"),
        ({"source": "d", "frame": 7}, r"shape\.frame 7 is past the end of 'd' \(3 frames\)"),
        ({"source": "e", "frame": 0}, r"source 'e' was not given"),
    ],
)
def test_a_silhouette_that_is_not_there_is_named(shape, message):
    with pytest.raises(RecipeError, match=message):
        render(recipe({"boxes": [{"t": 0, "box": [0, 0, 4, 4]}], "shape": shape}), {"d": dancer()})
