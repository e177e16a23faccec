"""The Wan2.1-VACE engine: layout control video and mask (exact pixels), reference image, loading a tiny checkpoint."""

import numpy as np
import pytest
import torch
from diffusers import WanVACEPipeline
from scipy import ndimage

from mvideo_core.tiny_wan import save_tiny_vace_model
from mvideo_core.vace import (
    DEFAULT_VACE_MODEL,
    LAYOUT_COLORS,
    UNCONTROLLED_GREY,
    clip_inputs,
    draw_layout,
    layout_thickness,
    load_vace_pipeline,
    reference_image,
    resolve_vace_model,
    vace_weights_found,
)
from mvideo_core.weights import WeightsError

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def _outline(mask: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within `radius` px (Euclidean) of the outer boundary of `mask` [H, W]: what cv2 thickness 3 paints."""
    filled = ndimage.binary_fill_holes(mask)
    edge = filled & ~ndimage.binary_erosion(filled)
    return ndimage.distance_transform_edt(~edge) <= radius


def _painted(frame: np.ndarray, color) -> np.ndarray:
    return (frame == np.array(color, dtype=np.uint8)).all(axis=-1)


@pytest.fixture
def offline(monkeypatch):
    """No hub: huggingface_hub reads HF_HUB_OFFLINE once at import, so set its constant too."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_vace_model(tmp_path_factory.mktemp("vace") / "tiny-vace")


def test_layout_is_a_3px_black_outline_on_white_at_480p():
    mask = np.zeros((2, 480, 640), dtype=bool)
    mask[0, 100:200, 200:350] = True  # a box
    yy, xx = np.mgrid[:480, :640]
    mask[1] = (yy - 240) ** 2 + (xx - 300) ** 2 <= 80**2  # a disc
    video = draw_layout(mask)
    assert video.shape == (2, 480, 640, 3) and video.dtype == np.uint8
    for t in range(2):
        black, white = _painted(video[t], BLACK), _painted(video[t], WHITE)
        assert (black | white).all()  # nothing but outline and background
        np.testing.assert_array_equal(black, _outline(mask[t], 2.0))
    assert white[150, 275] and white[240, 300]  # outlines, not filled silhouettes


def test_layout_draws_external_contours_only():
    ring = np.zeros((1, 480, 480), dtype=bool)
    yy, xx = np.mgrid[:480, :480]
    ring[0] = ((yy - 240) ** 2 + (xx - 240) ** 2 <= 150**2) & ((yy - 240) ** 2 + (xx - 240) ** 2 > 60**2)
    black = _painted(draw_layout(ring)[0], BLACK)
    np.testing.assert_array_equal(black, _outline(ring[0], 2.0))  # the hole's edge is not drawn
    assert not black[240, 240 - 60] and not black[240, 240]


@pytest.mark.parametrize(
    ("size", "px"), [((480, 832), 3), ((720, 1280), 4), ((1080, 1920), 7), ((64, 96), 1), ((16, 16), 1)]
)
def test_outline_thickness_scales_with_the_short_side(size, px):
    assert layout_thickness(*size) == px


def test_one_colour_per_object_later_objects_on_top_empty_frames_white():
    masks = np.zeros((2, 3, 64, 96), dtype=bool)
    masks[0, :2, 10:40, 10:40] = True
    masks[1, :2, 20:50, 30:70] = True  # overlaps object 0
    video = draw_layout(masks)
    first, second = _painted(video[0], LAYOUT_COLORS[0]), _painted(video[0], LAYOUT_COLORS[1])
    assert LAYOUT_COLORS[0] == BLACK and LAYOUT_COLORS[1] != BLACK
    np.testing.assert_array_equal(second, _outline(masks[1, 0], 0.0))  # 1 px at this size
    np.testing.assert_array_equal(first, _outline(masks[0, 0], 0.0) & ~second)
    assert (video[2] == 255).all()  # no object in frame 2: a blank white canvas


def test_clip_inputs_known_frames_then_layout():
    t, size = 9, (32, 48)
    layout = draw_layout(np.pad(np.ones((t, 8, 8), dtype=bool), ((0, 0), (4, 20), (10, 30))))
    known = np.random.default_rng(0).integers(0, 256, (5, *size, 3), dtype=np.uint8)
    inputs = clip_inputs(t, size, layout, known)
    assert inputs.video.dtype == np.float32 and inputs.video.shape == (t, *size, 3)
    np.testing.assert_array_equal(inputs.video[:5], known / np.float32(255))
    np.testing.assert_array_equal(inputs.video[5:], layout[5:] / np.float32(255))
    assert not inputs.mask[:5].any() and inputs.mask[5:].all() and inputs.num_known == 5
    video, mask = inputs.pipeline_inputs()
    assert video.shape == (1, t, *size, 3) and mask.shape == (1, t, *size, 1) and set(np.unique(mask)) == {0.0, 1.0}


def test_clip_inputs_without_layout_are_grey_and_generated():
    inputs = clip_inputs(5, (16, 16))
    assert (inputs.video == UNCONTROLLED_GREY).all() and inputs.mask.all() and inputs.num_known == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": np.zeros((4, 16, 16, 3), np.uint8)}, "layout must be uint8"),
        ({"layout": np.zeros((5, 16, 16, 3), np.float32)}, "layout must be uint8"),
        ({"known": np.zeros((5, 16, 16, 3), np.uint8)}, "known frames must be"),
        ({"known": np.zeros((2, 8, 16, 3), np.uint8)}, "known frames must be"),
    ],
)
def test_clip_inputs_refuse_bad_shapes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        clip_inputs(5, (16, 16), **kwargs)


