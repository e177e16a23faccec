"""Worked examples in the spirit of the paper's figures 7-9: camera zoom, uphill terrain, two subjects combined."""

import numpy as np

from editing.composite import fit_size
from editing.recipe import render
from editing.terrain import terrain_warp
from editing.transforms import keyframed_transform, mask_bbox, zoom
from mvideo_core.masks import MaskSet


def runner(t: int, h: int, w: int, x0: float, vx: float, ground: int, ry: int = 30, rx: int = 14) -> np.ndarray:
    """bool [T, H, W]: an upright ellipse 'subject' moving right at vx px/frame with its feet on row `ground`."""
    yy, xx = np.mgrid[:h, :w]
    cy = ground - ry
    return np.stack([((yy - cy) / ry) ** 2 + ((xx - (x0 + vx * i)) / rx) ** 2 <= 1 for i in range(t)])


def test_zoom_in_over_4_seconds_grows_area_by_the_square_of_the_factor():
    # Figure 7: 33 frames at 8 fps, zoom 1 -> 2 about the frame centre over 4 s.
    masks = runner(33, 240, 360, 180, 0.0, 160)
    out = zoom(masks, 8.0, 2.0, 4.0, anchor="center")
    areas = out.sum(axis=(1, 2)).astype(float)
    assert abs(areas[32] / areas[0] - 4.0) < 0.05 * 4.0
    assert abs(areas[16] / areas[0] - 1.5**2) < 0.05 * 1.5**2  # half way, linear: scale 1.5
    assert (np.diff(areas) >= 0).all()
    zoom_out = zoom(masks, 8.0, 0.5, 4.0, anchor="center").sum(axis=(1, 2))
    assert abs(zoom_out[32] / zoom_out[0] - 0.25) < 0.05 * 0.25


def test_ease_in_out_starts_slower_than_linear_and_hold_jumps_at_the_next_key():
    masks = runner(33, 240, 360, 180, 0.0, 160)
    keys = [{"t": 0, "scale": 1.0}, {"t": 4, "scale": 2.0}]
    linear = keyframed_transform(masks, 8.0, keys).sum(axis=(1, 2))
    eased = keyframed_transform(masks, 8.0, [{**keys[0], "ease": "ease_in_out"}, keys[1]]).sum(axis=(1, 2))
    held = keyframed_transform(masks, 8.0, [{**keys[0], "ease": "hold"}, keys[1]]).sum(axis=(1, 2))
    assert eased[8] < linear[8] and abs(int(eased[16]) - int(linear[16])) < 0.02 * linear[16]
    np.testing.assert_array_equal(held[:32], masks[:32].sum(axis=(1, 2)))
    assert held[32] == linear[32]


def test_bottom_anchor_keeps_the_feet_on_the_ground_while_zooming():
    masks = runner(17, 240, 360, 120, 4.0, 200)
    out = zoom(masks, 8.0, 1.5, 2.0, anchor="bottom")
    assert all(mask_bbox(m)[1] - 1 == 200 for m in out)  # bottom row stays on row 200
    assert mask_bbox(out[16])[1] - mask_bbox(out[16])[0] > 1.4 * (mask_bbox(masks[16])[1] - mask_bbox(masks[16])[0])


def test_uphill_warp_moves_the_mask_bottom_along_the_slope():
    # Figure 8: a subject running right on flat ground (feet on row 220) made to run uphill.
    t, h, w = 33, 240, 360
    masks = runner(t, h, w, 40, 8.0, 220)
    out = terrain_warp(masks, 8.0, "uphill", rise=0.3, along="x")
    for i in range(t):
        x_contact = 40 + 8.0 * i
        expected = 220 - 0.3 * h * (x_contact - 40) / (w - 1)
        assert abs((mask_bbox(out[i])[1] - 1) - expected) <= 1.0
    np.testing.assert_array_equal(out.sum(axis=(1, 2)), masks.sum(axis=(1, 2)))  # size and shape kept
    down = terrain_warp(masks, 8.0, "downhill", rise=0.05, along="time")
    assert mask_bbox(down[0])[1] - 1 == 220 - round(0.05 * h) and mask_bbox(down[-1])[1] - 1 == 220


