"""MVideoPipeline end to end on tiny random models: shapes, guidance branches, callbacks, seeds, input errors."""

import numpy as np
import pytest
import torch

from mvideo_core.masks import MaskSet
from mvideo_core.pipeline_mvideo import MVideoPipeline, default_condition_size
from mvideo_core.tiny import (
    TINY_LATENT_CHANNELS,
    tiny_scheduler,
    tiny_text_encoder,
    tiny_tokenizer,
    tiny_transformer,
    tiny_vae,
)
from mvideo_core.transformer import ConditionCache, MVideoTransformer3DModel

T, H, W = 9, 64, 96
C = TINY_LATENT_CHANNELS


def make_pipe(style="2b"):
    transformer = MVideoTransformer3DModel.from_cogvideox(tiny_transformer(style, seed=1))
    pipe = MVideoPipeline(tiny_tokenizer(), tiny_text_encoder(), tiny_vae(), transformer, tiny_scheduler(style))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return make_pipe("2b")


@pytest.fixture
def masks():
    m = np.zeros((T, H, W), dtype=bool)
    for t in range(T):
        m[t, 10:40, 5 + 8 * t : 35 + 8 * t] = True  # a square moving right
    return m


def _run(pipe, seed=0, **kwargs):
    kwargs.setdefault("prompt", "a dog running in a park")
    kwargs.setdefault("num_inference_steps", 2)
    return pipe(generator=torch.Generator().manual_seed(seed), **kwargs).frames


def _record_calls(pipe, monkeypatch) -> list[dict]:
    """Record what the transformer receives on every call."""
    calls = []
    real = pipe.transformer.forward

    def forward(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipe.transformer, "forward", forward)
    return calls


@pytest.fixture
def spy(pipe, monkeypatch):
    return _record_calls(pipe, monkeypatch)


