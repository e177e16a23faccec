"""MVideoTransformer3DModel: exact parity with CogVideoX, mask channels, condition tokens, teacher mode."""

import pytest
import torch
from peft import LoraConfig

from mvideo_core.tiny import TINY_LATENT_CHANNELS, TINY_TEXT_DIM, TINY_TEXT_LENGTH, tiny_transformer
from mvideo_core.transformer import (
    ConditionCache,
    ConditionLatents,
    MVideoTransformer3DModel,
    _grid_coords,
    rotary_at,
    rotary_embeddings,
    sincos_at,
)

C = TINY_LATENT_CHANNELS
F_LAT, H_LAT, W_LAT = 3, 8, 12  # 9 frames at 64x96 pixels


def _inputs(seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, F_LAT, C, H_LAT, W_LAT, generator=g)  # [B, F, C, H, W]
    text = torch.randn(batch, TINY_TEXT_LENGTH, TINY_TEXT_DIM, generator=g)
    t = torch.full((batch,), 500)
    return x, text, t


def _conditions(seed=1, batch=2, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return ConditionLatents(
        appearance=scale * torch.randn(batch, 1, C, H_LAT, W_LAT, generator=g),  # [B, 1, C, H, W]
        motion=scale * torch.randn(batch, F_LAT, C, 4, 6, generator=g),  # low res [B, Fc, C, h, w]
    )


def _rope(model):
    if not model.config.use_rotary_positional_embeddings:
        return None
    return rotary_embeddings(model.config, F_LAT, H_LAT // 2, W_LAT // 2)


@pytest.fixture(params=["2b", "5b"])
def pair(request):
    base = tiny_transformer(request.param, seed=3)
    x, text, t = _inputs()
    with torch.no_grad():
        ref = base(x, text, t, image_rotary_emb=_rope(base)).sample
    return base, MVideoTransformer3DModel.from_cogvideox(base), ref


@torch.no_grad()
def test_fresh_model_equals_base_without_mask(pair):
    base, model, ref = pair
    x, text, t = _inputs()
    assert torch.equal(model(x, text, t, image_rotary_emb=_rope(base)).sample, ref)


@torch.no_grad()
def test_fresh_model_equals_base_with_any_mask(pair):
    base, model, ref = pair
    x, text, t = _inputs()
    mask = torch.randn(2, F_LAT, C, H_LAT, W_LAT) * 3
    assert torch.equal(model(x, text, t, image_rotary_emb=_rope(base), mask_latents=mask).sample, ref)


@torch.no_grad()
def test_fresh_model_ignores_conditions_zero_or_not(pair):
    base, model, ref = pair
    x, text, t = _inputs()
    for cond in (_conditions(scale=0.0), _conditions()):
        out = model(x, text, t, image_rotary_emb=_rope(base), condition_latents=cond).sample
        assert torch.equal(out, ref)


@torch.no_grad()
def test_trained_mask_weights_change_output(pair):
    base, model, ref = pair
    x, text, t = _inputs()
    model.mask_proj.weight.normal_(0, 0.1)
    out = model(x, text, t, mask_latents=torch.randn(2, F_LAT, C, H_LAT, W_LAT)).sample
    assert out.shape == ref.shape
    assert not torch.allclose(out, ref, atol=1e-4)


@torch.no_grad()
def test_condition_tokens_change_output_once_gates_open(pair):
    base, model, ref = pair
    x, text, t = _inputs()
    model.condition_embed.gates.fill_(1.0)
    out_a = model(x, text, t, condition_latents=_conditions(seed=1)).sample
    out_b = model(x, text, t, condition_latents=_conditions(seed=2)).sample
    out_app = model(x, text, t, condition_latents=ConditionLatents(appearance=_conditions().appearance)).sample
    assert out_a.shape == ref.shape == (2, F_LAT, C, H_LAT, W_LAT)  # only the noisy tokens are predicted
    assert not torch.allclose(out_a, ref, atol=1e-4)
    assert not torch.allclose(out_a, out_b, atol=1e-4)
    assert not torch.allclose(out_a, out_app, atol=1e-4)


@torch.no_grad()
def test_condition_cache_gives_the_same_prediction_and_serves_both_guidance_branches(pair):
    base, model, ref = pair
    model.condition_embed.gates.fill_(0.7)
    x, text, t = _inputs()
    cond = _conditions(batch=1)
    cache = model.condition_cache(cond, H_LAT // 2, W_LAT // 2)
    n_tokens = 1 * 4 * 6 + 3 * 2 * 3
    assert len(cache.kv) == 2 and cache.kv[0][0].shape == (1, 4, n_tokens, 16)  # [B, heads, Nc, head_dim]
    with_cache = model(x, text, t, condition_latents=cache).sample
    with_latents = model(x, text, t, condition_latents=cond.repeat(2)).sample
    assert torch.allclose(with_cache, with_latents, atol=1e-6)
    assert not torch.allclose(with_cache, ref, atol=1e-4)


@torch.no_grad()
def test_a_deferred_condition_cache_is_built_by_the_first_pass_and_reused(pair):
    _, model, _ = pair
    model.condition_embed.gates.fill_(0.7)
    x, text, t = _inputs()
    cond = _conditions(batch=1)
    explicit = model(x, text, t, condition_latents=model.condition_cache(cond, H_LAT // 2, W_LAT // 2)).sample
    deferred = ConditionCache.deferred(cond)
    assert deferred.batch_size == 1 and not deferred.kv
    first = model(x, text, t, condition_latents=deferred).sample
    built = deferred.kv[0][0]
    second = model(x, text, t, condition_latents=deferred).sample
    assert torch.equal(first, explicit) and torch.equal(second, explicit)
    assert deferred.kv[0][0] is built  # computed once (the pipeline shares it between steps)


@torch.no_grad()
def test_condition_tokens_carry_no_mask_channels():
    model = MVideoTransformer3DModel.from_cogvideox(tiny_transformer("2b"))
    cond = _conditions(batch=1)
    before = model.condition_cache(cond, H_LAT // 2, W_LAT // 2)
    model.mask_proj.weight.normal_()  # a trained mask projection does not touch the condition stream
    after = model.condition_cache(cond, H_LAT // 2, W_LAT // 2)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(before.kv, after.kv))


def test_channel_and_token_counts():
    model = MVideoTransformer3DModel.from_cogvideox(tiny_transformer("5b"))
    assert model.config.in_channels == C and model.mask_proj.in_channels == C  # 4 + 4 (16 + 16 at full size)
    assert model.patch_embed.proj.in_channels == C  # the base patch embedding is untouched
    t, r, c = model.condition_coordinates(H_LAT // 2, W_LAT // 2, _conditions())
    # appearance 1 x 4 x 6 full-res tokens + motion 3 x 2 x 3 low-res tokens
    assert t.shape == r.shape == c.shape == (1 * 4 * 6 + 3 * 2 * 3,)
    assert t[:24].eq(-1).all() and sorted(set(t[24:].tolist())) == [-3.0, -2.0, -1.0]  # before the clip
    # low-res rows/cols spread over the hi-res extent, centred: 2 rows over 4 -> 0.5, 2.5
    assert torch.allclose(r[24:27], torch.tensor([0.5, 0.5, 0.5])) and torch.allclose(r[27:30], torch.full((3,), 2.5))
    assert torch.allclose(c[24:27], torch.tensor([0.5, 2.5, 4.5]))


def test_rotary_at_grid_equals_cogvideox_rope():
    model = tiny_transformer("5b")
    cos, sin = rotary_embeddings(model.config, F_LAT, 4, 6)
    t, r, c = _grid_coords(torch.arange(3.0), torch.arange(4.0), torch.arange(6.0))
    cos2, sin2 = rotary_at(model.config.attention_head_dim, t, r, c)
    assert torch.equal(cos, cos2) and torch.equal(sin, sin2)


def test_sincos_at_grid_equals_cogvideox_table():
    base = tiny_transformer("2b")
    table = base.patch_embed._get_positional_embeddings(H_LAT, W_LAT, 9)[0, TINY_TEXT_LENGTH:]  # [F*h*w, D]
    t, r, c = _grid_coords(torch.arange(3.0), torch.arange(4.0), torch.arange(6.0))
    assert torch.equal(sincos_at(table.shape[-1], t, r, c), table)


def test_bad_mvideo_inputs_raise_clear_errors():
    model = MVideoTransformer3DModel.from_cogvideox(tiny_transformer("2b"))
    x, text, t = _inputs()
    with pytest.raises(ValueError, match="mask_latents` must have shape"):
        model(x, text, t, mask_latents=torch.zeros(2, F_LAT, C, 4, 6))
    with pytest.raises(ValueError, match="appearance condition must have shape"):
        model(x, text, t, condition_latents=ConditionLatents(appearance=torch.zeros(2, 1, C, 4, 6)))
    with pytest.raises(ValueError, match="motion condition must have shape"):
        model(x, text, t, condition_latents=ConditionLatents(motion=torch.zeros(2, 3, C, 5, 6)))
    with pytest.raises(ValueError, match="one latent frame"):
        ConditionLatents(appearance=torch.zeros(2, 2, C, H_LAT, W_LAT))
    with pytest.raises(ValueError, match="condition cache has"):
        model(x, text, t, condition_latents=ConditionCache([(torch.zeros(1, 4, 3, 16),) * 2]))
    with pytest.raises(TypeError, match="ConditionLatents"):
        model(x, text, t, condition_latents=torch.zeros(2, 1, C, H_LAT, W_LAT))


def test_save_and_load_pretrained_round_trip(tmp_path):
    model = MVideoTransformer3DModel.from_cogvideox(tiny_transformer("5b"))
    with torch.no_grad():
        model.mask_proj.weight.normal_()
        model.condition_embed.gates.fill_(0.3)
    model.save_pretrained(tmp_path)
    loaded = MVideoTransformer3DModel.from_pretrained(tmp_path).eval()
    x, text, t = _inputs()
    mask, cond = torch.randn(2, F_LAT, C, H_LAT, W_LAT), _conditions()
    with torch.no_grad():
        assert torch.equal(
            loaded(x, text, t, mask_latents=mask, condition_latents=cond).sample,
            model(x, text, t, mask_latents=mask, condition_latents=cond).sample,
        )


@pytest.mark.parametrize("how", ["diffusers", "peft"])
@torch.no_grad()
def test_teacher_mode_is_the_frozen_base(how):
    base = tiny_transformer("5b", seed=5)
    x, text, t = _inputs()
    ref = base(x, text, t, image_rotary_emb=_rope(base)).sample
    model = MVideoTransformer3DModel.from_cogvideox(base)
    config = LoraConfig(
        r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"]
    )
    if how == "diffusers":
        model.add_adapter(config)
        student = model
    else:
        from peft import get_peft_model

        student = get_peft_model(model, config)
    model.mask_proj.weight.normal_()
    model.condition_embed.gates.fill_(1.0)
    mask = torch.randn(2, F_LAT, C, H_LAT, W_LAT)
    out = student(hidden_states=x, encoder_hidden_states=text, timestep=t, mask_latents=mask).sample
    assert not torch.allclose(out, ref, atol=1e-4)
    grads = {n: p.requires_grad for n, p in model.named_parameters() if "lora" in n}
    with model.teacher_mode():
        teacher = student(
            hidden_states=x, encoder_hidden_states=text, timestep=t, mask_latents=mask, condition_latents=_conditions()
        ).sample
    assert torch.equal(teacher, ref)
    assert grads == {n: p.requires_grad for n, p in model.named_parameters() if "lora" in n}
    again = student(hidden_states=x, encoder_hidden_states=text, timestep=t, mask_latents=mask).sample
    assert torch.equal(again, out)  # adapters and inputs are back after the context


def test_from_cogvideox_rejects_other_models_and_cogvideox_15():
    with pytest.raises(TypeError, match="CogVideoXTransformer3DModel"):
        MVideoTransformer3DModel.from_cogvideox(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="1.5"):
        MVideoTransformer3DModel(num_attention_heads=2, attention_head_dim=16, num_layers=1, patch_size_t=2)


@torch.no_grad()
def test_bf16_base_with_fp32_mvideo_modules_runs():
    model = MVideoTransformer3DModel.from_cogvideox(tiny_transformer("5b")).to(torch.bfloat16)
    model.mask_proj.float()
    model.condition_embed.float()
    x, text, t = _inputs(batch=1)
    out = model(
        x.bfloat16(),
        text.bfloat16(),
        t,
        mask_latents=torch.randn(1, F_LAT, C, H_LAT, W_LAT),
        condition_latents=_conditions(batch=1),
    ).sample
    assert out.dtype == torch.bfloat16 and out.shape == (1, F_LAT, C, H_LAT, W_LAT) and out.isfinite().all()
