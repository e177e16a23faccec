"""Behaviour of the single edits: timeline, cleanup, composite occlusion, fitting, preview."""

import numpy as np
import pytest

from editing import cleanup, timeline
from editing.composite import Layer, composite, conform, fit_size
from editing.preview import preview_frame, preview_video
from editing.terrain import terrain_warp
from editing.transforms import EditError, affine_matrix, interpolate_keyframes, keyframed_transform, warp_mask
from mvideo_core.masks import MaskSet


def numbered(t: int) -> np.ndarray:
    """bool [T, 8, 8] whose frame i has exactly i + 1 pixels on: frame identity is readable from the area."""
    m = np.zeros((t, 8, 8), dtype=bool)
    for i in range(t):
        m[i].flat[: i + 1] = True
    return m


def ids(masks: np.ndarray) -> list[int]:
    return (masks.sum(axis=(1, 2)) - 1).tolist()


# -- timeline -------------------------------------------------------------------------------------------------------
def test_trim_speed_loop_pingpong_pick_the_expected_frames():
    m = numbered(8)
    assert ids(timeline.trim(m, 8.0, 0.25, 0.75)) == [2, 3, 4, 5]
    assert ids(timeline.change_speed(m, 8.0, 2.0)) == [0, 2, 4, 6]
    assert ids(timeline.change_speed(m, 8.0, 0.5)) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    assert ids(timeline.loop(m[:3], times=2)) == [0, 1, 2, 0, 1, 2]
    assert ids(timeline.loop(m[:3], num_frames=4)) == [0, 1, 2, 0]
    assert ids(timeline.pingpong(m[:4], times=2)) == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1]
    assert ids(timeline.reverse(m[:3])) == [2, 1, 0]
    assert ids(timeline.concatenate([m[:2], m[5:7]])) == [0, 1, 5, 6]


def test_retime_a_4_second_motion_to_16_seconds():
    m = numbered(33)  # 4 s at 8 fps: frames at 0, 1/8, ..., 4 s
    stretched = timeline.retime(m, 8.0, 16.0, "stretch")
    assert len(stretched) == 129 and ids(stretched)[:5] == [0, 0, 0, 0, 1] and ids(stretched)[-1] == 32
    looped = timeline.retime(m, 8.0, 16.0, "loop")
    assert ids(looped) == [i % 33 for i in range(129)]
    pp = timeline.retime(m, 8.0, 16.0, "pingpong")
    assert len(pp) == 129 and ids(pp)[31:35] == [31, 32, 31, 30]


@pytest.mark.parametrize(
    ("duration", "fps", "frames"), [(4.0, 8.0, 33), (16.0, 8.0, 129), (2.0, 16.0, 33), (0.01, 8.0, 1)]
)
@pytest.mark.parametrize("mode", timeline.RETIME_MODES)
def test_retime_to_d_seconds_at_f_fps_gives_round_d_f_plus_one_frames(duration, fps, frames, mode):
    assert len(timeline.retime_indices(20, fps, duration, mode)) == frames