def test_tilt_turns_the_subject_with_the_ground():
    # A long, low body (a tiger) running right and uphill: with tilt its front (right end) rises above its back.
    masks = runner(9, 240, 360, 100, 10.0, 220, ry=12, rx=40)
    upright = terrain_warp(masks, 8.0, "uphill", rise=0.4, along="x")
    tilted = terrain_warp(masks, 8.0, "uphill", rise=0.4, along="x", tilt=1.0)
    for i in range(9):
        y0, y1, x0, x1 = mask_bbox(tilted[i])
        front_bottom = np.flatnonzero(tilted[i, :, x1 - 6])[-1]
        back_bottom = np.flatnonzero(tilted[i, :, x0 + 5])[-1]
        assert front_bottom < back_bottom - 10  # rotated counter-clockwise about the ground contact
        uy0, uy1, ux0, ux1 = mask_bbox(upright[i])
        assert abs(np.flatnonzero(upright[i, :, ux1 - 6])[-1] - np.flatnonzero(upright[i, :, ux0 + 5])[-1]) <= 1
    steep = np.degrees(np.arctan(0.4 * 240 / 360))  # the slope angle of that hill in the image
    ys, xs = np.nonzero(tilted[4])
    angle = -np.degrees(np.arctan(np.polyfit(xs, ys, 1)[0]))  # image y grows downwards
    assert abs(angle - steep) < 3.0
    leaning = terrain_warp(masks, 8.0, "uphill", rise=0.4, along="x", tilt=-1.0)  # the other way: front drops
    ys, xs = np.nonzero(leaning[4])
    assert abs(-np.degrees(np.arctan(np.polyfit(xs, ys, 1)[0])) + steep) < 3.0


def test_stairs_and_arc_profiles():
    masks = runner(33, 240, 360, 180, 0.0, 220)
    stairs = terrain_warp(masks, 8.0, "stairs", rise=0.2, steps=4)
    bottoms = np.array([mask_bbox(m)[1] for m in stairs])
    assert len(np.unique(bottoms)) == 4 and (np.diff(bottoms) <= 0).all()
    arc = terrain_warp(masks, 8.0, "arc", rise=0.2)
    arc_bottoms = np.array([mask_bbox(m)[1] for m in arc])
    assert arc_bottoms[0] == arc_bottoms[-1] == 221 and arc_bottoms[16] == 221 - 48
    poly = terrain_warp(masks, 8.0, "polyline", points=[[0, 0], [0.5, 0.1], [1, 0.0]])
    assert mask_bbox(poly[16])[1] == 221 - 24


def test_two_subjects_from_two_sources_of_different_size_and_fps():
    # Figure 9: a tiger-like runner (24 fps, 240x360) and a dancer (12 fps, 480x720) on one 8 fps 480x720 target.
    tiger = MaskSet(runner(72, 240, 360, 40, 3.0, 220)[None], 24.0, names=["tiger"])
    dancer_masks = runner(48, 480, 720, 500, 0.0, 400, ry=80, rx=20)
    dancer = MaskSet(np.stack([dancer_masks, dancer_masks[::-1]])[:, :, :, :], 12.0, ids=[4, 7])
    recipe = {
        "version": 1,
        "target": {"width": 720, "height": 480, "fps": 8.0, "num_frames": 33},
        "layers": [
            {
                "source": "tiger",
                "z": 1,
                "ops": [{"op": "transform", "anchor": "bottom", "keys": [{"t": 0, "x": -20}]}],
            },
            {"id": 9, "source": "dancer", "object": 7, "start": 1.0, "speed": 2.0, "extend": "none"},
        ],
    }
    out = render(recipe, {"tiger": tiger, "dancer": dancer})
    assert out.masks.shape == (2, 33, 480, 720) and out.fps == 8.0
    assert out.ids == [9, 1] and out.names == ["object 7", "tiger"]  # bottom to top by z
    # The tiger: 3 s of source -> 24 frames at 8 fps, scaled 2x (crop fit, same aspect), moved 20 px left.
    for j in (0, 11, 23):
        expected = fit_size(tiger.masks[0, [3 * j]], (480, 720))[0]
        np.testing.assert_array_equal(out.masks[1, j], np.roll(expected, -20, axis=1))
    assert not out.masks[1, 24:].any()
    # The dancer: starts at 1 s (frame 8), at 2x speed its 4 s last 2 s (16 frames).
    present = np.flatnonzero(out.masks[0].any(axis=(1, 2)))
    assert present[0] == 8 and present[-1] == 23
    np.testing.assert_array_equal(out.masks[0, 8 + 5], dancer.masks[1, 5 * 3])
    np.testing.assert_array_equal(out.union(), out.masks.any(axis=0))