@pytest.mark.parametrize("guidance", [6.0, 1.0])
def test_output_shapes_with_and_without_guidance(pipe, masks, guidance):
    frames = _run(pipe, masks=masks, guidance_scale=guidance)
    assert frames.shape == (1, T, H, W, 3) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    latents = _run(pipe, masks=masks, guidance_scale=guidance, output_type="latent")
    assert latents.shape == (1, 3, C, H // 8, W // 8)  # [B, F, C, H, W]


def test_pil_output_and_tuple_return(pipe):
    (video,) = pipe(
        "a cat", num_frames=T, height=H, width=W, num_inference_steps=1, output_type="pil", return_dict=False
    )
    assert len(video) == 1 and len(video[0]) == T and video[0][0].size == (W, H)


def test_guidance_is_on_text_only_mask_and_conditions_in_both_branches(pipe, masks, spy):
    prev = (np.random.default_rng(0).random((T, H, W, 3)) * 255).astype(np.uint8)
    _run(pipe, masks=masks, previous_frames=prev, guidance_scale=6.0)
    call = spy[0]
    assert call["hidden_states"].shape[0] == 2 and call["encoder_hidden_states"].shape[0] == 2
    neg, pos = call["encoder_hidden_states"].chunk(2)
    assert not torch.equal(neg, pos)  # the text differs between branches ...
    m_uncond, m_text = call["mask_latents"].chunk(2)
    assert torch.equal(m_uncond, m_text)  # ... the mask does not
    cache = call["condition_latents"]  # computed once per clip, shared by both branches
    assert isinstance(cache, ConditionCache) and cache.batch_size == 1
    ch, cw = default_condition_size(H, W)
    appearance_tokens, motion_tokens = (H // 16) * (W // 16), 3 * (ch // 16) * (cw // 16)
    assert cache.num_tokens == appearance_tokens + motion_tokens == 24 + 18
    assert all(call["condition_latents"] is cache for call in spy)


def test_text_only_mode_sends_no_mask(pipe, spy):
    frames = _run(pipe, num_frames=T, height=H, width=W, guidance_scale=1.0)
    assert frames.shape == (1, T, H, W, 3)
    assert spy[0]["mask_latents"] is None and spy[0]["condition_latents"] is None
    assert spy[0]["hidden_states"].shape[0] == 1


def test_start_image_conditions_appearance_only(pipe, masks, spy):
    image = np.full((H, W, 3), 200, dtype=np.uint8)
    _run(pipe, masks=masks, start_image=image, guidance_scale=1.0)
    cache = spy[0]["condition_latents"]
    assert cache.num_tokens == (H // 16) * (W // 16)  # appearance only


def test_fresh_model_with_masks_equals_text_only(pipe, masks):
    with_mask = _run(pipe, masks=masks, output_type="latent")
    text_only = _run(pipe, num_frames=T, height=H, width=W, output_type="latent")
    assert torch.equal(with_mask, text_only)  # zero-initialised mask weights: exact base behaviour


def test_trained_mask_weights_steer_generation(masks):
    pipe = make_pipe("5b")
    with torch.no_grad():
        pipe.transformer.mask_proj.weight.normal_(0, 0.5)
    a = _run(pipe, masks=masks, output_type="latent")
    b = _run(pipe, masks=~masks, output_type="latent")
    assert not torch.allclose(a, b, atol=1e-4)


def test_mask_guidance_joins_the_guided_batch_one_pass_a_step(masks, monkeypatch):
    pipe = make_pipe("5b")
    with torch.no_grad():
        pipe.transformer.mask_proj.weight.normal_(0, 0.5)
    calls = _record_calls(pipe, monkeypatch)
    _run(pipe, masks=masks, guidance_scale=6.0, mask_guidance_scale=2.0, output_type="latent")
    assert len(calls) == 2  # 2 steps x one pass of [uncond + mask, text + mask, text without the mask]
    call = calls[0]
    assert call["hidden_states"].shape[0] == 3
    assert torch.equal(call["hidden_states"][2], call["hidden_states"][1])
    assert torch.equal(call["encoder_hidden_states"][2], call["encoder_hidden_states"][1])  # the text branch
    assert torch.equal(call["mask_latents"][0], call["mask_latents"][1]) and call["mask_latents"][1].abs().sum() > 0
    assert not call["mask_latents"][2].any()  # zero mask latents: exactly no mask (mask_proj has no bias)


def _two_passes(pipe, monkeypatch):
    """The transformer as mask guidance ran before the fold: the branches with the mask in one pass, the text branch
    without the mask (mask_latents=None) in a second pass of batch 1."""
    real = pipe.transformer.forward

    def forward(*args, hidden_states, encoder_hidden_states, timestep, mask_latents, **kwargs):
        if hidden_states.shape[0] < 2 or mask_latents is None or mask_latents[-1].any():
            return real(*args, hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
                        timestep=timestep, mask_latents=mask_latents, **kwargs)  # fmt: skip
        parts = [
            real(hidden_states=h, encoder_hidden_states=e, timestep=t, mask_latents=m, **kwargs)[0]
            for h, e, t, m in (
                (hidden_states[:-1], encoder_hidden_states[:-1], timestep[:-1], mask_latents[:-1]),
                (hidden_states[-1:], encoder_hidden_states[-1:], timestep[-1:], None),
            )
        ]
        return (torch.cat(parts),)

    monkeypatch.setattr(pipe.transformer, "forward", forward)


@pytest.mark.parametrize("guidance_scale", [6.0, 1.0])
def test_folded_mask_guidance_equals_the_old_two_passes(masks, monkeypatch, guidance_scale):
    """Not bit for bit on CPU: the GEMMs of a batch of 3 are blocked differently from 2 + 1, which moves fp32 sums by
    a few ulp. Measured after 2 steps: max |diff| 4.7e-6 (CFG on) and 1.5e-6 (off) on latents up to 4.8, with or
    without the previous clip's conditions; the tolerance is 1e-5, two orders below what a step changes."""
    pipe = make_pipe("5b")
    with torch.no_grad():
        pipe.transformer.mask_proj.weight.normal_(0, 0.5)
        pipe.transformer.condition_embed.gates.fill_(1.0)
    previous = np.random.default_rng(0).integers(0, 255, (T, H, W, 3), dtype=np.uint8)
    kwargs = {"masks": masks, "guidance_scale": guidance_scale, "mask_guidance_scale": 2.5, "output_type": "latent"}
    folded = _run(pipe, previous_frames=previous, **kwargs)
    _two_passes(pipe, monkeypatch)
    torch.testing.assert_close(folded, _run(pipe, previous_frames=previous, **kwargs), atol=1e-5, rtol=1e-5)


def test_mask_guidance_pushes_along_mask_minus_no_mask(masks):
    """One DDIM step is affine in the predicted noise, so eps + (s_m - 1) * (eps(text, mask) - eps(text, no mask))
    moves the result by equal steps as s_m goes 1, 2, 3; and s_m = 1 is exactly the plain pipeline."""
    pipe = make_pipe("5b")
    with torch.no_grad():
        pipe.transformer.mask_proj.weight.normal_(0, 0.5)
    out = {
        s: _run(pipe, masks=masks, num_inference_steps=1, mask_guidance_scale=s, output_type="latent")
        for s in (1, 2, 3)
    }
    assert torch.equal(out[1], _run(pipe, masks=masks, num_inference_steps=1, output_type="latent"))
    step = out[2] - out[1]
    assert step.abs().max() > 1e-3  # the mask moves the prediction ...
    torch.testing.assert_close(out[3] - out[2], step, atol=1e-4, rtol=1e-3)  # ... linearly in s_m


def test_mask_set_input_uses_the_union(pipe, masks):
    left, right = masks.copy(), np.zeros_like(masks)
    right[:, 45:60, 60:90] = True
    maskset = MaskSet(np.stack([left, right]), fps=8.0)
    a = _run(pipe, masks=maskset, output_type="latent")
    b = _run(pipe, masks=left | right, output_type="latent")
    assert torch.equal(a, b)


def test_same_seed_same_video_other_seed_other_video(pipe, masks):
    a, b, c = (_run(pipe, seed=s, masks=masks, output_type="latent") for s in (3, 3, 4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_callback_receives_tensors_each_step_and_can_edit_latents(pipe, masks):
    seen = []

    def callback(p, i, t, kwargs):
        seen.append((i, sorted(kwargs)))
        return {"latents": torch.zeros_like(kwargs["latents"])}

    out = _run(
        pipe,
        masks=masks,
        num_inference_steps=3,
        output_type="latent",
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "mask_latents"],
    )
    assert [i for i, _ in seen] == [0, 1, 2]
    assert seen[0][1] == ["latents", "mask_latents", "prompt_embeds"]
    assert torch.equal(out, torch.zeros_like(out))


def test_interrupt_stops_denoising(pipe, masks, spy):
    def stop(p, i, t, kwargs):
        p._interrupt = True
        return {}

    _run(pipe, masks=masks, num_inference_steps=4, callback_on_step_end=stop, output_type="latent")
    assert len(spy) == 1 and pipe.interrupt


def test_dynamic_cfg_changes_the_scale(pipe, masks):
    a = _run(pipe, masks=masks, output_type="latent", use_dynamic_cfg=True)
    assert pipe.guidance_scale != 6.0
    b = _run(pipe, masks=masks, output_type="latent", use_dynamic_cfg=False)
    assert not torch.allclose(a, b)


def test_prompt_embeds_instead_of_prompt(pipe, masks):
    embeds, negative = pipe.encode_prompt("a dog running in a park", max_sequence_length=16, device="cpu")
    a = _run(pipe, masks=masks, output_type="latent")
    b = _run(
        pipe, prompt=None, prompt_embeds=embeds, negative_prompt_embeds=negative, masks=masks, output_type="latent"
    )
    assert torch.allclose(a, b, atol=1e-5)


def _bad_inputs(masks):
    frames = np.zeros((T, H, W, 3), dtype=np.uint8)
    return [
        ({"height": 72, "width": 96, "num_frames": T}, "`height` has to be a positive multiple of 16 but is 72"),
        ({"height": 64, "width": 100, "num_frames": T}, "`width` has to be a positive multiple of 16 but is 100"),
        ({"num_frames": 8, "height": H, "width": W}, r"`num_frames` has to be 4k \+ 1"),
        ({"masks": masks, "num_frames": 13}, "`masks` has 9 frames but `num_frames` is 13"),
        ({"masks": masks, "height": 32}, "`masks` are 96x64 but the video is 96x32"),
        ({"masks": masks.astype(np.float32)}, "bool numpy array"),
        ({"masks": masks[0]}, "bool numpy array"),
        ({"masks": masks, "mask_latents": torch.zeros(1, 3, C, 8, 12)}, "both `masks` and `mask_latents`"),
        (
            {"mask_latents": torch.zeros(1, 3, C, 4, 4), "num_frames": T, "height": H, "width": W},
            "`mask_latents` has to be",
        ),
        ({"prompt": "", "masks": masks}, "`prompt` is empty"),
        ({"prompt": "   ", "masks": masks}, "`prompt` is empty"),
        ({"prompt": None, "masks": masks}, "Provide either `prompt` or `prompt_embeds`"),
        ({"prompt": 3, "masks": masks}, "has to be a string"),
        ({"prompt_embeds": torch.zeros(1, 16, 16), "masks": masks}, "both `prompt` and `prompt_embeds`"),
        (
            {"negative_prompt": "x", "negative_prompt_embeds": torch.zeros(1, 16, 16), "masks": masks},
            "both `negative_prompt`",
        ),
        ({"masks": masks, "output_type": "gif"}, "`output_type` has to be one of"),
        ({"masks": masks, "num_inference_steps": 0}, "`num_inference_steps` has to be a positive integer"),
        ({"masks": masks, "callback_on_step_end_tensor_inputs": ["noise"]}, "callback_on_step_end_tensor_inputs"),
        ({"masks": masks, "start_image": frames[0], "previous_frames": frames}, "at most one of"),
        ({"masks": masks, "start_image": frames[0, :32]}, "`start_image` is 96x32 but the video is 96x64"),
        ({"masks": masks, "start_image": frames[0].astype(np.float32)}, "`start_image` has to be a uint8 RGB"),
        ({"masks": masks, "previous_frames": frames[:8]}, "`previous_frames` has to be 4k \\+ 1 frames"),
        ({"masks": masks, "previous_frames": frames[..., 0]}, "`previous_frames` has to be uint8 RGB"),
        ({"masks": masks, "previous_frames": frames, "condition_size": (30, 48)}, "`condition_size` has to be"),
        ({"masks": masks, "condition_latents": torch.zeros(1)}, "`condition_latents` has to be a ConditionLatents"),
        ({"masks": masks, "mask_guidance_scale": 0.5}, "`mask_guidance_scale` has to be a number >= 1"),
        ({"masks": masks, "mask_guidance_scale": -2.0}, "`mask_guidance_scale` has to be a number >= 1"),
        ({"masks": masks, "mask_guidance_scale": float("nan")}, "`mask_guidance_scale` has to be a number >= 1"),
        ({"masks": masks, "mask_guidance_scale": "2"}, "`mask_guidance_scale` has to be a number >= 1"),
        ({"num_frames": T, "height": H, "width": W, "mask_guidance_scale": 2.0}, "give `masks` too"),
        ({"masks": masks, "latents": torch.zeros(1, 2, 3)}, "`latents` has to be \\(1, 3, 4, 8, 12\\)"),
    ]


def test_every_bad_input_raises_a_clear_value_error(pipe, masks, spy):
    for kwargs, match in _bad_inputs(masks):
        kwargs = {"prompt": "a dog", "num_inference_steps": 1, **kwargs}
        with pytest.raises(ValueError, match=match):
            pipe(**kwargs)
    assert spy == []  # no model ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_offload_without_cuda_says_so(pipe):
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        pipe.enable_model_cpu_offload()
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        pipe.configure_memory(offload="sequential")
    with pytest.raises(ValueError, match="offload must be"):
        pipe.configure_memory(offload="disk")
    pipe.configure_memory(vae_slicing=True, vae_tiling=True)  # these work anywhere
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    pipe.vae.disable_slicing()
    pipe.vae.disable_tiling()


def test_tiny_tokenizer_works_offline_and_tells_words_apart():
    tok = tiny_tokenizer()
    ids = tok(["a dog running", "a cat running"], padding="max_length", max_length=16, return_tensors="pt").input_ids
    assert ids.shape == (2, 16) and not torch.equal(ids[0], ids[1])
    assert tok.unk_token_id not in ids[0].tolist()  # known words are not <unk>
    assert ids[0, 3].item() == tok.eos_token_id and ids[0, 4:].eq(tok.pad_token_id).all()


def test_pipeline_needs_an_mvideo_transformer():
    with pytest.raises(TypeError, match="from_cogvideox"):
        MVideoPipeline(tiny_tokenizer(), tiny_text_encoder(), tiny_vae(), tiny_transformer("2b"), tiny_scheduler("2b"))