def test_resampling_between_frame_rates():
    assert timeline.resample_indices(72, 24.0, 8.0).tolist() == list(range(0, 72, 3))
    assert timeline.resample_indices(4, 4.0, 8.0).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: timeline.trim(m, 8.0, 2.0, 3.0), "keeps no frame"),
        (lambda m: timeline.trim(m, 8.0, 0.5, 0.2), "start < end"),
        (lambda m: timeline.change_speed(m, 8.0, 0), "speed must be a positive number"),
        (lambda m: timeline.loop(m), "exactly one of"),
        (lambda m: timeline.retime(m, 8.0, 4.0, "bounce"), "retime mode must be one of"),
        (lambda m: timeline.concatenate([m, np.zeros((2, 5, 5), bool)]), "must share [H, W]"),
        (lambda m: timeline.concatenate([]), "at least one"),
    ],
)
def test_bad_timeline_inputs_raise_clear_errors(call, message):
    with pytest.raises(EditError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(numbered(8))


# -- transforms -----------------------------------------------------------------------------------------------------
def test_keyframes_interpolate_hold_at_the_ends_and_inherit_missing_fields():
    keys = [{"t": 1.0, "scale": 1.0, "x": 10}, {"t": 3.0, "scale": 3.0}, {"t": 4.0, "flip_x": True}]
    v = interpolate_keyframes(keys, np.array([0.0, 1.0, 2.0, 3.0, 3.5, 4.0, 9.0]))
    np.testing.assert_allclose(v["scale"], [1, 1, 2, 3, 3, 3, 3])
    np.testing.assert_allclose(v["x"], [10] * 7)
    assert v["flip_x"].tolist() == [False] * 5 + [True, True]


def test_flip_mirrors_about_the_anchor_and_rotation_turns_counter_clockwise():
    m = np.zeros((1, 20, 20), bool)
    m[0, 5:8, 10:16] = True  # a bar to the right of the centre column 9.5
    flipped = keyframed_transform(m, 8.0, [{"t": 0, "flip_x": True}], "center")
    np.testing.assert_array_equal(flipped, m[:, :, ::-1])
    bar = np.zeros((21, 21), bool)
    bar[10, 10:18] = True  # pointing right from (10, 10)
    turned = warp_mask(bar, affine_matrix((10, 10), rotate=90))
    assert turned[3:10, 10].all() and turned.sum() == bar.sum()  # now pointing up


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "non-empty list"),
        ([{"t": "0"}], "time in seconds"),
        ([{"t": 0, "scale": 0}], "scale must be > 0"),
        ([{"t": 0, "zoom": 2}], "unknown fields"),
        ([{"t": 0, "ease": "bounce"}], "ease must be one of"),
        ([{"t": 0, "x": float("nan")}], "finite number"),
    ],
)
def test_bad_keyframes_raise_clear_errors(keys, message):
    with pytest.raises(EditError, match=message):
        keyframed_transform(numbered(2), 8.0, keys)


def test_bad_anchor_and_terrain_inputs_raise_clear_errors():
    with pytest.raises(EditError, match="anchor must be one of"):
        keyframed_transform(numbered(2), 8.0, [{"t": 0}], anchor="feet")
    with pytest.raises(EditError, match=r"\[fx, fy\]"):
        keyframed_transform(numbered(2), 8.0, [{"t": 0}], anchor=[2, 0.5])
    with pytest.raises(EditError, match="profile must be one of"):
        terrain_warp(numbered(2), 8.0, "mountain")
    with pytest.raises(EditError, match="polyline terrain needs points"):
        terrain_warp(numbered(2), 8.0, "polyline", points=[[0, 0]])
    with pytest.raises(EditError, match="tilt"):
        terrain_warp(numbered(2), 8.0, "uphill", tilt=-1.5)


def test_empty_frames_stay_empty_under_every_spatial_edit():
    m = np.zeros((3, 16, 16), bool)
    m[1, 4:8, 4:8] = True
    out = keyframed_transform(m, 8.0, [{"t": 0, "scale": 2, "rotate": 30}])
    assert not out[0].any() and not out[2].any() and out[1].any()
    assert not terrain_warp(m, 8.0, "uphill")[[0, 2]].any()


# -- cleanup --------------------------------------------------------------------------------------------------------
def test_fill_holes_and_remove_specks():
    m = np.zeros((1, 20, 20), bool)
    m[0, 2:12, 2:12] = True
    m[0, 5:8, 5:8] = False  # a hole
    m[0, 16, 16] = True  # a speck
    filled = cleanup.fill_holes(m)
    assert filled[0, 5:8, 5:8].all() and filled.sum() == m.sum() + 9
    clean = cleanup.remove_specks(m, min_area=2)
    assert not clean[0, 16, 16] and clean.sum() == m.sum() - 1


def test_dilate_and_erode_by_a_disc():
    m = np.zeros((1, 21, 21), bool)
    m[0, 10, 10] = True
    grown = cleanup.dilate(m, 2)
    assert grown.sum() == 13 and grown[0, 8, 10] and not grown[0, 8, 8]  # a radius-2 disc
    np.testing.assert_array_equal(cleanup.erode(grown, 2), m)
    edge = np.ones((1, 6, 6), bool)
    assert cleanup.erode(edge, 1).sum() == 16  # beyond the frame counts as background


