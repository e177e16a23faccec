"""The engine interface: registry, wrapping a pipeline, the spec read from the model, and MVideo's clip parity."""

import tempfile

import numpy as np
import pytest
import torch

from mvideo_core.clip_spec import COGVIDEOX_CLIP
from mvideo_core.engines import ENGINES, EngineError, MVideoEngine, as_engine, get_engine
from mvideo_core.masks import MaskSet
from mvideo_core.settings import GenerationSettings, SettingsError
from mvideo_core.tiny import tiny_pipeline


@pytest.fixture(scope="module")
def engine():
    pipe = tiny_pipeline("2b")
    with torch.no_grad():  # as if trained: the masks matter
        pipe.transformer.mask_proj.weight.normal_(0, 0.05)
    return MVideoEngine(pipe)


def test_registry_names_each_engine_once():
    assert get_engine("mvideo") is MVideoEngine and ENGINES["mvideo"].default_base_model == "THUDM/CogVideoX-5b"
    with pytest.raises(EngineError, match="unknown engine 'sora'; choose one of mvideo"):
        get_engine("sora")


def test_a_pipeline_is_wrapped_by_its_engine(engine):
    assert as_engine(engine) is engine
    wrapped = as_engine(engine.pipe)
    assert isinstance(wrapped, MVideoEngine) and wrapped.pipe is engine.pipe
    with pytest.raises(TypeError, match="no generation engine wraps a str"):
        as_engine("THUDM/CogVideoX-5b")


def test_spec_is_read_from_the_loaded_model(engine):
    spec = engine.spec
    assert (spec.fps, spec.clip_frames, spec.overlap_frames) == (8.0, 33, 1)  # MVideo's clip (paper 3.3)
    assert spec.latent_channels == 4 != COGVIDEOX_CLIP.latent_channels  # the tiny VAE's, not CogVideoX's 16
    assert spec.default_size == (64, 96) and spec.size_multiple == 16
    assert spec.prediction_type == engine.pipe.scheduler.config.prediction_type == "v_prediction"


def test_clip_equals_a_direct_pipeline_call(engine):
    masks = np.zeros((40, 48, 72), dtype=bool)
    masks[:, 10:30, 20:50] = True
    settings = GenerationSettings("a red star", seconds=4, num_inference_steps=2, guidance_scale=3.0, seed=5)
    prepared = engine.prepare(MaskSet(masks[None], fps=8.0), settings)
    clip = engine.generate_clip(prepared, 0, None, seed=5)
    direct = engine.pipe(  # the prompt encoded once per video, as the engine does (a string differs by ~2e-6)
        prompt_embeds=prepared.prompt_embeds,
        negative_prompt_embeds=prepared.negative_prompt_embeds,
        masks=prepared.clip_masks(0),
        num_inference_steps=2,
        guidance_scale=3.0,
        use_dynamic_cfg=True,
        generator=torch.Generator().manual_seed(5),
    ).frames[0]
    assert clip.shape == (33, 64, 96, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip, (np.clip(direct, 0, 1) * 255 + 0.5).astype(np.uint8))


def test_prepare_refuses_what_the_engine_cannot_honour(engine):
    with pytest.raises(SettingsError, match="mask_guidance_scale steers towards the masks"):
        engine.prepare(None, GenerationSettings("a dog", seconds=4, mask_guidance_scale=2.0))
    with pytest.raises(SettingsError, match="height has to be a positive multiple of 16 for this model, got 50"):
        engine.prepare(None, GenerationSettings("a dog", seconds=4, height=50))
    engine.takes_start_image = False  # an engine without start images (instance attribute: this test only)
    try:
        with pytest.raises(SettingsError, match="start_image is not used by the mvideo engine"):
            engine.prepare(None, GenerationSettings("a dog", seconds=4, start_image=np.zeros((8, 8, 3), np.uint8)))
    finally:
        del engine.takes_start_image


def test_tiny_random_engine_records_a_stable_name_and_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    engine = MVideoEngine.load_tiny_random("5b")
    assert engine.identity == {"engine": "mvideo", "base_model": "tiny-random-5b", "mvideo_weights": None}
    assert list(tmp_path.iterdir()) == []  # the weights are in memory, the temporary folder is gone
    assert engine.pipe.transformer.config.use_rotary_positional_embeddings
    with pytest.raises(ValueError, match="unknown tiny model '7b' for the mvideo engine"):
        MVideoEngine.load_tiny_random("7b")
