"""The clip spec (timeline arithmetic) and the one mask preparation every caller uses (resample, fit, policy)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvideo_core.clip_spec import COGVIDEOX_CLIP, ClipSpec, mask_timeline_indices, prepare_masks
from mvideo_core.masks import MaskSet
from mvideo_core.video_io import resample_fps, resize_masks

WAN_LIKE = ClipSpec(16.0, 81, 5, 8, 4, 16, "flow_prediction", 16, (480, 832))  # another engine's shape


def test_cogvideox_clips_are_4_s_of_33_frames_sharing_one():
    spec = COGVIDEOX_CLIP
    assert (spec.stride, spec.clip_seconds, spec.latent_frames) == (32, 4.0, 9)
    assert spec.num_clips(16) == 4 and spec.total_frames(4) == 129
    assert spec.clip_ranges(3) == [(0, 33), (32, 65), (64, 97)]
    assert spec.clips_covered(129) == 4 and spec.clips_covered(128) == 3 and spec.clips_covered(0) == 0
    for bad in (0, 6, -4, 4.5, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="multiple of 4"):
            spec.num_clips(bad)


def test_another_spec_sets_its_own_timeline():
    assert WAN_LIKE.clip_seconds == 4.75 and WAN_LIKE.num_clips(9.5) == 2
    assert WAN_LIKE.clip_ranges(2) == [(0, 77), (72, 153)] and WAN_LIKE.total_frames(2) == 153
    with pytest.raises(ValueError, match="width has to be a positive multiple of 16"):
        WAN_LIKE.check_size(480, 100)
    with pytest.raises(ValueError, match="overlap_frames"):
        ClipSpec(8.0, 33, 33, 8, 4, 16, "epsilon", 16, (64, 64))


def _old_hold(masks, num_clips, size, fps):
    """The CLI's preparation before the clip spec (resample all, resize all, hold the last frame)."""
    if fps != 8.0:
        masks = resample_fps(masks, fps, 8.0)
    masks = resize_masks(masks, size)
    need = 32 * num_clips + 1
    if masks.shape[0] < need:
        masks = np.concatenate([masks, np.repeat(masks[-1:], need - masks.shape[0], axis=0)])
    return masks[:need]


@settings(max_examples=25, deadline=None)
@given(
    t=st.integers(1, 80), fps=st.sampled_from([8.0, 24.0, 5.0, 29.97]), clips=st.integers(1, 3), seed=st.integers(0, 9)
)
def test_hold_equals_the_old_cli_preparation(t, fps, clips, seed):
    masks = np.random.default_rng(seed).random((t, 20, 30)) > 0.5
    out = prepare_masks(masks, COGVIDEOX_CLIP, clips, (32, 48), fps=fps, policy="hold")
    assert out.shape == (32 * clips + 1, 32, 48) and out.dtype == bool
    assert np.array_equal(out, _old_hold(masks, clips, (32, 48), fps))


def test_loop_equals_the_old_studio_preparation():
    masks = np.random.default_rng(0).random((10, 48, 72)) > 0.5
    out = prepare_masks(MaskSet(masks[None], fps=8.0), COGVIDEOX_CLIP, 2, (32, 48), policy="loop")
    studio = resize_masks(masks, (32, 48), fit="crop")[np.arange(65) % 10]
    assert np.array_equal(out, studio)


def test_objects_can_be_kept_apart_on_the_same_timeline():
    m = np.zeros((2, 12, 16, 24), dtype=bool)
    m[0, :, :8] = True
    m[1, ::2, 8:] = True
    maskset = MaskSet(m, fps=4.0)
    apart = prepare_masks(maskset, COGVIDEOX_CLIP, 1, (32, 48), policy="loop", union=False)
    together = prepare_masks(maskset, COGVIDEOX_CLIP, 1, (32, 48), policy="loop")
    assert apart.shape == (2, 33, 32, 48) and np.array_equal(apart.any(axis=0), together)


def test_stop_ends_the_video_with_the_masks():
    masks = np.ones((70, 8, 8), dtype=bool)  # 8.75 s at 8 fps: two whole clips
    assert prepare_masks(masks, COGVIDEOX_CLIP, 4, (16, 16), policy="stop").shape[0] == 65
    assert prepare_masks(masks, COGVIDEOX_CLIP, 1, (16, 16), policy="stop").shape[0] == 33
    with pytest.raises(ValueError, match="less than one 4 s clip.*'hold'"):
        prepare_masks(masks[:20], COGVIDEOX_CLIP, 2, (16, 16), policy="stop")


def test_a_tiny_declared_frame_rate_computes_only_the_output_frames():
    # 3 masks at 1e-9 fps would be ~2.4e10 frames at 8 fps if resampled whole; only the 33 shown ones are computed
    idx = mask_timeline_indices(3, 1e-9, COGVIDEOX_CLIP, 33, "loop")
    assert idx.shape == (33,) and not idx.any()
    masks = np.zeros((3, 4, 4), dtype=bool)
    assert prepare_masks(masks, COGVIDEOX_CLIP, 1, (16, 16), fps=1e-9, policy="loop").shape == (33, 16, 16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"policy": "bounce"}, "mask policy must be one of hold, loop, stop"),
        ({"fit": "zoom"}, "mask fit must be one of crop, letterbox, stretch"),
        ({"fps": 0.0}, "mask fps must be a positive number"),
        ({"fps": float("nan")}, "mask fps must be a positive number"),
    ],
)
def test_bad_preparation_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        prepare_masks(np.ones((5, 8, 8), dtype=bool), COGVIDEOX_CLIP, 1, (16, 16), **kwargs)
