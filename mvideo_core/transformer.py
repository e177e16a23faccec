"""The MVideo transformer: CogVideoX plus a mask condition (channel concat) and long-video condition tokens.

Paper 3.2-3.3 on top of diffusers' `CogVideoXTransformer3DModel` (2b-style sincos positions and 5b-style 3D RoPE).

Mask condition. The binary mask video, VAE-encoded like any video (`mask_latents: [B, F, C, H, W]`), is
concatenated with the noisy latents on the channel axis. The patch embedding of a channel concat is linear, so
`conv([x; m]) = conv_x(x) + conv_m(m)`: we keep the base patch embedding untouched and add a separate zero-initialised
`mask_proj` (the new 16 input channels of the 16 -> 32 patch embedding). Right after `from_cogvideox(base)` the model
is exactly the base model, with or without mask latents, and the frozen base is always one switch away
(`teacher_mode()`), which the consistency loss (paper eq. 2) needs.

Long-video conditions (clip k > 0). `ConditionLatents.appearance` (the last full-resolution frame of clip k-1,
`[B, 1, C, H, W]`) and `ConditionLatents.motion` (the previous t2 seconds at 256x384, `[B, Fc, C, h, w]`) are
patch-embedded by the base patch embedding, tagged with a learned type embedding and appended to the noisy tokens
along the sequence. Their positions place them before the clip in time: the motion frames take the latent time slots
-Fc .. -1, the appearance frame slot -1 (both end where the clip starts); low-resolution tokens get spatial coordinates
scaled onto the high-resolution grid (token centres aligned). RoPE models get rotary embeddings at those coordinates,
sincos models get the sincos embedding at them. Condition tokens carry no mask (their mask channels are zeros).

Attention with condition tokens is decoupled (as in IP-Adapter). The condition tokens are clean frames: they run
through the transformer blocks as their own short sequence, at timestep 0 and without text, attending only to each
other; each block keeps their keys and values (`ConditionCache`). Text and noisy tokens attend to themselves exactly as
in the base model, plus a cross-attention to the condition keys/values scaled by a per-layer, per-head gate `tanh(g)`
with g = 0 at start. So a fresh model ignores any condition (parity again) and the gate learns how much to use them.
Because the condition stream does not depend on the noisy latents or the step, inference computes it once per clip
(`condition_cache`) and each denoising step only pays the cross-attention of the noisy tokens to the condition keys.
Only the noisy tokens are predicted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import CogVideoXTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import (
    apply_rotary_emb,
    get_1d_rotary_pos_embed,
    get_1d_sincos_pos_embed_from_grid,
    get_3d_rotary_pos_embed,
)
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid
from diffusers.utils import apply_lora_scale
from torch import nn

# Names of the modules MVideo adds to CogVideoX (their weights go in the MVideo weights file next to the LoRA).
MVIDEO_MODULES = ("mask_proj", "condition_embed")


@dataclass
class ConditionLatents:
    """Long-video conditions of one clip, VAE latents scaled like the noisy latents (paper 3.3).

    appearance: [B, 1, C, H, W] the last full-resolution frame of the previous clip (or a start image).
    motion:     [B, Fc, C, h, w] the previous t2 seconds at low resolution (256x384 pixels at paper size).
    Either may be None.
    """

    appearance: torch.Tensor | None = None
    motion: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("appearance", "motion"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, torch.Tensor) or value.ndim != 5):
                shape = getattr(value, "shape", type(value).__name__)
                raise ValueError(f"condition `{name}` must be a 5-dim tensor [B, F, C, H, W], got {shape}")
        if self.appearance is not None and self.appearance.shape[1] != 1:
            raise ValueError(f"condition `appearance` must hold one latent frame, got {self.appearance.shape[1]}")
        if self.appearance is not None and self.motion is not None:
            if self.appearance.shape[0] != self.motion.shape[0]:
                raise ValueError(
                    f"condition batch sizes differ: appearance {self.appearance.shape[0]}, motion {self.motion.shape[0]}"
                )

    @property
    def is_empty(self) -> bool:
        return self.appearance is None and self.motion is None

    @property
    def batch_size(self) -> int | None:
        t = self.appearance if self.appearance is not None else self.motion
        return None if t is None else int(t.shape[0])

    def repeat(self, n: int) -> ConditionLatents:
        """The same conditions for n stacked batches (e.g. both branches of classifier-free guidance)."""
        return ConditionLatents(*(None if t is None else torch.cat([t] * n) for t in (self.appearance, self.motion)))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ConditionLatents:
        return ConditionLatents(
            *(None if t is None else t.to(device=device, dtype=dtype) for t in (self.appearance, self.motion))
        )


@dataclass
class ConditionCache:
    """Keys and values of the condition tokens in every block: `kv[i] = (k, v)`, each [B, heads, Nc, head_dim].

    Made by `MVideoTransformer3DModel.condition_cache` once per clip; pass it as `condition_latents` at every step.
    `ConditionCache.deferred(conditions)` is filled by the first forward pass that receives it, i.e. where the model
    runs (with CPU offload the hooks have moved it to the GPU by then), and reused by the later ones.
    """

    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    conditions: ConditionLatents | None = None  # what a deferred cache is built from

    @classmethod
    def deferred(cls, conditions: ConditionLatents) -> ConditionCache:
        return cls([], conditions)

    @property
    def num_tokens(self) -> int:
        return int(self.kv[0][0].shape[2])

    @property
    def batch_size(self) -> int:
        return int(self.kv[0][0].shape[0]) if self.kv else int(self.conditions.batch_size)


# -- positions --------------------------------------------------------------------------------------------------


def _rope_grid_axes(config: Any, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE coordinates of the noisy token grid rows and columns, exactly as CogVideoX's pipeline builds them."""
    p = config.patch_size
    (top, left), (bottom, right) = get_resize_crop_region_for_grid(
        (grid_h, grid_w), config.sample_width // p, config.sample_height // p
    )
    pos_h = torch.linspace(top, bottom * (grid_h - 1) / grid_h, grid_h, dtype=torch.float32)
    pos_w = torch.linspace(left, right * (grid_w - 1) / grid_w, grid_w, dtype=torch.float32)
    return pos_h, pos_w