def test_start_image_becomes_the_reference_image():
    image = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    ref = reference_image(image)
    assert ref.mode == "RGB" and ref.size == (40, 30)
    np.testing.assert_array_equal(np.asarray(ref), image)
    with pytest.raises(ValueError, match="RGB uint8"):
        reference_image(image[..., :2])


def test_tiny_checkpoint_loads_through_the_real_loader_and_runs(tiny_folder, one_torch_thread):
    pipe = load_vace_pipeline(tiny_folder)
    assert isinstance(pipe, WanVACEPipeline) and pipe.vae.dtype == torch.float32
    pipe.set_progress_bar_config(disable=True)
    inputs = clip_inputs(9, (32, 48), known=np.zeros((5, 32, 48, 3), np.uint8))
    video, mask = inputs.pipeline_inputs()
    out = pipe(
        prompt="a dog",
        video=video,
        mask=mask,
        reference_images=reference_image(np.zeros((8, 8, 3), np.uint8)),
        height=32,
        width=48,
        num_frames=9,
        num_inference_steps=1,
        max_sequence_length=16,
    ).frames
    assert out.shape == (1, 9, 32, 48, 3)  # the reference frame is dropped from the output
    assert vace_weights_found(tiny_folder)


@pytest.mark.parametrize("bad", [None, "", "not a model", "/no/such/folder", "a/b/c"])
def test_missing_weights_name_the_checkpoint_and_the_flag(bad, offline):
    with pytest.raises(WeightsError, match=f"--base-model {DEFAULT_VACE_MODEL}"):
        load_vace_pipeline(bad)
    assert not vace_weights_found(bad)


def test_a_hub_id_that_cannot_be_fetched_names_the_checkpoint(offline):
    with pytest.raises(WeightsError, match=f"could not load Wan2.1-VACE from 'nobody/nothing'.*{DEFAULT_VACE_MODEL}"):
        load_vace_pipeline("nobody/nothing", flag="--vace-model")
    assert resolve_vace_model(DEFAULT_VACE_MODEL) == DEFAULT_VACE_MODEL


def test_a_folder_of_another_model_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "CogVideoXPipeline"}')
    with pytest.raises(WeightsError, match="is not a Wan2.1-VACE folder"):
        resolve_vace_model(tmp_path, flag="--vace-model")