def test_temporal_smoothing_removes_one_frame_flicker():
    m = np.zeros((5, 4, 4), bool)
    m[:, 1:3, 1:3] = True
    m[2, 1, 1] = False  # a one-frame hole
    m[3, 0, 0] = True  # a one-frame speck
    out = cleanup.temporal_smooth(m, 3)
    assert out[:, 1:3, 1:3].all() and not out[:, 0, 0].any()
    with pytest.raises(EditError, match="must be odd"):
        cleanup.temporal_smooth(m, 4)


# -- composite and fitting ------------------------------------------------------------------------------------------
def test_composite_orders_by_z_and_visible_occlusion_cuts_lower_layers():
    back, front = np.zeros((1, 6, 6), bool), np.zeros((1, 6, 6), bool)
    back[0, 1:5, 1:5] = True
    front[0, 3:6, 3:6] = True
    full = composite([Layer(front, 2, "front", z=5), Layer(back, 1, "back", z=0)])
    assert full.ids == [1, 2] and full.masks[0].sum() == 16  # full silhouettes kept
    assert full.label_map()[0, 3, 3] == 2  # the top layer in front
    visible = composite([Layer(front, 2, "front", z=5), Layer(back, 1, "back", z=0)], occlusion="visible")
    assert visible.masks[0].sum() == 16 - 4 and visible.masks[1].sum() == 9
    np.testing.assert_array_equal(visible.union(), full.union())
    with pytest.raises(EditError, match="same target"):
        composite([Layer(back, 1), Layer(np.zeros((2, 6, 6), bool), 2)])
    with pytest.raises(EditError, match="occlusion must be one of"):
        composite([Layer(back, 1)], occlusion="partial")


def test_fit_size_crop_letterbox_stretch():
    m = np.ones((1, 10, 20), bool)  # 2:1 into a 1:1 target
    assert fit_size(m, (10, 10), "crop").all()
    letter = fit_size(m, (10, 10), "letterbox")
    assert letter[0, :, :].sum() == 50 and letter[0, 2:7].all() and not letter[0, :2].any()
    assert fit_size(m, (5, 5), "stretch").all()
    with pytest.raises(EditError, match="fit must be one of"):
        fit_size(m, (5, 5), "zoom")


def test_conform_places_a_clip_on_the_target_timeline():
    m = numbered(4)  # 1 s at 4 fps
    out = conform(m, 4.0, size=(8, 8), target_fps=8.0, num_frames=12, offset=0.25)
    assert ids(out[2:10]) == [0, 0, 1, 1, 2, 2, 3, 3] and not out[:2].any() and not out[10:].any()
    held = conform(m, 4.0, size=(8, 8), target_fps=8.0, num_frames=12, extend="hold")
    assert ids(held)[-1] == 3


# -- preview --------------------------------------------------------------------------------------------------------
def test_preview_blends_object_colours_over_a_background_of_any_size():
    masks = MaskSet(np.zeros((1, 3, 40, 60), bool), 8.0)
    masks.masks[0, 1, 10:30, 20:40] = True
    bg = np.full((6, 20, 30, 3), 100, np.uint8)  # smaller and at 16 fps
    frame = preview_frame(masks, 1, bg, alpha=0.5, background_fps=16.0, labels=False)
    color = masks.colors()[0].astype(int)
    assert frame.shape == (40, 60, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[20, 30], (100 * 0.5 + color * 0.5).astype(np.uint8))
    assert (frame[0, 0] == 100).all()
    video = preview_video(masks, labels=False)
    assert video.shape == (3, 40, 60, 3) and (video[0] == 24).all()
    with pytest.raises(EditError, match="uint8 RGB frames"):
        preview_frame(masks, 0, np.zeros((20, 30, 3), np.float32))
    with pytest.raises(EditError, match="outside"):
        preview_frame(masks, 3)
