"""GenerationSettings: every bad value is refused once, by name, before anything is allocated."""

import numpy as np
import pytest

from mvideo_core.budget import Budget
from mvideo_core.clip_spec import COGVIDEOX_CLIP
from mvideo_core.settings import GenerationSettings, SettingsError


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("prompt", "  ", "prompt is empty"),
        ("prompt", None, "prompt is empty"),
        ("seconds", float("nan"), "seconds has to be a positive number"),
        ("seconds", -4, "seconds has to be a positive number"),
        ("seed", -1, "seed has to be a whole number in 0.."),
        ("seed", 1.5, "seed has to be a whole number"),
        ("num_inference_steps", 0, "num_inference_steps has to be a whole number in 1..1000"),
        ("num_inference_steps", 2.0, "num_inference_steps has to be a whole number"),
        ("guidance_scale", float("inf"), "guidance_scale has to be a finite number in 0..30"),
        ("guidance_scale", float("nan"), "guidance_scale has to be a finite number in 0..30"),
        ("guidance_scale", -1, "guidance_scale has to be a finite number in 0..30"),
        ("mask_guidance_scale", 0.5, "mask_guidance_scale has to be a finite number in 1..10"),
        ("mask_guidance_scale", True, "mask_guidance_scale has to be a finite number"),
        ("height", 0, "height has to be a positive number of pixels"),
        ("width", -16, "width has to be a positive number of pixels"),
        ("condition_size", (0, 16), "condition_size has to be \\(height, width\\)"),
        ("start_image", np.zeros((4, 4), np.uint8), "start_image has to be an RGB picture"),
        ("start_image", np.zeros((4, 4, 3), np.float32), "start_image has to be an RGB picture"),
        ("use_dynamic_cfg", "yes", "use_dynamic_cfg has to be True or False"),
        ("mask_policy", "bounce", "mask_policy has to be one of hold, loop, stop"),
        ("mask_fit", "zoom", "mask_fit has to be one of crop, letterbox, stretch"),
    ],
)
def test_a_bad_value_names_its_field(field, value, message):
    values = {"prompt": "a dog", field: value}
    with pytest.raises(SettingsError, match=message) as err:
        GenerationSettings(**values)
    assert err.value.field == field


def test_plan_resolves_the_model_size_and_clip_count():
    plan = GenerationSettings("a dog", seconds=12).plan(COGVIDEOX_CLIP)
    assert (plan.num_clips, plan.height, plan.width) == (3, 480, 720)
    with pytest.raises(SettingsError, match="seconds must be a positive multiple of 4"):
        GenerationSettings("a dog", seconds=6).plan(COGVIDEOX_CLIP)
    with pytest.raises(SettingsError, match="height has to be a positive multiple of 16 for this model, got 100"):
        GenerationSettings("a dog", height=100).plan(COGVIDEOX_CLIP)


def test_a_huge_length_is_refused_by_the_budget_naming_size_and_limit():
    with pytest.raises(SettingsError, match="seconds is too long: a 1e\\+09 s video at 720x480 and 8 fps declares "
                       "8000000001 frames, over the limit of 3600 frames \\(--max-frames\\)") as err:  # fmt: skip
        GenerationSettings("a dog", seconds=1_000_000_000).plan(COGVIDEOX_CLIP)
    assert err.value.field == "seconds"
    small = Budget(max_bytes=2**30)  # 1 GiB: 776 frames of 480x720 RGB + mask
    with pytest.raises(
        SettingsError, match=r"needs 1.28 GiB \(993 frames of 720x480\), over the memory limit of 1 GiB"
    ):
        GenerationSettings("a dog", seconds=124).plan(COGVIDEOX_CLIP, small)
    assert GenerationSettings("a dog", seconds=96).plan(COGVIDEOX_CLIP, small).num_clips == 24


def test_rgba_start_image_becomes_rgb_and_the_record_is_json():
    settings = GenerationSettings("a dog", start_image=np.zeros((4, 6, 4), np.uint8), condition_size=[16, 32])
    assert settings.start_image.shape == (4, 6, 3) and settings.condition_size == (16, 32)
    record = settings.to_record()
    assert "start_image" not in record and record["condition_size"] == [16, 32] and record["mask_policy"] == "hold"