def _scaled_axis(axis: torch.Tensor, n: int) -> torch.Tensor:
    """Coordinates of n evenly spaced token centres spanning the same extent as `axis` (low-res onto hi-res grid)."""
    big = axis.numel()
    index = (torch.arange(n, dtype=torch.float32) + 0.5) * (big / n) - 0.5  # continuous index on the big grid
    step = (axis[-1] - axis[0]) / (big - 1) if big > 1 else torch.tensor(1.0)
    return axis[0] + index * step


def rotary_embeddings(
    config: Any, num_frames: int, grid_h: int, grid_w: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """3D RoPE (cos, sin) for the noisy tokens, [F * gh * gw, head_dim] each, identical to CogVideoX's pipeline."""
    (top, left), (bottom, right) = get_resize_crop_region_for_grid(
        (grid_h, grid_w), config.sample_width // config.patch_size, config.sample_height // config.patch_size
    )
    return get_3d_rotary_pos_embed(
        embed_dim=config.attention_head_dim,
        crops_coords=((top, left), (bottom, right)),
        grid_size=(grid_h, grid_w),
        temporal_size=num_frames,
        device=device,
    )


def rotary_at(head_dim: int, t: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """3D RoPE (cos, sin) at explicit token coordinates t, h, w: [N] each -> [N, head_dim] each."""
    dim_t, dim_hw = head_dim // 4, head_dim // 8 * 3
    parts = [
        get_1d_rotary_pos_embed(d, pos.float(), use_real=True) for d, pos in ((dim_t, t), (dim_hw, h), (dim_hw, w))
    ]
    return torch.cat([c for c, _ in parts], dim=-1), torch.cat([s for _, s in parts], dim=-1)


def sincos_at(
    embed_dim: int,
    t: torch.Tensor,
    h: torch.Tensor,
    w: torch.Tensor,
    spatial_interpolation_scale: float = 1.875,
    temporal_interpolation_scale: float = 1.0,
) -> torch.Tensor:
    """CogVideoX's 3D sincos position embedding at explicit token coordinates: [N] each -> [N, embed_dim]."""
    dim_t, dim_s = embed_dim // 4, 3 * embed_dim // 4
    emb_t = get_1d_sincos_pos_embed_from_grid(dim_t, t.float() / temporal_interpolation_scale)
    # As get_2d_sincos_pos_embed_from_grid: the first half encodes the column (w), the second the row (h).
    emb_w = get_1d_sincos_pos_embed_from_grid(dim_s // 2, w.float() / spatial_interpolation_scale)
    emb_h = get_1d_sincos_pos_embed_from_grid(dim_s // 2, h.float() / spatial_interpolation_scale)
    return torch.cat([emb_t, emb_w, emb_h], dim=-1)


def _grid_coords(times: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Token coordinates of a [T, H, W] token grid in frame-major order: three [T*H*W] tensors."""
    t, h, w = torch.meshgrid(times, rows, cols, indexing="ij")
    return t.reshape(-1), h.reshape(-1), w.reshape(-1)


# -- attention ----------------------------------------------------------------------------------------------------


class MVideoAttnProcessor:
    """CogVideoX attention plus gated, decoupled cross-attention to cached condition keys/values.

    Without `condition_kv` this computes exactly what `CogVideoXAttnProcessor2_0` computes. With
    `condition_kv = (k, v)` ([B or 1, heads, Nc, head_dim]) every query also attends to the conditions and that result
    is added scaled by `tanh(condition_gate)` ([heads]). `store_kv` (a list) receives this call's keys and values, after
    RoPE: that is how the condition stream fills the `ConditionCache`.
    """

    # Adapted from diffusers.models.attention_processor.CogVideoXAttnProcessor2_0.__call__ (diffusers 0.42.1):
    # + the condition keys/values (gated, decoupled attention) and store_kv; the rest is line for line the same.
    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        condition_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        condition_gate: torch.Tensor | None = None,
        store_kv: list | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text_seq_length = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)  # [B, L + N, D]
        batch_size, sequence_length, _ = hidden_states.shape

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads
        # [B, heads, S, head_dim]
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:
            query[:, :, text_seq_length:] = apply_rotary_emb(query[:, :, text_seq_length:], image_rotary_emb)
            if not attn.is_cross_attention:
                key[:, :, text_seq_length:] = apply_rotary_emb(key[:, :, text_seq_length:], image_rotary_emb)
        if store_kv is not None:
            store_kv.append((key, value))

        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        if condition_kv is not None:
            k_cond, v_cond = condition_kv
            if k_cond.shape[0] != batch_size:  # e.g. one condition set for both guidance branches
                k_cond = k_cond.repeat(batch_size // k_cond.shape[0], 1, 1, 1)
                v_cond = v_cond.repeat(batch_size // v_cond.shape[0], 1, 1, 1)
            cross = F.scaled_dot_product_attention(query, k_cond.to(query.dtype), v_cond.to(query.dtype))
            gate = torch.tanh(condition_gate).to(hidden_states.dtype).view(1, -1, 1, 1)
            hidden_states = hidden_states + gate * cross

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        encoder_hidden_states, hidden_states = hidden_states.split(
            [text_seq_length, hidden_states.size(1) - text_seq_length], dim=1
        )
        return hidden_states, encoder_hidden_states


class ConditionEmbedding(nn.Module):
    """What MVideo learns for condition tokens: a type embedding (appearance, motion) and per-layer attention gates.

    Both start at zero, so a fresh model ignores the conditions (`tanh(0) = 0`).
    """

    APPEARANCE, MOTION = 0, 1

    def __init__(self, dim: int, num_layers: int, num_heads: int):
        super().__init__()
        self.type_embedding = nn.Parameter(torch.zeros(2, dim))  # [2, D]
        self.gates = nn.Parameter(torch.zeros(num_layers, num_heads))  # [layers, heads]

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(type_embedding [2, D], gates [layers, heads]); read through forward so offload hooks place them."""
        return self.type_embedding, self.gates


# -- the model ----------------------------------------------------------------------------------------------------


class MVideoTransformer3DModel(CogVideoXTransformer3DModel):
    """CogVideoX transformer with the MVideo mask condition and long-video condition tokens (see module docstring).

    `forward` takes the base model's arguments plus `mask_latents` ([B, F, C_mask, H, W] or None = no mask) and
    `condition_latents` (`ConditionLatents` or None = first clip). `teacher_mode()` turns it into the frozen base.
    """

    _no_split_modules = ["CogVideoXBlock", "CogVideoXPatchEmbed"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        mask_in_channels: int | None = None,
        mvideo_format_version: int = 1,
    ):
        if patch_size_t is not None:
            raise ValueError(
                "MVideo supports CogVideoX 1.0 models (2b / 5b, spatial patches); CogVideoX 1.5 "
                f"(patch_size_t={patch_size_t}) is not supported"
            )
        if use_learned_positional_embeddings:
            raise ValueError("MVideo does not support learned positional embeddings (CogVideoX-5b-I2V)")
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            flip_sin_to_cos=flip_sin_to_cos,
            freq_shift=freq_shift,
            time_embed_dim=time_embed_dim,
            ofs_embed_dim=ofs_embed_dim,
            text_embed_dim=text_embed_dim,
            num_layers=num_layers,
            dropout=dropout,
            attention_bias=attention_bias,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            activation_fn=activation_fn,
            timestep_activation_fn=timestep_activation_fn,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_rotary_positional_embeddings=use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
            patch_bias=patch_bias,
        )
        inner_dim = num_attention_heads * attention_head_dim
        # The new input channels of the patch embedding (mask latents), zero at start: see the module docstring.
        self.mask_proj = nn.Conv2d(
            mask_in_channels or in_channels, inner_dim, kernel_size=patch_size, stride=patch_size, bias=False
        )
        nn.init.zeros_(self.mask_proj.weight)
        self.condition_embed = ConditionEmbedding(inner_dim, num_layers, num_attention_heads)
        self._teacher = False
        self.set_attn_processor(MVideoAttnProcessor())

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def from_cogvideox(cls, base: CogVideoXTransformer3DModel) -> MVideoTransformer3DModel:
        """Turn a loaded CogVideoX transformer into an MVideo one that computes exactly the same function.

        The base tensors are shared, not copied (no second 5B-parameter allocation); the MVideo modules are new zeros
        on the base's device and dtype.
        """
        if not isinstance(base, CogVideoXTransformer3DModel):
            raise TypeError(f"from_cogvideox expects a CogVideoXTransformer3DModel, got {type(base).__name__}")
        if isinstance(base, MVideoTransformer3DModel):
            return base
        config = {k: v for k, v in base.config.items() if not k.startswith("_")}
        with torch.device("meta"):
            model = cls(**config)
        missing, unexpected = model.load_state_dict(base.state_dict(), strict=False, assign=True)
        if unexpected or any(not k.startswith(MVIDEO_MODULES) for k in missing):
            raise ValueError(f"base transformer does not match its config: missing {missing}, unexpected {unexpected}")
        ref = next(base.parameters())
        model.mask_proj = nn.Conv2d(
            model.mask_proj.in_channels,
            model.mask_proj.out_channels,
            kernel_size=model.mask_proj.kernel_size,
            stride=model.mask_proj.stride,
            bias=False,
            device=ref.device,
            dtype=ref.dtype,
        )
        nn.init.zeros_(model.mask_proj.weight)
        dim, layers, heads = model.condition_embed.type_embedding.shape[1], *model.condition_embed.gates.shape
        model.condition_embed = ConditionEmbedding(dim, layers, heads).to(device=ref.device, dtype=ref.dtype)
        base_buffers = dict(base.named_buffers())
        for name, buf in list(model.named_buffers()):  # non-persistent buffers (sincos table) are not in state_dict
            if buf.is_meta:
                module_name, _, attr = name.rpartition(".")
                model.get_submodule(module_name).register_buffer(attr, base_buffers[name], persistent=False)
        still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if still_meta:
            raise RuntimeError(f"from_cogvideox left tensors unset: {still_meta}")
        return model.train(base.training)

    # -- MVideo state -------------------------------------------------------------------------------------------
    def mvideo_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights MVideo adds to CogVideoX besides LoRA (mask projection, condition embeddings and gates)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(MVIDEO_MODULES)}

    def load_mvideo_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load `mvideo_state_dict()` weights; a missing, unexpected or wrongly shaped key is an error."""
        own = self.mvideo_state_dict()
        missing, unexpected = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
        if missing or unexpected:
            raise ValueError(f"MVideo weights do not match the model: missing {missing}, unexpected {unexpected}")
        for k, v in state_dict.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(
                    f"MVideo weight {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}"
                )
        self.load_state_dict(state_dict, strict=False)

    def mvideo_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the MVideo modules (train them next to the LoRA; do not put them in peft modules_to_save)."""
        for name in MVIDEO_MODULES:
            yield from getattr(self, name).parameters()

    @contextlib.contextmanager
    def teacher_mode(self) -> Iterator[MVideoTransformer3DModel]:
        """Inside, the model is frozen base CogVideoX: LoRA adapters off, mask and condition inputs ignored.

        This is the teacher of the consistency loss (paper eq. 2). Works for adapters added with diffusers'
        `add_adapter` / `load_lora_adapter` and with peft's `get_peft_model` / `inject_adapter_in_model`.
        Adapter `requires_grad` flags are left as they are (we do not call peft's `enable_adapters`, which flips them).
        """
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for m in self.modules() if isinstance(m, BaseTunerLayer)]
        previous = [m._disable_adapters for m in layers]
        was_teacher = self._teacher
        try:
            for m in layers:
                m._disable_adapters = True
            self._teacher = True
            yield self
        finally:
            for m, flag in zip(layers, previous):
                m._disable_adapters = flag
            self._teacher = was_teacher

    # -- positions ----------------------------------------------------------------------------------------------
    def rotary_embeddings(
        self, num_frames: int, grid_h: int, grid_w: int, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE for the noisy tokens (latent frames, patch grid), as CogVideoX's pipeline builds it."""
        return rotary_embeddings(self.config, num_frames, grid_h, grid_w, device)

    def condition_coordinates(
        self, grid_h: int, grid_w: int, conditions: ConditionLatents
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Coordinates (t, row, col) of the condition tokens in the frame of the noisy grid: three [Nc] tensors.

        Motion frames take latent times -Fc .. -1, the appearance frame -1; low-res rows/columns are token centres
        spread over the noisy grid's extent. Rows/columns are in RoPE units for RoPE models, in grid units otherwise.
        """
        p = self.config.patch_size
        if self.config.use_rotary_positional_embeddings:
            rows, cols = _rope_grid_axes(self.config, grid_h, grid_w)
        else:
            rows, cols = torch.arange(grid_h, dtype=torch.float32), torch.arange(grid_w, dtype=torch.float32)
        coords = []
        if conditions.appearance is not None:
            coords.append(_grid_coords(torch.tensor([-1.0]), rows, cols))
        if conditions.motion is not None:
            fc, _, h, w = conditions.motion.shape[1:]
            times = torch.arange(-fc, 0, dtype=torch.float32)
            coords.append(_grid_coords(times, _scaled_axis(rows, h // p), _scaled_axis(cols, w // p)))
        return tuple(torch.cat(parts) for parts in zip(*coords))

    # -- forward --------------------------------------------------------------------------------------------------
    def _patch_tokens(self, latents: torch.Tensor, proj: nn.Module) -> torch.Tensor:
        """Patch-embed latents [B, F, C, H, W] -> tokens [B, F * H/p * W/p, D] (frame-major, as CogVideoX)."""
        b, f, c, h, w = latents.shape
        x = proj(latents.reshape(-1, c, h, w))  # [B*F, D, H/p, W/p]
        x = x.view(b, f, *x.shape[1:])
        return x.flatten(3).transpose(2, 3).flatten(1, 2)

    def _check_mvideo_inputs(
        self,
        hidden_states: torch.Tensor,
        mask_latents: torch.Tensor | None,
        conditions: ConditionLatents | ConditionCache | None,
    ) -> None:
        b, f, c, h, w = hidden_states.shape
        p = self.config.patch_size
        if mask_latents is not None:
            want = (b, f, self.mask_proj.in_channels, h, w)
            if tuple(mask_latents.shape) != want:
                raise ValueError(
                    f"`mask_latents` must have shape {want} [B, F, C, H, W] to match the noisy latents, "
                    f"got {tuple(mask_latents.shape)}"
                )
        if conditions is None:
            return
        if isinstance(conditions, ConditionCache):
            if not conditions.kv and conditions.conditions is None:
                raise ValueError(
                    "an empty condition cache: build it with condition_cache() or ConditionCache.deferred"
                )
            if not conditions.kv:
                if b % conditions.batch_size:
                    raise ValueError(f"conditions for batch {conditions.batch_size} do not divide the batch {b}")
                return
            if len(conditions.kv) != len(self.transformer_blocks) or b % conditions.batch_size:
                raise ValueError(
                    f"condition cache has {len(conditions.kv)} layers for batch {conditions.batch_size}; the model has "
                    f"{len(self.transformer_blocks)} layers and the batch is {b}: build it with condition_cache()"
                )
            return
        if not isinstance(conditions, ConditionLatents):
            raise TypeError(
                f"`condition_latents` must be a ConditionLatents or ConditionCache, got {type(conditions).__name__}"
            )
        if conditions.appearance is not None:
            want = (b, 1, c, h, w)
            if tuple(conditions.appearance.shape) != want:
                raise ValueError(
                    f"appearance condition must have shape {want} (one full-resolution latent frame), "
                    f"got {tuple(conditions.appearance.shape)}"
                )
        if conditions.motion is not None:
            mb, _, mc, mh, mw = conditions.motion.shape
            if mb != b or mc != c or mh % p or mw % p:
                raise ValueError(
                    f"motion condition must have shape [{b}, Fc, {c}, h, w] with h, w divisible by {p}, "
                    f"got {tuple(conditions.motion.shape)}"
                )

    def _time_embedding(self, timestep, timestep_cond, ofs, dtype: torch.dtype) -> torch.Tensor:
        emb = self.time_embedding(self.time_proj(timestep).to(dtype=dtype), timestep_cond)
        if self.ofs_embedding is not None:
            emb = emb + self.ofs_embedding(self.ofs_proj(ofs).to(dtype=dtype))
        return emb

    def condition_cache(
        self,
        conditions: ConditionLatents,
        grid_h: int,
        grid_w: int,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> ConditionCache:
        """Run the condition tokens through the blocks (clean: timestep 0, no text) and keep their keys/values.

        grid_h, grid_w: the noisy token grid (latent size / patch size) the conditions are placed against.
        Independent of the noisy latents and the step, so inference computes it once per clip.
        """
        type_embedding, _ = self.condition_embed()
        tokens = self._condition_tokens(conditions, grid_h, grid_w, type_embedding)  # [B, Nc, D]
        batch = tokens.shape[0]
        temb = self._time_embedding(torch.zeros(batch, device=tokens.device), None, None, tokens.dtype)
        rope = None
        if self.config.use_rotary_positional_embeddings:
            t, r, c = self.condition_coordinates(grid_h, grid_w, conditions)
            rope = tuple(x.to(tokens.device) for x in rotary_at(self.config.attention_head_dim, t, r, c))
        no_text = tokens.new_zeros(batch, 0, tokens.shape[-1])
        hidden = self.embedding_dropout(tokens)
        kv = []
        for block in self.transformer_blocks:
            store: list = []
            hidden, _ = block(
                hidden_states=hidden,
                encoder_hidden_states=no_text,
                temb=temb,
                image_rotary_emb=rope,
                attention_kwargs={**(attention_kwargs or {}), "store_kv": store},
            )
            kv.append(store[0])
        return ConditionCache(kv)

    # Adapted from diffusers.models.transformers.cogvideox_transformer_3d.CogVideoXTransformer3DModel.forward
    # (diffusers 0.42.1): + the mask tokens (patch-embedded mask latents) and the condition cache in every block.
    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.LongTensor,
        timestep_cond: torch.Tensor | None = None,
        ofs: int | float | torch.LongTensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        mask_latents: torch.Tensor | None = None,
        condition_latents: ConditionLatents | ConditionCache | None = None,
    ) -> tuple[torch.Tensor] | Transformer2DModelOutput:
        """Predict for the noisy latents [B, F, C, H, W].

        mask_latents: [B, F, C_mask, H, W] or None (no mask). condition_latents: `ConditionLatents` of the previous
        clip, or the `ConditionCache` made from them by `condition_cache()` (same result, cheaper per step), or None.
        """
        if self._teacher:
            mask_latents, condition_latents = None, None
        if isinstance(condition_latents, ConditionLatents) and condition_latents.is_empty:
            condition_latents = None
        self._check_mvideo_inputs(hidden_states, mask_latents, condition_latents)
        batch_size, num_frames, channels, height, width = hidden_states.shape
        p = self.config.patch_size
        grid_h, grid_w = height // p, width // p

        # 1. Time embedding
        emb = self._time_embedding(timestep, timestep_cond, ofs, hidden_states.dtype)

        # 2. Patch embedding: text [B, L, D], noisy [B, N, D] (+ mask channels); conditions -> cached keys/values
        text_seq_length = encoder_hidden_states.shape[1]
        tokens = self.patch_embed(encoder_hidden_states, hidden_states)
        encoder_hidden_states, hidden_states = tokens[:, :text_seq_length], tokens[:, text_seq_length:]
        if mask_latents is not None:
            mask_dtype = self.mask_proj.weight.dtype  # may be fp32 (trained) beside a bf16 base
            mask_tokens = self._patch_tokens(mask_latents.to(mask_dtype), self.mask_proj)  # [B, N, D]
            hidden_states = hidden_states + mask_tokens.to(hidden_states.dtype)
        encoder_hidden_states = self.embedding_dropout(encoder_hidden_states)
        hidden_states = self.embedding_dropout(hidden_states)
        cache = condition_latents
        if isinstance(condition_latents, ConditionLatents):
            cache = self.condition_cache(condition_latents, grid_h, grid_w, attention_kwargs)
        elif isinstance(cache, ConditionCache) and not cache.kv:  # deferred: built once, here, where the model runs
            cache.kv = self.condition_cache(cache.conditions, grid_h, grid_w, attention_kwargs).kv
        if self.config.use_rotary_positional_embeddings and image_rotary_emb is None:
            image_rotary_emb = self.rotary_embeddings(num_frames, grid_h, grid_w, hidden_states.device)

        # 3. Transformer blocks
        gates = self.condition_embed()[1] if cache is not None else None  # [layers, heads]
        for i, block in enumerate(self.transformer_blocks):
            kwargs = attention_kwargs
            if cache is not None:
                kwargs = {
                    **(attention_kwargs or {}),
                    "condition_kv": cache.kv[i],
                    "condition_gate": gates[i],
                }
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states, encoder_hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, encoder_hidden_states, emb, image_rotary_emb, kwargs
                )
            else:
                hidden_states, encoder_hidden_states = block(
                    hidden_states=hidden_states,
                    encoder_hidden_states=encoder_hidden_states,
                    temb=emb,
                    image_rotary_emb=image_rotary_emb,
                    attention_kwargs=kwargs,
                )

        # 4. Final block (only noisy tokens are in the sequence, so only they are predicted)
        hidden_states = self.norm_final(hidden_states)
        hidden_states = self.norm_out(hidden_states, temb=emb)
        hidden_states = self.proj_out(hidden_states)  # [B, N, p*p*C]

        # 5. Unpatchify: [B, N, p*p*C] -> [B, F, C, H, W]
        output = hidden_states.reshape(batch_size, num_frames, grid_h, grid_w, -1, p, p)
        output = output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def _condition_tokens(
        self, conditions: ConditionLatents, grid_h: int, grid_w: int, type_embedding: torch.Tensor
    ) -> torch.Tensor:
        """Condition latents -> tokens [B, Nc, D]: base patch embedding + type embedding (+ sincos positions)."""
        dtype = self.patch_embed.proj.weight.dtype  # the base dtype: trained MVideo weights may be fp32
        parts = []
        kinds = (
            (ConditionEmbedding.APPEARANCE, conditions.appearance),
            (ConditionEmbedding.MOTION, conditions.motion),
        )
        for kind, latents in kinds:
            if latents is not None:
                tok = self._patch_tokens(latents.to(dtype), self.patch_embed.proj)
                parts.append(tok + type_embedding[kind].to(dtype=tok.dtype, device=tok.device))
        tokens = torch.cat(parts, dim=1)
        if not self.config.use_rotary_positional_embeddings:
            t, r, c = self.condition_coordinates(grid_h, grid_w, conditions)
            pos = sincos_at(
                tokens.shape[-1],
                t,
                r,
                c,
                self.config.spatial_interpolation_scale,
                self.config.temporal_interpolation_scale,
            )
            tokens = tokens + pos.to(device=tokens.device, dtype=dtype)
        return tokens