def test_x_mode_terrain_is_a_fixed_ground_line_whichever_way_the_subject_runs():
    masks = runner(9, 240, 360, 300, -10.0, 150, ry=12, rx=40)  # running left
    out = terrain_warp(masks, 8.0, "uphill", rise=0.2, along="x", tilt=1.0)
    bottoms = [mask_bbox(m)[1] for m in out]
    assert all(b1 > b0 for b0, b1 in zip(bottoms, bottoms[1:]))  # leftwards the line goes down
    ys, xs = np.nonzero(out[4])
    assert -np.degrees(np.arctan(np.polyfit(xs, ys, 1)[0])) > 5  # the body still follows the line's slope
    timed = [mask_bbox(m)[1] for m in terrain_warp(masks, 8.0, "uphill", rise=0.2, along="time")]
    assert all(b1 < b0 for b0, b1 in zip(timed, timed[1:]))  # in time mode it climbs the way it runs


def test_downhill_is_uphill_mirrored_and_keeps_the_subject_whole():
    # A subject standing on the bottom rows of the frame: downhill must not push it out (issue 25).
    t, h, w = 33, 240, 360
    masks = runner(t, h, w, 180, 0.0, 236)
    up = terrain_warp(masks, 8.0, "uphill", rise=0.2, along="time")
    down = terrain_warp(masks, 8.0, "downhill", rise=0.2, along="time")
    up_bottoms = np.array([mask_bbox(m)[1] for m in up])
    down_bottoms = np.array([mask_bbox(m)[1] for m in down])
    np.testing.assert_array_equal(down_bottoms, up_bottoms[::-1])  # the same path, travelled the other way
    assert down_bottoms[0] - down_bottoms[-1] == -round(0.2 * h)  # the same displacement, 48 px, downwards
    np.testing.assert_array_equal(down.sum(axis=(1, 2)), masks.sum(axis=(1, 2)))  # whole in every frame


def test_render_warns_with_the_frames_where_a_layer_leaves_the_frame():
    masks = MaskSet(runner(9, 48, 64, 32, 0.0, 40, ry=8, rx=6)[None], 8.0, names=["dog"])
    recipe = {
        "version": 1,
        "target": {"width": 64, "height": 48, "fps": 8.0, "num_frames": 9},
        "layers": [{"source": "m", "ops": [{"op": "transform", "keys": [{"t": 0.0}, {"t": 1.0, "x": 64.0}]}]}],
    }
    out = render(recipe, {"m": masks})
    cut = [i for i in range(9) if out.masks[0, i, :, -1].any() or not out.masks[0, i].any()]
    assert cut and cut == list(range(cut[0], 9))
    assert out.meta["warnings"] == [
        f"layer 1 (dog) leaves the frame in frames {cut[0]}-8 ({cut[0] / 8:.2f}-1.00 s): its edits push part of it "
        "past the edge, where it is cut off; move it, scale it down or use a smaller rise"
    ]
    recipe["layers"][0]["ops"][0]["keys"][1]["x"] = 10.0
    assert render(recipe, {"m": masks}).meta["warnings"] == []
